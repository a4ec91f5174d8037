"""The explorer's view state and its URL form:
`/?run=<key>&clause=3&threshold=auto&view=weights&layer=0&compare=<key>`
(`threshold`: "auto", or a fraction of each neuron's max|w|).

The URL is the single source of truth: every control writes into it, and the page
is drawn from it, so a view can be shared as a link. A bad field is never fatal:
`ViewState.from_search` keeps the default for it and returns a message naming
the field, the value sent and the value used instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

__all__ = ["AUTO", "DEFAULT_FRACTION", "DEFAULT_THRESHOLD", "THRESHOLD_MAX", "VIEWS", "ViewState", "url_problem"]

#: What the weight heatmaps show: raw effective weights, literal sign codes, or the 0/1 masks.
VIEWS = ("weights", "codes", "masks")
#: The sign threshold's data-driven default (`fci.codes`: each neuron's own
#: two-cluster split of |w|); a number is a fraction of each neuron's max|w|.
AUTO = "auto"
DEFAULT_THRESHOLD: float | str = AUTO
#: The fraction the slider starts from when "auto" is switched off.
DEFAULT_FRACTION = 0.1
THRESHOLD_MAX = 1.0


def url_problem(name: str, sent: str, why: str, used: str) -> str:
    """The message for a bad URL field: what was sent, why it is not used, what is."""
    return f"URL field {name}: sent {sent!r}, {why}; using {used} instead"


def _fraction(raw: str) -> float | None:
    """A threshold fraction in [0, THRESHOLD_MAX], or None."""
    try:
        t = float(raw)
    except ValueError:
        return None
    return t if math.isfinite(t) and 0 <= t <= THRESHOLD_MAX else None


@dataclass(frozen=True)
class ViewState:
    """run: a run id or None; clause: selected clause or None; threshold: the sign
    threshold, "auto" or a fraction in [0, 1] of each neuron's max|w|; view: one of VIEWS; layer: the hidden layer the
    weights and Gram rows show (0 = first); compare: a second run shown below, or None."""

    run: str | None = None
    clause: int | None = 0
    threshold: float | str = DEFAULT_THRESHOLD
    view: str = "weights"
    layer: int = 0
    compare: str | None = None

    @classmethod
    def from_search(cls, search: str | None) -> tuple[ViewState, list[str]]:
        """Parse a URL query string; returns the state and a message per bad field
        (a bad field keeps its default)."""
        q = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?"), keep_blank_values=True).items()}
        problems: list[str] = []
        state = cls(run=q.get("run") or None, compare=q.get("compare") or None)
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
                    problems.append(url_problem("clause", raw, "not a clause number (0, 1, ... or none)", "clause 0"))
        if "threshold" in q:
            raw = q["threshold"]
            t = AUTO if raw == AUTO else _fraction(raw)
            if t is None:
                problems.append(url_problem("threshold", raw, f"neither auto nor a number in [0, {THRESHOLD_MAX:g}]",
                                            str(DEFAULT_THRESHOLD)))
            else:
                state = replace(state, threshold=t)
        if "view" in q:
            if q["view"] in VIEWS:
                state = replace(state, view=q["view"])
            else:
                problems.append(url_problem("view", q["view"], f"not one of {', '.join(VIEWS)}", "weights"))
        if "layer" in q:
            raw = q["layer"]
            if raw.isdigit():
                state = replace(state, layer=int(raw))
            else:
                problems.append(url_problem("layer", raw, "not a layer number (0 = first hidden layer)", "layer 0"))
        return state, problems

    def to_search(self) -> str:
        q: dict[str, Any] = {}
        if self.run is not None:
            q["run"] = self.run
        q["clause"] = "none" if self.clause is None else self.clause
        q["threshold"] = self.threshold if isinstance(self.threshold, str) else f"{self.threshold:g}"
        q["view"] = self.view
        if self.layer:
            q["layer"] = self.layer
        if self.compare:
            q["compare"] = self.compare
        return "?" + urlencode(q)

    def with_(self, **changes: Any) -> ViewState:
        return replace(self, **changes)
