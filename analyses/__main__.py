"""`python -m analyses` lists the studies, one line each; `python -m analyses NAME
[options]` runs one (the same as `python -m analyses.NAME`)."""

from __future__ import annotations

import sys
from typing import Sequence

from analyses import studies
from fci.registry import UnknownName


def summary_line(study) -> str:
    """The first sentence of a study's description."""
    first = " ".join(study.description.strip().split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    registry = studies()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("Studies (run one with `python -m analyses.NAME [--quick] [--help]`):\n")
        width = max(map(len, registry.names()))
        for name, study in sorted(registry.items()):
            print(f"  {name:<{width}}  {summary_line(study)}")
        return 0
    try:
        registry.get(argv[0])
    except UnknownName as e:
        print(f"python -m analyses: {e}", file=sys.stderr)
        return 2
    module = sys.modules[f"analyses.{argv[0]}"]
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
