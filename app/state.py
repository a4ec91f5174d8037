"""The explorer's view state and its URL form: `/?run=<key>&clause=3&threshold=0.1&view=weights`.

The URL is the single source of truth: every control writes into it, and the page
is drawn from it, so a view can be shared as a link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

__all__ = ["ViewState", "VIEWS", "DEFAULT_THRESHOLD", "THRESHOLD_MAX"]

#: What the weight heatmaps show: raw effective weights, or literal sign codes.
VIEWS = ("weights", "codes")
DEFAULT_THRESHOLD = 0.1
THRESHOLD_MAX = 1.0


@dataclass(frozen=True)
class ViewState:
    """run: a run id (child store key) or None; clause: selected clause or None;
    threshold: relative sign threshold in [0, 1]; view: one of VIEWS."""

    run: str | None = None
    clause: int | None = 0
    threshold: float = DEFAULT_THRESHOLD
    view: str = "weights"

    @classmethod
    def from_search(cls, search: str | None) -> tuple["ViewState", list[str]]:
        """Parse a URL query string; returns the state and a message per bad field
        (a bad field keeps its default)."""
        q = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?"), keep_blank_values=True).items()}
        problems: list[str] = []
        state = cls(run=q.get("run") or None)
        if "clause" in q:
            raw = q["clause"]
            if raw in ("", "none"):
                state = replace(state, clause=None)
            else:
                try:
                    c = int(raw)
                    if c < 0:
                        raise ValueError
                    state = replace(state, clause=c)
                except ValueError:
                    problems.append(f"clause={raw!r} in the URL is not a clause number; showing clause 0")
        if "threshold" in q:
            raw = q["threshold"]
            try:
                t = float(raw)
                if not (math.isfinite(t) and 0 <= t <= THRESHOLD_MAX):
                    raise ValueError
                state = replace(state, threshold=t)
            except ValueError:
                problems.append(f"threshold={raw!r} in the URL is not a number in [0, {THRESHOLD_MAX:g}]; "
                                f"using {DEFAULT_THRESHOLD}")
        if "view" in q:
            if q["view"] in VIEWS:
                state = replace(state, view=q["view"])
            else:
                problems.append(f"view={q['view']!r} in the URL is not one of {VIEWS}; showing weights")
        return state, problems

    def to_search(self) -> str:
        q: dict[str, Any] = {}
        if self.run is not None:
            q["run"] = self.run
        q["clause"] = "none" if self.clause is None else self.clause
        q["threshold"] = f"{self.threshold:g}"
        q["view"] = self.view
        return "?" + urlencode(q)

    def with_(self, **changes: Any) -> "ViewState":
        return replace(self, **changes)
