"""`python -m fci.store verify|repair DIR [--deep] [--claim-ttl SECONDS]` (`main`): check
the store under DIR by hand. verify lists what is wrong (exit status 1 if anything);
repair seals the unsealed entries that recompute to what they record and
quarantines the rest, quarantines corrupt entries and links, and removes stale
claims and abandoned temporary files."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from fci.store.claims import ENV_TTL, resolve_claim_ttl
from fci.store.graceful import graceful
from fci.store.quarantine import QUARANTINE
from fci.store.store import Store


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fci.store", description=__doc__)
    ap.add_argument("action", choices=["verify", "repair"], help="verify: list what is wrong (exit 1 if anything); "
                    "repair: seal, quarantine or remove it")
    ap.add_argument("dir", metavar="DIR", help="the store root (the --data folder: entries live under DIR/store/)")
    ap.add_argument("--deep", action="store_true", help="also recompute the measurements of sealed entries (FPE models: "
                    "accuracies, loss, non-zero counts and structure from their weights and data) and compare")
    ap.add_argument("--claim-ttl", metavar="SECONDS", default=None,
                    help=f"a claim not refreshed for this long is stale (default: ${ENV_TTL}, else 300)")
    return ap


def _say(line: str, err: bool = False) -> None:
    """The command's output (it is a shell: it prints)."""
    print(line, file=sys.stderr if err else sys.stdout)  # noqa: T201


def _error(msg: str) -> int:
    _say(f"python -m fci.store: error: {msg}", err=True)
    return 2


@graceful("python -m fci.store")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ttl = resolve_claim_ttl(args.claim_ttl, "--claim-ttl")
    except ValueError as e:
        return _error(str(e))
    store = Store(args.dir, claim_ttl=ttl)
    if not store.dir.is_dir():
        return _error(f"DIR: no store under {args.dir!r} (expected the folder {store.dir})")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    survey = store.survey(args.deep)
    found = store.repair(args.deep, survey) if args.action == "repair" else {k: why for k, (_, why) in survey.problems.items()}
    for name, what in found.items():
        _say(f"{name}: {what}")
    for key, message in survey.newer.items():
        _say(f"{key}: left alone: {message}")
    q = store.quarantined()
    verb = "found" if args.action == "verify" else "cleared"
    line = f"{store.dir}: {len(store.keys())} entries, {len(found)} problem(s) {verb}; {len(q)} in {store.dir / QUARANTINE}"
    if survey.newer:
        line += f"; {len(survey.newer)} of a newer format (not read)"
    _say(line)
    if args.deep:
        skipped = ", ".join(f"{n} of kind {k}" for k, n in sorted(survey.not_recomputable.items())) or "none"
        _say(f"recomputed {survey.recomputed} entries' measurements; checked by checksums only: {skipped}")
    return 1 if found and args.action == "verify" else 0
