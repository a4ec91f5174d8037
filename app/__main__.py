"""`python -m app`: serve the explorer. On a store without runs it first trains the
built-in demo (`app.demo`) and stores it; later starts load at once.

The port is taken before any work, so a busy one is refused in one line. The
explorer is served by waitress (a production WSGI server, also for a lab sharing
one explorer with `--host 0.0.0.0`); `--debug` uses Dash's development server
instead. A `--data` folder that does not exist is created with a line saying
so, or refused when a folder of a close name exists (a typo would otherwise
look like lost runs)."""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

from app.cache import Explorer
from fci.cli import OneLineParser, check_writable
from fci.store import graceful

__all__ = ["build_parser", "check_data", "main", "prepare", "take_port"]


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m app", description=__doc__,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default="data", help="results store root (runs live under DIR/store/)")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to serve on (0.0.0.0: every interface, for a lab sharing one explorer)")
    ap.add_argument("--port", type=int, default=8050, help="TCP port to serve on")
    ap.add_argument("--threads", type=int, default=4, help="request threads of the server")
    ap.add_argument("--debug", action="store_true", help="Dash's development server in debug mode (reloader, dev tools)")
    return ap


def check_data(ap: argparse.ArgumentParser, data: str) -> str | None:
    """Refuse a `--data` folder that does not exist when a folder of a close name does
    (exits via `ap.error`); returns the line to print when it will be created, else None."""
    path = Path(data).expanduser()
    if path.exists():
        return None
    parent = path.parent if str(path.parent) else Path(".")
    if parent.is_dir():
        siblings = [p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
        close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.75)
        if close:
            ap.error(f"--data {data!r} does not exist; did you mean {str(parent / close[0])!r}? "
                     "(create the folder first to start a new store there)")
    return f"--data {data!r} did not exist: created it (a new, empty results store)"


def take_port(ap: argparse.ArgumentParser, host: str, port: int) -> socket.socket:
    """Bind (host, port) now, before any work, or exit in one line naming --port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        ap.error(f"--host {host!r} is not an address of this machine ({e.strerror})")
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            ap.error(f"port {port} on {host} is in use (another explorer?); choose another with --port")
        ap.error(f"cannot serve on {host}:{port} ({e.strerror or e}); check --host and --port")
    return sock


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


def _serve(app: Any, sock: socket.socket, host: str, port: int, threads: int) -> None:
    """Serve the app's WSGI server on the bound socket with waitress."""
    from waitress.server import create_server

    logging.getLogger("waitress").setLevel(logging.WARNING)  # its own "Serving on" would be a second start-up line
    server = create_server(app.server, sockets=[sock], threads=threads, clear_untrusted_proxy_headers=True)
    try:
        server.run()
    finally:
        server.close()


@graceful("python -m app")
def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not 1 <= args.port <= 65535:
        ap.error(f"--port must lie in [1, 65535], got {args.port}")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    created = check_data(ap, args.data)
    sock = take_port(ap, args.host, args.port)  # before any work: a busy port is refused at once
    check_writable(ap, "--data", args.data)  # the demo is trained into it: refuse before training
    if created:
        print(created, file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from app import create_app

    try:
        explorer, _ = prepare(args.data)
        app = create_app(args.data, explorer=explorer)
        for w in explorer.catalogue().warnings:
            print(f"warning: {w}", file=sys.stderr)
        shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
        print(f"fci explorer: {len(explorer.catalogue().runs)} runs in {explorer.store.dir}; "
              f"open http://{shown}:{args.port}/  (Ctrl-C stops it)", file=sys.stderr, flush=True)
        if args.debug:
            sock.close()  # Dash's development server binds by itself
            app.run(host=args.host, port=args.port, debug=True, dev_tools_silence_routes_logging=True)
        else:
            _serve(app, sock, args.host, args.port, args.threads)  # returns when waitress sees Ctrl-C
            print("fci explorer stopped", file=sys.stderr)
    except KeyboardInterrupt:
        print("fci explorer stopped", file=sys.stderr)
        return 130
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
