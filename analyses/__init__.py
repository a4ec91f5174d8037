"""The studies: one runnable module each (`python -m analyses.<name>`), the same
contract for all (`[--quick] [--out DIR] [--device ...] [--trials N] [--seed S]
[--shard I/N] [--data DIR]`), each writing results.csv, stats.csv, summary.json
and self-contained plotly figures. `python -m analyses` lists them; see
analyses/README.md for what each shows.

The package's shape:

- `analyses.runner`: the one runner every study goes through (`run`), and the
  options every study takes;
- `analyses.kinds`: the kinds of study it runs — `Study` (a sweep of Boolean FPE
  trials) and `JobStudy` (other units of work); the regime map (`analyses.regimes`)
  is a third, a grid of trials;
- `analyses.levels` (run levels and sweep points), `analyses.rows` (one row per
  model), `analyses.columns` (the results.csv vocabulary), `analyses.tables`
  (per-condition statistics), `analyses.style` (colours and figure helpers);
- every other module is a study, registered here by name when it is imported
  (`register`); `studies()` imports them all and returns the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from fci.registry import Registry

__all__ = ["STUDIES", "register", "studies", "study_names"]

#: The studies by name (filled as their modules are imported; `studies()` imports them all).
STUDIES: Registry[Any] = Registry("study")


def register(study: Any) -> Any:
    """Register a study under its `name` (refuses a duplicate); returns it."""
    return STUDIES.register(study.name, study)


def studies() -> Registry[Any]:
    """Every study of this package: imports each of its modules once (a study module
    registers its `STUDY`), then returns the registry."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return STUDIES


def study_names(kind: str | None = None) -> list[str]:
    """The registered studies' names in alphabetical order, optionally only those of one
    kind (the class name of their STUDY: "Study", "JobStudy", "RegimesStudy")."""
    return sorted(n for n, s in studies().items() if kind is None or type(s).__name__ == kind)
