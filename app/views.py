"""What the callbacks do, as plain functions: turn the URL into a page, and an
input event into the next URL. The Dash callbacks (`app.callbacks`) only unpack
their arguments, call these and return the result.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dash import Patch, html, no_update

from analyses.entries import MODELS
from app import figures, panels
from app.cache import Explorer
from app.catalogue import Catalogue
from app.readings import RunAnalysis
from app.runs import LoadedRun, ModelData, RunError
from app.state import AUTO, DEFAULT_FRACTION, THRESHOLD_MAX, VIEWS, ViewState, url_problem

__all__ = [
    "CLICK_GRAPHS",
    "COMPARE_KINDS",
    "GRAPH_KINDS",
    "MAX_OPTIONS",
    "RENDER_GRAPHS",
    "Page",
    "clause_options",
    "figure_updates",
    "graph_id",
    "layer_options",
    "next_state",
    "part_updates",
    "proved_panel",
    "render_page",
    "run_options",
]

log = logging.getLogger(__name__)

#: Per-network graphs, each shown for parent, child and dense baseline.
GRAPH_KINDS = ("weights", "gram", "readout", "poly", "collisions")
#: The graphs of the compared run (prefix "b-").
COMPARE_KINDS = ("weights", "gram", "readout")
#: Most runs listed in the picker at once (narrow with the search or filters).
MAX_OPTIONS = 400


def graph_id(network: str, kind: str, compare: bool = False) -> str:
    return f"{'b-' if compare else ''}{network}-{kind}"


#: Graphs whose clicks select a clause.
CLICK_GRAPHS = [graph_id(n, k) for n in MODELS for k in ("weights", "gram", "collisions")] + ["capacity"]
#: Every graph the page callback draws.
RENDER_GRAPHS = ([graph_id(n, k) for n in MODELS for k in GRAPH_KINDS]
                 + [graph_id(n, k, True) for n in MODELS for k in COMPARE_KINDS] + ["capacity"])


@dataclass
class Page:
    """Everything the render callback writes. `url_problems`: the URL's bad fields
    (the page keeps the URL as sent while there are any)."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    summary: str = ""
    compare_summary: str = ""
    figures: dict[str, figures.Figure] = field(default_factory=dict)  # graph id -> figure
    metrics: Any = None
    compare_metrics: Any = None
    detail: Any = None
    table: Any = None
    decoded: Any = None
    titles: dict[str, str] = field(default_factory=dict)  # slot -> column title ("" hides the column)
    compare_titles: dict[str, str] = field(default_factory=dict)
    has_clauses: bool = False
    n_layers: int = 1
    analysis: RunAnalysis | None = None
    compare: RunAnalysis | None = None
    state: ViewState | None = None
    url_problems: list[str] = field(default_factory=list)
    legend: Any = None  # what the heatmaps of this kind and view encode (panels.legend)
    empty: Any = None  # what to do when no run is shown (the rows are hidden then)


def _blank(message: str = "") -> dict[str, figures.Figure]:
    """Every graph blank: the rows are hidden and `empty_state` says what to do."""
    return {g: figures.empty_figure("", 40) for g in RENDER_GRAPHS}


def empty_state(explorer: Explorer, why: str) -> list[Any]:
    """What the page says when it shows no run: why, and what to do."""
    n = len(explorer.catalogue().runs)
    if n:
        todo = (f"Pick a run above ({n} stored): narrow the list with the search box or the filters, then choose "
                "one in the run list.")
    else:
        todo = (f"The store {explorer.store.dir} holds no run yet. Train some with a study "
                "(python -m analyses lists them), or start python -m app on an empty folder to train the demo.")
    return [html.P(why, className="empty-why"), html.P(todo)]


def render_page(explorer: Explorer, search: str | None) -> Page:
    """The page for a URL query string. Never raises: an unknown run, a corrupt
    entry or a bad URL field becomes a message in the page."""
    state, problems = ViewState.from_search(search)
    try:
        return _render(explorer, state, list(problems))
    except Exception as e:  # the server must answer every request
        log.exception("rendering %r failed", search)
        return Page(messages=[("warning", p) for p in problems]
                    + [("error", f"Internal error while drawing this view: {type(e).__name__}: {e}")],
                    figures=_blank("internal error"), state=state, url_problems=problems)


def _landing(cat: Catalogue) -> str | None:
    r = cat.landing()
    return r.id if r else None


def _render(explorer: Explorer, state: ViewState, problems: list[str]) -> Page:
    cat = explorer.catalogue()

    def page(**kw) -> Page:
        kw.setdefault("state", state)
        return Page(messages=[("warning", p) for p in problems] + kw.pop("errors", []), url_problems=problems, **kw)

    if state.run is None:
        if not cat.runs:
            return page(figures=_blank(), empty=empty_state(explorer, "No run to show."))
        state = state.with_(run=_landing(cat))
    assert state.run is not None
    try:
        analysis = explorer.analysis(state.run, state.threshold)
    except RunError as e:
        return page(errors=[("error", f"Cannot show run {state.run!r}: {e}")], figures=_blank(),
                    empty=empty_state(explorer, f"Run {state.run!r} cannot be shown."))
    run = analysis.run
    clause = state.clause
    if clause is not None and not run.has_clauses:
        clause = None
    elif clause is not None and clause >= run.n_clauses:
        problems.append(url_problem("clause", str(clause), f"this task has clauses 0..{run.n_clauses - 1}", "none"))
        clause = None
    layer = state.layer
    if layer >= run.n_hidden_layers:
        problems.append(url_problem("layer", str(layer), f"this run has hidden layers 0..{run.n_hidden_layers - 1}",
                                    "layer 0"))
        layer = 0
    view = state.view
    notes: list[tuple[str, str]] = []
    if view == "codes" and (not run.has_clauses or layer > 0):
        notes.append(("info", "sign codes are defined on a Boolean task's first layer; showing weights"))
        view = "weights"
    other: RunAnalysis | None = None
    if state.compare:
        if cat.get(state.compare) is None:
            problems.append(url_problem("compare", state.compare, "no such run in the store", "no comparison"))
        else:
            try:
                other = explorer.analysis(state.compare, state.threshold)
            except RunError as e:
                notes.append(("error", f"Cannot compare with run {state.compare!r}: {e}"))
    runs = [run] + ([other.run] if other else [])
    ranges = figures.shared_ranges(runs, layer)
    figs: dict[str, figures.Figure] = {g: figures.empty_figure("", 40) for g in RENDER_GRAPHS}
    for name, kinds in figures.model_figures(analysis, clause, view, layer, ranges).items():
        for kind, fig in kinds.items():
            figs[graph_id(name, kind)] = fig
    for name in MODELS:
        if name not in run.models:
            figs[graph_id(name, "weights")] = figures.empty_figure("this run stores no network here", 80)
    compare_titles: dict[str, str] = {}
    if other is not None:
        o_clause = clause if other.run.has_clauses and clause is not None and clause < other.run.n_clauses else None
        o_layer = min(layer, other.run.n_hidden_layers - 1)
        for name, kinds in figures.model_figures(other, o_clause, view, o_layer, ranges).items():
            for kind in COMPARE_KINDS:
                figs[graph_id(name, kind, True)] = kinds[kind]
        # only the networks that differ: a same-trial comparison shares its parent and baseline
        compare_titles = {n: (other.run.models[n].title if n in other.run.models and (
            n not in run.models or not _same_network(run.models[n], other.run.models[n])) else "")
            for n in MODELS}
    figs["capacity"] = figures.capacity_figure(analysis, clause, layer)
    return page(
        errors=notes,
        summary=panels.run_summary(analysis),
        compare_summary=panels.run_summary(other) if other else "",
        figures=figs,
        metrics=_memo(analysis, "metrics", lambda: panels.metrics_table(analysis)),
        compare_metrics=_memo(other, "metrics-b", lambda: panels.metrics_table(other, "compare-metrics-table"))
        if other else None,
        detail=panels.clause_detail(analysis, clause),
        # the browser marks the selected row (assets/highlight.js), so the table does not depend on the clause
        table=_memo(analysis, "table", lambda: panels.clause_table(analysis, None)),
        decoded=_memo(run, "decoded", lambda: panels.decoded_readings(run)),  # the same at every threshold
        titles={n: (run.models[n].title if n in run.models else "") for n in MODELS},
        legend=_memo(analysis, f"legend-{view}-{layer}", lambda: panels.legend(run, view, layer)),
        compare_titles=compare_titles,
        has_clauses=run.has_clauses,
        n_layers=run.n_hidden_layers,
        analysis=analysis,
        compare=other,
        state=state.with_(clause=clause, layer=layer),
    )


def proved_panel(explorer: Explorer, run_id: str, slot: str) -> list[Any]:
    """What the weights of one network of a run prove (`panels.certified_panel`),
    drawn once per run and network. Never raises: a run that cannot be loaded, a
    network it does not have or a failed reading is one line."""
    try:
        run = explorer.run(run_id)
    except RunError as e:
        return [html.P(f"Cannot read run {run_id!r}: {e}", className="note refused")]
    if slot not in run.models:
        return [html.P(f"Run {run_id!r} has no {slot} network.", className="note refused")]
    try:
        return _memo(run, f"proved-{slot}", lambda: panels.certified_panel(run, slot))
    except Exception as e:  # the server must answer every request
        log.exception("the certified reading of %s in run %r failed", slot, run_id)
        return [html.P(f"Internal error while proving from the weights: {type(e).__name__}: {e}",
                       className="note refused")]


def _same_network(a: ModelData, b: ModelData) -> bool:
    """Whether two networks have the same effective weights and biases in every layer."""
    return (len(a.layers) == len(b.layers)
            and all(x[0].shape == y[0].shape and np.array_equal(x[0], y[0]) for x, y in zip(a.layers, b.layers))
            and all(np.array_equal(x, y) for x, y in zip(a.biases, b.biases)))


def _memo(analysis: RunAnalysis | LoadedRun, name: str, make) -> Any:
    """A panel drawn once per analysis or run (it is cached with it). Its
    digest for `part_updates` is a token unique to this process and panel, so a
    panel tens of kB large is not serialised twice to learn that it changed."""
    if name not in analysis.memo:
        value = make()
        analysis.memo[name] = value
        _remember(value, f"{_PROCESS}:{next(_TOKENS)}")
    return analysis.memo[name]


def _data_digest(data: list[dict]) -> str:
    """Digest of figure traces; typed arrays are hashed as their base64 text."""
    h = hashlib.sha1()
    for t in data:
        small = {}
        for k, v in t.items():
            if isinstance(v, dict) and "bdata" in v:
                h.update(v["bdata"].encode("ascii"))
                small[k] = {kk: vv for kk, vv in v.items() if kk != "bdata"}
            else:
                small[k] = v
        h.update(json.dumps(small, separators=(",", ":"), default=_plain).encode())
    return h.hexdigest()


_PROCESS = uuid.uuid4().hex[:12]
_TOKENS = itertools.count(1)
_DIGESTS: dict[int, tuple[Any, str]] = {}


def _remember(value: Any, digest: str) -> None:
    if len(_DIGESTS) > 128:  # about the panels of the analyses the Explorer caches
        _DIGESTS.clear()
    _DIGESTS[id(value)] = (value, digest)


def _digest_cached(value: Any) -> str:
    """`_digest` of a page part, or the token of a memoised panel (`_memo`)."""
    hit = _DIGESTS.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    return _digest(value)


def _digest(part: Any) -> str:
    return hashlib.sha1(json.dumps(part, separators=(",", ":"), default=_plain).encode()).hexdigest()


def _plain(o: Any) -> Any:
    return o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o)


def _patch_highlight(patch: Patch, hl: dict[str, Any]) -> None:
    for i, props in hl["traces"]:
        for key, value in props.items():
            target = patch["data"][i]
            *path, last = key.split(".")
            for p in path:
                target = target[p]
            target[last] = value


def figure_updates(figs: dict[str, figures.Figure], drawn: dict[str, list[str]] | None
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[str]]]:
    """What to send for each figure, given digests of what the browser already
    draws (`drawn`: graph id -> [data digest, layout digest, highlight digest],
    each of the figure without its highlight, `figures.split_highlight`).

    - base and highlight unchanged: nothing (`no_update`);
    - only the highlight changed (another clause): the highlight alone, applied in
      the browser by `Plotly.relayout` / `restyle` (assets/highlight.js), not a figure;
    - data unchanged, layout changed: a `Patch` of the layout (and highlighted trace
      properties), so the matrices are not sent again;
    - otherwise the whole figure.
    Returns (figure updates, highlights {graph id: highlight}, new digests)."""
    drawn = drawn or {}
    updates: dict[str, Any] = {}
    highlights: dict[str, Any] = {}
    digests: dict[str, list[str]] = {}
    for gid, fig in figs.items():
        base, hl = figures.split_highlight(fig)
        d = [_data_digest(base["data"]), _digest(base["layout"]), _digest(hl)]
        digests[gid] = d
        old = drawn.get(gid)
        if old is not None and old[:2] == d[:2]:
            updates[gid] = no_update
            if old[2:] != d[2:]:
                highlights[gid] = hl
        elif old is not None and old[0] == d[0]:
            patch = Patch()
            patch["layout"] = fig["layout"]
            _patch_highlight(patch, hl)
            updates[gid] = patch
        else:
            updates[gid] = fig
    return updates, highlights, digests


def part_updates(parts: dict[str, Any], drawn: dict[str, list[str]] | None
                 ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Page components the browser already shows (same digest in `drawn`, under
    `part:<name>`) become `no_update`. Returns (updates, new digests)."""
    drawn = drawn or {}
    out, digests = {}, {}
    for name, value in parts.items():
        d = [_digest_cached(value)]
        key = f"part:{name}"
        digests[key] = d
        out[name] = no_update if drawn.get(key) == d else value
    return out, digests


def _clicked_clause(explorer: Explorer, state: ViewState, source: str, click: Any) -> int | None:
    """The clause a click on a graph points at, or None."""
    if not click or not click.get("points") or state.run is None:
        return None
    point = click["points"][0]
    if source == "capacity":
        x = str(point.get("x", ""))
        return int(x[1:]) if x.startswith("c") and x[1:].isdigit() else None
    if source.endswith("-collisions"):
        c = point.get("customdata")
        return int(c) if isinstance(c, (int, float)) else None
    if state.layer:
        return None
    try:
        run = explorer.run(state.run)
    except RunError:
        return None
    return run.clause_at_column(str(point.get("x", "")))


def next_state(explorer: Explorer, search: str | None, trigger: Any, value: Any) -> ViewState | None:
    """The view after an input event, or None when the event changes nothing.

    trigger: the id of the component that fired (None or "url" on page load or
    history navigation, where the URL wins; a control id; a graph id for a click;
    or a clause-row dict); value: its new value."""
    state, _ = ViewState.from_search(search)
    if trigger is None or trigger == "url":
        if state.run is None:
            state = state.with_(run=_landing(explorer.catalogue()))
        return state
    nxt = _next(explorer, state, trigger, value)
    return None if nxt is None else _in_range(explorer, nxt)


def _in_range(explorer: Explorer, state: ViewState) -> ViewState:
    """A state whose clause and layer exist in its run (after a control change the
    URL is rewritten with valid values only)."""
    try:
        run = explorer.run(state.run) if state.run else None
    except RunError:
        return state
    if run is None:
        return state
    if state.clause is not None and state.clause >= run.n_clauses:
        state = state.with_(clause=None)
    if state.layer >= run.n_hidden_layers:
        state = state.with_(layer=0)
    return state


def _next(explorer: Explorer, state: ViewState, trigger: Any, value: Any) -> ViewState | None:
    if isinstance(trigger, dict):
        if trigger.get("type") == panels.ROW_TYPE and value:
            return state.with_(clause=int(trigger["index"]))
        return None
    if trigger == "run":
        return state.with_(run=value, layer=0) if value and value != state.run else None
    if trigger == "compare":
        value = value or None
        return state.with_(compare=value) if value != state.compare else None
    if trigger == "clause":
        return state.with_(clause=None if value is None else int(value))
    if trigger == "threshold-auto":
        return state.with_(threshold=AUTO if AUTO in (value or []) else DEFAULT_FRACTION)
    if trigger == "threshold":
        try:
            t = min(max(float(value), 0.0), THRESHOLD_MAX)
        except (TypeError, ValueError):
            return None
        return state.with_(threshold=t)
    if trigger == "view":
        return state.with_(view=value) if value in VIEWS else None
    if trigger == "layer":
        try:
            return state.with_(layer=max(0, int(value)))
        except (TypeError, ValueError):
            return None
    if trigger in CLICK_GRAPHS:
        c = _clicked_clause(explorer, state, trigger, value)
        return None if c is None else state.with_(clause=c)
    return None


def clause_options(explorer: Explorer, run_id: str | None) -> list[dict[str, Any]]:
    """Clause dropdown options of a run (none when it cannot be loaded or has no clauses)."""
    try:
        run = explorer.run(run_id) if run_id else None
    except RunError:
        run = None
    return [] if run is None else [{"label": f"c{c}: {run.clause_label(c)}", "value": c} for c in range(run.n_clauses)]


def layer_options(n_layers: int) -> list[dict[str, Any]]:
    return [{"label": f"layer {l + 1}", "value": l} for l in range(max(n_layers, 1))]


def run_options(explorer: Explorer, filters: dict[str, Any], current: str | None, query: str | None = None,
                limit: int = MAX_OPTIONS) -> list[dict[str, Any]]:
    """Run dropdown options matching the filters and the search query, grouped
    by study and dataset (a disabled header option per group), at most `limit`
    runs (a disabled last option says how many more match); the current run is
    always kept."""
    cat = explorer.catalogue()
    runs = cat.select(query, **filters)
    kept = cat.get(current)
    if kept is not None and all(r.id != kept.id for r in runs):
        runs = [kept, *runs]
    shown, more = runs[:limit], len(runs) - limit
    out: list[dict[str, Any]] = []
    group = None
    tasks: dict[str, set[str]] = {}
    for x in runs:
        tasks.setdefault(x.group, set()).add(x.task)
    for r in shown:
        common = len(tasks[r.group]) == 1  # a task every run of the group shares is said once, in its header
        if r.group != group:
            group = r.group
            n = sum(1 for x in runs if x.group == group)
            head = f"{group} · {r.task}" if common else group
            out.append({"label": f"── {head} ({n} run{'s' if n != 1 else ''}) ──", "value": f"group:{group}",
                        "disabled": True})
        task = "" if common else f" · {r.task}"
        out.append({"label": f"{r.what}{task} · H={r.hidden} · trial {r.trial} · {r.accuracy_text}", "value": r.id,
                    "title": r.label})
    if more > 0:
        out.append({"label": f"… {more} more runs match: narrow the search", "value": "more", "disabled": True})
    if not runs:
        out.append({"label": "no run matches the search and filters", "value": "none", "disabled": True})
    return out
