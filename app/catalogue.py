"""Which runs a results store holds: every entry is read by the reader registered
for its kind (`analyses.entries.READERS`; each study registers the reader of its
own entries), and the runs are sorted, searched and grouped for the picker.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from analyses.entries import ListedRun, readers
from fci.store import Store, StoreEntry, StoreError

__all__ = ["HEADLINE", "MODEL_KINDS", "Catalogue", "natural_key", "scan_store", "search_tokens"]

log = logging.getLogger(__name__)

#: The headline configuration (SPEC: 8 clauses, 8 neurons, alpha 2, clause split):
#: the landing run when it is stored.
HEADLINE = {"study": "fpe", "dataset": "boolean", "n_clauses": 8, "hidden": "8", "alpha": 2, "split": "clause"}

#: Entry kinds that hold one trained model each (`fci.train.run_fpe`); a study's
#: job entries may show the same models, which are then listed once, under the study.
MODEL_KINDS = ("fpe", "boolean-fpe")


def natural_key(v: Any) -> tuple:
    """Sort key that orders numbers numerically, also inside strings
    (`2 < 4 < 16`, `C=4 < C=16`, `8 < 8-8`)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v))
    parts = re.split(r"(\d+(?:\.\d+)?)", str(v))
    return (1, tuple((1, float(p), "") if k % 2 else (0, 0.0, p.lower()) for k, p in enumerate(parts)))



def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("·", " ").lower()).strip()


def _token_pattern(token: str) -> re.Pattern:
    """A search token as a whole-word pattern ("trial 4" does not match "trial 42")."""
    words = [re.escape(w) for w in token.split()]
    return re.compile(r"(?<![\w.])" + r"\s+".join(words) + r"(?![\w.])")


def search_tokens(query: str | None) -> list[str]:
    """The tokens of a picker search: split at `·`, `,`, `;` or `|`; each token
    must match the run label as a whole word sequence (case-insensitive)."""
    return [t for t in (_normalise(p) for p in re.split(r"[·,;|]", query or "")) if t]


@dataclass
class Catalogue:
    """Every showable run of a store, and why other entries were left out."""

    runs: list[ListedRun]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @cached_property
    def _by_id(self) -> dict[str, ListedRun]:
        return {r.id: r for r in self.runs}

    def get(self, run_id: str | None) -> ListedRun | None:
        return self._by_id.get(run_id) if run_id is not None else None

    def values(self, name: str) -> list[Any]:
        """Distinct values of filter `name`, in natural (numeric) order."""
        return sorted({r.field(name) for r in self.runs}, key=natural_key)

    def select(self, query: str | None = None, **filters: Sequence[Any] | None) -> list[ListedRun]:
        """Runs whose fields lie in the given value lists (None or empty: any value)
        and whose label matches every token of `query` (`search_tokens`)."""
        keep = {k: set(v) for k, v in filters.items() if v}
        runs = [r for r in self.runs if all(r.field(k) in vs for k, vs in keep.items())]
        pats = [_token_pattern(t) for t in search_tokens(query)]
        if pats:
            runs = [r for r in runs if all(p.search(_normalise(r.label)) for p in pats)]
        return runs

    def landing(self) -> ListedRun | None:
        """The run a page without `run=` opens: the headline configuration (8
        clauses, 8 neurons, alpha 2, clause split) when stored, else the most
        informative run (`_informative`)."""
        if not self.runs:
            return None
        head = [r for r in self.runs if all(getattr(r, k) == v for k, v in HEADLINE.items())]
        if head:
            return min(head, key=lambda r: r.trial)
        return max(self.runs, key=_informative)


def _informative(r: ListedRun) -> tuple:
    """How much a run shows: the clause analysis, all three networks, an FPE child,
    then a readable size (hidden width and clause count near 8), then trial 0."""
    try:
        h = float(r.hidden.split("-")[0])
    except ValueError:
        h = 0.0
    size = -abs(math.log2(max(h, 1) / 8)) - (abs(math.log2(max(r.n_clauses, 1) / 8)) if r.has_clauses else 0)
    return (r.has_clauses, len(r.refs), r.split in ("clause", "random", "gram"), r.alpha == 2, size, -r.trial)




def _shown_models(runs: list[ListedRun], jobs: list[StoreEntry]) -> set[str]:
    """Store keys of the model entries that job runs already show: as their child, or
    as a model whose copy the job keeps (its rows name the model's `store_key`)."""
    return ({ref.key for r in runs for slot, ref in r.refs if slot == "child" and ref.prefix == ""}
            | {str(r["store_key"]) for e in jobs for r in (e.metrics.get("rows") or [])
               if isinstance(r, dict) and r.get("store_key")})


def scan_store(store: Store) -> Catalogue:
    """List the runs of `store`, each entry through the reader of its kind. Unreadable
    entries and runs without their paired baseline are left out with a warning
    or note each (never an exception)."""
    warns: list[str] = []
    notes: list[str] = []
    by_kind: dict[str, list[StoreEntry]] = {}
    for key in store.keys():
        try:
            e = store.load(key)
        except StoreError as err:
            warns.append(f"skipped a corrupt store entry: {err}")
            log.warning("skipping %s", err)
            continue
        by_kind.setdefault(str(e.config.get("kind")), []).append(e)
    registry = readers(by_kind)  # imports only the studies whose entries the store holds
    runs: list[ListedRun] = []
    # job kinds first: a model a job run already shows is not listed again on its own
    for kind in sorted(by_kind, key=lambda k: (k in MODEL_KINDS, k)):
        entries = by_kind[kind]
        if kind in MODEL_KINDS:
            shown = _shown_models(runs, [e for k, es in by_kind.items() if k not in MODEL_KINDS for e in es])
            entries = [e for e in entries if e.config.get("condition") == "dense" or e.key not in shown]
        if kind not in registry:
            notes.append(f"{len(entries)} store entries of kind {kind!r} have no explorer view")
            continue
        try:
            found, msgs = registry.get(kind)(entries)
        except (KeyError, TypeError, ValueError, StopIteration) as err:
            warns.append(f"skipped the {kind} entries: malformed config or metrics ({type(err).__name__}: {err})")
            continue
        runs += found
        (warns if kind == "boolean-fpe" else notes).extend(msgs)
    runs.sort(key=lambda r: (natural_key(r.study != "fpe"), natural_key(r.group), natural_key(r.task),
                             natural_key(r.hidden), r.trial, natural_key(r.split), r.alpha))
    return Catalogue(runs=runs, warnings=warns, notes=notes)
