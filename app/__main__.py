"""`python -m app`: serve the explorer. On a store without runs it first trains the
built-in demo (`app.demo`) and stores it; later starts load at once."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from app.cache import Explorer
from fci.cli import OneLineParser, check_writable

__all__ = ["main", "prepare"]


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m app", description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default="data", help="results store root (runs live under DIR/store/)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8050)
    ap.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, dev tools)")
    return ap


def prepare(data_dir: str | Path, progress: bool = True) -> tuple[Explorer, bool]:
    """The explorer over `data_dir`, after training the demo there if the store has
    no run. Returns (explorer, whether the demo was trained)."""
    from app.demo import DEMO_SPEC, train_demo

    explorer = Explorer(data_dir)
    if explorer.catalogue().runs:
        return explorer, False
    t = DEMO_SPEC.train
    splits = ", ".join(f"{s} α={a}" for s, a in DEMO_SPEC.expansions)
    print(f"No runs in {explorer.store.dir}: training the demo ({DEMO_SPEC.task.n_clauses} clauses, "
          f"{DEMO_SPEC.hidden} neurons; dense, {splits}; {t.warmup}+{t.finetune} epochs on CPU)...",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    train_demo(explorer.store, progress=progress)
    print(f"demo trained and stored in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return explorer, True


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not 1 <= args.port <= 65535:
        ap.error(f"--port must lie in [1, 65535], got {args.port}")
    check_writable(ap, "--data", args.data)  # the demo is trained into it: refuse before training
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from app import create_app

    explorer, _ = prepare(args.data)
    app = create_app(args.data, explorer=explorer)
    for w in explorer.catalogue().warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"fci explorer: {len(explorer.catalogue().runs)} runs; open http://{args.host}:{args.port}/", file=sys.stderr)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
