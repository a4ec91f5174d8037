"""The explorer without a browser: the demo start, the run catalogue, figure
builders against the stored models, the URL state, and the callbacks through
Dash's HTTP endpoint (bad input never crashes a request)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from dash import no_update

from app import create_app, figures, panels
from app.__main__ import prepare
from app.bench import CallbackClient
from app.cache import Explorer
from app.catalogue import scan_store
from app.demo import DEMO_SPEC
from app.readings import network_reading
from app.state import DEFAULT_FRACTION, DEFAULT_THRESHOLD, ViewState
from app.views import figure_updates, next_state, render_page, run_options
from fci.codes import clause_channels, collision_graph, polysemanticity, sign_codes
from fci.metrics import gram
from fci.models.mlp import MaskedMLP
from fci.store import Store
from fci.train import run_fpe, split_tensors
from tests.helpers import tiny_spec


@pytest.fixture(scope="module")
def demo(app_demo_dir):
    root, _ = app_demo_dir
    return Explorer(root)


@pytest.fixture(scope="module")
def run_id(demo):
    return next(r.id for r in demo.catalogue().runs if r.split == "clause")


def _stored_models(store: Store, run_id: str, dense_key: str) -> dict[str, MaskedMLP]:
    """The three networks straight from the store, without the explorer."""
    own, parent = split_tensors(store.load(run_id).tensors)
    dense, _ = split_tensors(store.load(dense_key).tensors)
    return {"parent": MaskedMLP.from_tensors(parent), "child": MaskedMLP.from_tensors(own),
            "dense": MaskedMLP.from_tensors(dense)}


def _w1(model: MaskedMLP) -> torch.Tensor:
    return model.effective_weights()[0][0]


# --------------------------------------------------------------------------- the demo start


def test_empty_store_trains_the_demo_and_later_starts_load_it(app_demo_dir):
    root, trained = app_demo_dir
    assert trained, "an empty store must train the demo"
    cat = Explorer(root).catalogue()
    assert sorted((r.split, r.alpha) for r in cat.runs) == [("clause", 2), ("random", 2)]
    assert {(r.hidden, r.task) for r in cat.runs} == {("8", "C=8 k=3 n=24 disjoint dnf")}
    assert cat.warnings == []
    t0 = time.perf_counter()
    _, trained_again = prepare(root, progress=False)
    assert not trained_again
    assert time.perf_counter() - t0 < 5, "a store with runs must load, not retrain"


def test_demo_shows_channels_and_the_clause_split_helps(demo, run_id):
    run = demo.run(run_id)
    assert run.task.clauses == DEMO_SPEC.make_task().clauses
    child, dense = run.models["child"], run.models["dense"]
    assert child.H == 2 * run.models["parent"].H == 16
    assert child.nnz == run.models["parent"].nnz, "the FPE budget"
    assert child.accuracy > dense.accuracy
    codes = demo.analysis(run_id, DEFAULT_THRESHOLD).codes
    assert any(codes[n].channels[c] for n in codes for c in range(run.n_clauses)), "no channel visible in the demo"


# --------------------------------------------------------------------------- figure builders


@pytest.mark.parametrize("network", ["parent", "child", "dense"])
def test_weight_heatmap_data_match_the_model(demo, run_id, network):
    run = demo.run(run_id)
    model = _stored_models(demo.store, run_id, run.info.dense_key)[network]
    W1 = _w1(model).numpy()
    mask = model.weight_mask(0).numpy()
    order = DEMO_SPEC.make_task().variable_order()
    fig = figures.weight_heatmap(run, run.models[network], demo.analysis(run_id, 0.1).codes[network], 2)
    trace = fig["data"][0]
    z = figures.array_of(trace["z"])
    rows = [int(label.split("·")[0][1:]) for label in trace["y"]]
    assert sorted(rows) == list(range(W1.shape[0]))
    expect = W1[np.ix_(rows, order)]
    masked = mask[np.ix_(rows, order)] == 0
    assert np.array_equal(np.isnan(z), masked), "exactly the masked weights are marked"
    np.testing.assert_allclose(z[~masked], expect[~masked], rtol=1e-6)
    assert trace["x"] == [("" if dict(c)[v] else "¬") + f"x{v}" for v in order for c in [
        next(cl for cl in run.clauses if v in dict(cl))]]
    if network == "child":
        assert masked.any()
        parents = [int(label.split("·p")[1]) for label in trace["y"]]
        assert parents == sorted(parents), "children are grouped under their parent"
        assert parents == model.parent_index[rows].tolist()
    else:
        assert not masked.any()


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.3])
def test_highlighted_neurons_are_exactly_the_clause_channel(demo, run_id, threshold):
    run = demo.run(run_id)
    models = _stored_models(demo.store, run_id, run.info.dense_key)
    clauses = DEMO_SPEC.make_task().clauses
    analysis = demo.analysis(run_id, threshold)
    seen_nonempty = False
    for network, model in models.items():
        expected = clause_channels(_w1(model), clauses, threshold=threshold)
        for c in range(len(clauses)):
            for view in ("weights", "codes"):
                fig = figures.weight_heatmap(run, run.models[network], analysis.codes[network], c, view)
                assert figures.highlighted(fig, "channel-neuron") == expected[c]
                assert figures.highlighted(fig, "clause-var") == sorted(v for v, _ in clauses[c])
            poly = figures.polysemanticity_bar(run, run.models[network], analysis.codes[network], c)
            colors = poly["data"][0]["marker"]["color"]
            lit = [int(label.split("·")[0][1:]) for label, col in zip(poly["data"][0]["x"], colors)
                   if col == figures.CHANNEL_COLOR]
            assert sorted(lit) == expected[c]
            seen_nonempty |= bool(expected[c])
    assert seen_nonempty


def test_no_clause_highlights_nothing(demo, run_id):
    run = demo.run(run_id)
    fig = figures.weight_heatmap(run, run.models["child"], demo.analysis(run_id, 0.1).codes["child"], None)
    assert figures.highlighted(fig, "channel-neuron") == [] and figures.highlighted(fig, "clause-var") == []


def test_code_view_shows_literal_codes(demo, run_id):
    run = demo.run(run_id)
    model = _stored_models(demo.store, run_id, run.info.dense_key)["child"]
    clauses = DEMO_SPEC.make_task().clauses
    S = sign_codes(_w1(model), threshold=0.2).numpy()
    analysis = demo.analysis(run_id, 0.2)
    fig = figures.weight_heatmap(run, run.models["child"], analysis.codes["child"], 0, "codes")
    z = figures.array_of(fig["data"][0]["z"])
    rows, order = run.models["child"].row_order, run.order
    polarity = np.ones(S.shape[1])
    for clause in clauses:
        for v, positive in clause:
            polarity[v] = 1 if positive else -1
    expect = S[np.ix_(rows, order)] * polarity[order]
    ok = ~np.isnan(z)
    np.testing.assert_array_equal(z[ok], expect[ok])
    # A channel neuron's row reads +1 on every literal of the clause.
    cols = [list(order).index(v) for v, _ in clauses[0]]
    for i in analysis.codes["child"].channels[0]:
        assert (z[list(rows).index(i), cols] == 1).all()


def test_gram_heatmap_matches_the_model(demo, run_id):
    run = demo.run(run_id)
    model = _stored_models(demo.store, run_id, run.info.dense_key)["child"]
    fig = figures.gram_heatmap(run, run.models["child"], 1)
    order = run.order
    np.testing.assert_allclose(figures.array_of(fig["data"][0]["z"]), gram(_w1(model)).numpy()[np.ix_(order, order)],
                               rtol=1e-5, atol=1e-6)
    assert figures.highlighted(fig, "clause-var") == sorted(v for v, _ in run.clauses[1])


def test_polysemanticity_and_collision_graph_match_fci_codes(demo, run_id):
    run = demo.run(run_id)
    models = _stored_models(demo.store, run_id, run.info.dense_key)
    clauses = run.clauses
    for threshold in (0.05, 0.1):
        analysis = demo.analysis(run_id, threshold)
        for network, model in models.items():
            W1 = _w1(model)
            poly = figures.polysemanticity_bar(run, run.models[network], analysis.codes[network])
            rows = run.models[network].row_order
            assert poly["data"][0]["y"] == polysemanticity(W1, clauses, threshold=threshold).numpy()[rows].tolist()
            g = collision_graph(W1, clauses, threshold=threshold)
            fig = figures.collision_figure(run, analysis.codes[network].graph, clause=0)
            nodes = fig["data"][-1]
            assert nodes["customdata"] == list(range(len(clauses)))
            n_edges = sum(t["x"].count(None) for t in fig["data"][:-1])
            assert n_edges == g.number_of_edges()
            # The selected clause's edges: one highlight path, a segment per partner.
            edges = next(sh for sh in fig["layout"]["shapes"] if sh["name"].startswith("selected-edges:"))
            assert edges["path"].count("M") == g.degree(0) or (g.degree(0) == 0 and edges["path"] == "M0,0")
            assert figures.highlighted(fig, "selected-edges") == sorted(g[0])
            assert figures.highlighted(fig, "selected-node") == [0]


def test_capacity_figure_and_panels(demo, run_id):
    analysis = demo.analysis(run_id, 0.1)
    fig = figures.capacity_figure(analysis, 3)
    assert [t["name"] for t in fig["data"]] == ["Dense parent at expansion",
                                                "FPE child (clause split, α=2) after fine-tuning",
                                                "Paired dense baseline"]
    for trace, name in zip(fig["data"], ("parent", "child", "dense")):
        assert trace["y"] == [r["capacity"] for r in analysis.codes[name].rows]
    assert fig["layout"]["shapes"][0]["name"] == "clause:3"
    table = panels.clause_table(analysis, 3)
    body = table.children[1].children
    assert len(body) == analysis.run.n_clauses
    assert [r.className for r in body].index("selected") == 3
    assert body[3].id == {"type": panels.ROW_TYPE, "index": 3}
    text = json.dumps(panels.clause_detail(analysis, 3), default=lambda o: o.to_plotly_json(), ensure_ascii=False)
    assert analysis.run.clause_label(3) in text
    metrics = json.dumps(panels.metrics_table(analysis).to_plotly_json(), default=lambda o: o.to_plotly_json(), ensure_ascii=False)
    for label in ("test accuracy", "nnz", "mean feature capacity", "cosine interference", "agreement, decoded function",
                  "agreement, static decode", "true-formula agreement (the reference)"):
        assert label in metrics


# --------------------------------------------------------------------------- page, URL and events


def test_render_page_follows_the_url(demo, run_id):
    page = render_page(demo, ViewState(run=run_id, clause=4, threshold=0.2, view="codes").to_search())
    assert page.messages == []
    assert page.state.clause == 4 and page.analysis.threshold == 0.2
    channel = page.analysis.codes["child"].channels[4]
    assert figures.highlighted(page.figures["child-weights"], "channel-neuron") == channel
    assert page.figures["child-weights"]["data"][0]["colorbar"]["tickvals"] == [-1, 0, 1]


def test_figures_are_sent_only_as_far_as_they_changed(demo, run_id):
    channels = demo.analysis(run_id, 0.1).codes["child"].channels
    a, b = next((a, b) for a in range(len(channels)) for b in range(len(channels)) if channels[a] != channels[b])
    first = render_page(demo, ViewState(run=run_id, clause=a).to_search())
    sent, hl, drawn = figure_updates(first.figures, None)
    assert all(isinstance(f, dict) for f in sent.values()) and hl == {}
    second = render_page(demo, ViewState(run=run_id, clause=b).to_search())
    sent, hl, _ = figure_updates(second.figures, drawn)
    # Another clause sends no figure, only the highlight edits (applied in the browser).
    assert all(f is no_update for f in sent.values())
    for gid in ("parent-weights", "child-weights", "dense-gram"):
        fig = second.figures[gid]
        edits = hl[gid]["layout"]
        # Applying the edits to the first page's figure gives the second page's highlight.
        shapes = [dict(sh) for sh in first.figures[gid]["layout"]["shapes"]]
        for key, value in edits.items():
            i, attr = key[len("shapes["):].split("].")
            shapes[int(i)][attr] = value
        assert shapes == fig["layout"]["shapes"]
        assert figures.highlighted({"layout": {"shapes": shapes}}, "clause-var") == \
            sorted(v for v, _ in demo.run(run_id).clauses[b])
    # The polysemanticity bars recolour through a restyle of marker.color.
    [[i, props]] = hl["child-poly"]["traces"]
    assert props["marker.color"] == second.figures["child-poly"]["data"][i]["marker"]["color"]
    # Another view changes the heatmap data: the figure goes whole.
    third = render_page(demo, ViewState(run=run_id, clause=b, view="codes").to_search())
    assert isinstance(figure_updates(third.figures, drawn)[0]["child-weights"], dict)
    # What the browser already draws is not sent again.
    sent, hl, _ = figure_updates(first.figures, drawn)
    assert all(f is no_update for f in sent.values()) and hl == {}


def test_split_highlight_separates_exactly_the_selection(demo, run_id):
    """The figure less its highlight is the same for every clause."""
    bases = set()
    for c in (None, 0, 3, 5):
        page = render_page(demo, ViewState(run=run_id, clause=c).to_search())
        bases.add(json.dumps({g: figures.split_highlight(f)[0] for g, f in page.figures.items()}, sort_keys=True))
    assert len(bases) == 1


def test_unknown_run_in_the_url_renders_a_message(demo):
    page = render_page(demo, "?run=no-such-run&clause=1")
    assert any(level == "error" and "unknown run 'no-such-run'" in text for level, text in page.messages)
    assert page.analysis is None


@pytest.mark.parametrize("search", ["?clause=abc", "?threshold=-1", "?threshold=nan", "?view=3d", "?clause=99",
                                    "?run=&clause=", "?%%%", None])
def test_bad_url_fields_warn_and_never_raise(demo, search):
    page = render_page(demo, search)
    assert page.analysis is not None, page.messages
    if search not in (None, "?run=&clause=", "?%%%"):
        assert page.messages and all(level == "warning" for level, _ in page.messages)


def test_bad_url_fields_name_field_sent_and_used(demo, run_id):
    page = render_page(demo, f"?run={run_id}&clause=99&threshold=2&view=3d&layer=-1&compare=nope")
    assert page.analysis is not None
    assert page.url_problems == [
        "URL field threshold: sent '2', neither auto nor a number in [0, 1]; using auto instead",
        "URL field view: sent '3d', not one of weights, codes, masks; using weights instead",
        "URL field layer: sent '-1', not a layer number (0 = first hidden layer); using layer 0 instead",
        "URL field clause: sent '99', this task has clauses 0..7; using none instead",
        "URL field compare: sent 'nope', no such run in the store; using no comparison instead",
    ]
    assert [level for level, _ in page.messages] == ["warning"] * 5
    assert page.state.clause is None and page.state.threshold == "auto" and page.compare is None


def test_the_url_is_kept_as_sent_until_a_control_changes(demo, run_id):
    app = create_app(demo.store.root)
    client = CallbackClient(app)
    sent = f"?run={run_id}&threshold=-1"
    status, out = client.update(sent)
    assert status == 200 and "url.search" not in out, "a page load with bad fields keeps the URL"
    assert "URL field threshold: sent '-1'" in json.dumps(out["messages.children"], ensure_ascii=False)
    status, out = client.update(sent, "view.value", "codes")
    assert ViewState.from_search(out["url.search"]) == (ViewState(run=run_id, view="codes"), [])
    assert "URL field" not in json.dumps(out["messages.children"])


def test_view_state_round_trip():
    s = ViewState(run="abc", clause=3, threshold=0.25, view="codes")
    assert ViewState.from_search(s.to_search()) == (s, [])
    assert ViewState.from_search(ViewState(run="abc", clause=None).to_search())[0].clause is None
    assert ViewState.from_search("") == (ViewState(), [])
    assert ViewState().threshold == "auto", "the data-driven per-neuron split is the default"
    assert ViewState.from_search("?threshold=auto") == (ViewState(threshold="auto"), [])
    assert "threshold=auto" in ViewState().to_search()


def test_next_state_maps_events_to_clauses(demo, run_id):
    run = demo.run(run_id)
    search = ViewState(run=run_id, clause=0).to_search()
    v = run.clauses[5][0][0]
    label = run.labels[list(run.order).index(v)]
    assert next_state(demo, search, "child-weights", {"points": [{"x": label, "y": "h0·p0"}]}).clause == 5
    assert next_state(demo, search, "dense-gram", {"points": [{"x": label, "y": label}]}).clause == 5
    assert next_state(demo, search, "parent-collisions", {"points": [{"customdata": 6}]}).clause == 6
    assert next_state(demo, search, "capacity", {"points": [{"x": "c7"}]}).clause == 7
    assert next_state(demo, search, {"type": panels.ROW_TYPE, "index": 2}, 1).clause == 2
    assert next_state(demo, search, {"type": panels.ROW_TYPE, "index": 2}, 0) is None  # a re-rendered row
    assert next_state(demo, search, "child-weights", {"points": [{"x": "nonsense"}]}) is None
    assert next_state(demo, search, "threshold", 0.35).threshold == 0.35
    assert next_state(demo, search, "threshold-auto", []).threshold == DEFAULT_FRACTION, "untick auto: a fraction"
    assert next_state(demo, "?threshold=0.3", "threshold-auto", ["auto"]).threshold == "auto"
    assert next_state(demo, search, "view", "codes").view == "codes"
    assert next_state(demo, "", None, None).run == demo.catalogue().runs[0].id


def _runs(options):
    return [o["value"] for o in options if not o.get("disabled")]


def test_run_filters(demo):
    cat = demo.catalogue()
    assert set(_runs(run_options(demo, {"split": ["random"]}, None))) == {r.id for r in cat.runs if r.split == "random"}
    assert len(_runs(run_options(demo, {"alpha": [2], "trial": [0], "hidden": ["8"]}, None))) == 2
    keep = next(r.id for r in cat.runs if r.split == "clause")
    assert _runs(run_options(demo, {"split": ["random"]}, keep))[0] == keep


# --------------------------------------------------------------------------- the server


def test_callbacks_through_http_never_crash(demo, run_id):
    app = create_app(demo.store.root)
    client = CallbackClient(app)
    status, out = client.update("")  # a page load without a query: the first run, clause 0
    assert status == 200 and f"run={demo.catalogue().runs[0].id}" in out["url.search"]
    assert out["clause.value"] == 0 and len(out["clause.options"]) == 8
    client.drawn = None  # a fresh page: figures come whole
    status, out = client.update(ViewState(run=run_id).to_search(), "clause.value", 5)
    assert status == 200 and "clause=5" in out["url.search"] and out["clause.value"] == 5
    assert figures.highlighted(out["child-weights.figure"], "channel-neuron") == \
        demo.analysis(run_id, DEFAULT_THRESHOLD).codes["child"].channels[5]
    status, out = client.update(ViewState(run=run_id).to_search(), "child-weights.clickData",
                                {"points": [{"x": "x999", "y": "h0"}]})
    assert status in (200, 204) and out == {}  # a click on nothing changes nothing
    for search in (ViewState(run=run_id, clause=3).to_search(), "?run=nope", "?clause=-4&threshold=x", "?%00"):
        client.drawn = None
        status, out = client.update(search)
        assert status == 200, search
        assert "child-weights.figure" in out and "messages.children" in out
    client.drawn = None
    status, out = client.update("?run=nope")
    assert "unknown run 'nope'" in json.dumps(out["messages.children"])


def test_corrupt_entries_are_skipped_with_a_visible_warning(app_demo_dir, tmp_path):
    root, _ = app_demo_dir
    shutil.copytree(root / "store", tmp_path / "store")
    store = Store(tmp_path)
    cat = scan_store(store)
    random_run = next(r for r in cat.runs if r.split == "random")
    clause_run = next(r for r in cat.runs if r.split == "clause")
    (store.path(random_run.id) / "metrics.json").write_text("{ not json")
    (store.path(clause_run.id) / "weights.safetensors").write_bytes(b"garbage")
    explorer = Explorer(tmp_path)
    cat = explorer.catalogue()
    # The store verifies checksums on load, so corrupt weights are caught when listing, like corrupt metrics.
    assert cat.runs == []
    assert len(cat.warnings) == 2
    assert any(random_run.id in w and "metrics.json" in w for w in cat.warnings)
    assert any(clause_run.id in w and "weights.safetensors" in w for w in cat.warnings)
    app = create_app(tmp_path, explorer=explorer)
    layout = json.dumps(app.layout().to_plotly_json(), default=lambda o: o.to_plotly_json(), ensure_ascii=False)
    assert "skipped a corrupt store entry" in layout
    # A link to the corrupt run renders a message, not an exception.
    page = render_page(explorer, ViewState(run=clause_run.id).to_search())
    assert page.analysis is None
    assert any(level == "error" and clause_run.id in text for level, text in page.messages)
    status, _ = CallbackClient(app).update(ViewState(run=clause_run.id).to_search())
    assert status == 200


def test_the_catalogue_sees_runs_stored_while_serving(tmp_path):
    explorer = Explorer(tmp_path)
    assert explorer.catalogue().runs == []
    page = render_page(explorer, "")  # the empty state says what to do, not an error
    text = " ".join(str(p.children) for p in page.empty)
    assert page.analysis is None and "holds no run yet" in text and "python -m analyses" in text
    assert not [m for m in page.messages if m[0] == "error"]
    run_fpe([tiny_spec()], device="cpu", store=Store(tmp_path))
    assert len(explorer.catalogue().runs) == 2


# --------------------------------------------------------------------------- decoded readings


def _and_network(clauses, groups, n: int, scale: float = 1.0) -> MaskedMLP:
    """A clean AND network: one neuron per clause, +scale on its positive literals,
    -scale on its negated ones, bias -(positives - 1/2)·scale, so it fires (at
    scale/2) exactly when all its literals hold; output o sums the neurons of
    groups[o] with bias -scale/4: output o is the OR of its clauses."""
    H, O = len(clauses), len(groups)
    W1, b1 = torch.zeros(H, n), torch.zeros(H)
    for j, clause in enumerate(clauses):
        for v, positive in clause:
            W1[j, v] = scale if positive else -scale
        b1[j] = -(sum(p for _, p in clause) - 0.5) * scale
    W2 = torch.zeros(O, H)
    for o, g in enumerate(groups):
        W2[o, list(g)] = 1.0
    return MaskedMLP.from_tensors({"W0": W1, "b0": b1, "M0": torch.ones(H, n), "m0": torch.ones(H),
                                   "W1": W2, "b1": torch.full((O,), -scale / 4), "M1": torch.ones(O, H),
                                   "m1": torch.ones(O)})


def _all_inputs(n: int) -> np.ndarray:
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float32)


def _predictions(model: MaskedMLP, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (model(torch.from_numpy(x)) > 0).float().numpy()


CLEAN = [((0, True), (1, True)), ((2, False), (3, True)), ((4, True), (5, False), (6, True))]


@pytest.mark.parametrize("scale", [0.05, 1.0, 20.0])
def test_a_clean_and_network_reads_as_exactly_its_clauses(scale):
    from app.readings import read_network

    model = _and_network(CLEAN, [(0, 1, 2)], n=8, scale=scale)
    x = _all_inputs(8)
    reading = read_network(model, CLEAN, [(0, 1, 2)], x, _predictions(model, x))
    (out,) = reading.outputs
    assert not out.constant
    assert sorted(t.clause for t in out.terms) == sorted(CLEAN), "the terms are exactly the clauses"
    assert [t.matches for t in sorted(out.terms, key=lambda t: CLEAN.index(t.clause))] == [0, 1, 2]
    assert all(t.precision == 1.0 and t.certified for t in out.terms)
    assert out.missed == () and out.uncovered == 0.0 and out.sample_agreement == 1.0
    # 1 - P(no clause) over uniform inputs: (1 - 1/4)(1 - 1/4)(1 - 1/8)
    assert out.positive_rate == pytest.approx(1 - 0.75 * 0.75 * 0.875)
    assert reading.agreement == 1.0 and reading.reference == 1.0 and reading.recovery_f1 == 1.0


def test_grouped_outputs_read_per_output_and_name_the_clause_no_term_covers():
    """y0 = c0 ∨ c1, y1 = c2 by the task, but the network has no neuron for c1: y0
    reads as c0 alone, c1 is missed, and the reference (the true formula against the
    network) falls by exactly the inputs where c1 holds and c0 does not."""
    from app.readings import read_network

    groups = [(0, 1), (2,)]
    model = _and_network([CLEAN[0], CLEAN[2]], [(0,), (1,)], n=8)
    x = _all_inputs(8)
    reading = read_network(model, CLEAN, groups, x, _predictions(model, x), ["y0", "y1"])
    y0, y1 = reading.outputs
    assert [t.clause for t in y0.terms] == [CLEAN[0]] and y0.terms[0].matches == 0
    assert y0.true_clauses == (0, 1) and y0.missed == (1,)
    assert [t.clause for t in y1.terms] == [CLEAN[2]] and y1.terms[0].matches == 2 and y1.missed == ()
    assert reading.agreement == 1.0
    # y0 disagrees where c1 holds (1/4) and c0 does not (3/4); y1 agrees: mean over both outputs
    assert reading.reference == pytest.approx((1 - 0.25 * 0.75 + 1) / 2)


def test_a_broader_term_fires_on_its_true_clause():
    """A neuron for x0 alone, under a task whose clause is x0 ∧ x1: the term x0 is no
    match, but it fires wherever the clause holds, so the clause is not missed."""
    from app.readings import read_network

    model = _and_network([((0, True),)], [(0,)], n=4)
    x = _all_inputs(4)
    reading = read_network(model, [CLEAN[0]], [(0,)], x, _predictions(model, x))
    (term,) = reading.outputs[0].terms
    assert term.clause == ((0, True),) and term.matches is None and term.broader == (0,)
    assert reading.outputs[0].missed == ()
    assert reading.reference == 0.75  # x0 ∧ x1 against x0: they differ where x0 holds and x1 does not


def test_demo_readings_are_the_fci_numbers_and_decoded_once(demo, run_id):
    from fci.codes import circuit_agreement, decode_function, true_formula_agreement

    run = demo.run(run_id)
    for slot, m in run.models.items():
        reading = network_reading(run, slot)
        assert network_reading(run, slot) is reading, "decoded once per network"
        circuit = decode_function(m.model, form="dnf")
        assert circuit.clauses == reading.circuit.clauses, "decode_function's DNF reading at its defaults (seed 0)"
        assert reading.agreement == circuit_agreement(circuit, m.predictions, run.x_test)
        assert reading.reference == true_formula_agreement(run.clauses, m.predictions, run.x_test, run.task.groups)
    a, b = demo.analysis(run_id, 0.1), demo.analysis(run_id, "auto")
    assert a is not b and a.run is b.run, "a new threshold does not decode again"


def test_decoded_readings_panel_shows_terms_precision_and_the_reference_with_the_gap(demo, run_id):
    analysis = demo.analysis(run_id, "auto")
    text = json.dumps(panels.decoded_readings(analysis.run), default=lambda o: o.to_plotly_json(), ensure_ascii=False)
    run = analysis.run
    for slot in run.models:
        reading = network_reading(run, slot)
        assert f"true-formula agreement {reading.reference:.3f}" in text
        assert f"decoded function {reading.agreement:.3f}" in text
        assert f"(gap {reading.agreement - reading.reference:+.3f})" in text
        assert f"decoded-terms-{slot}-0" in text
        for t in reading.outputs[0].terms:
            assert t.text in text
    for slot in run.models:
        assert f"uncovered positive mass {network_reading(run, slot).outputs[0].uncovered:.3f}" in text
    child = network_reading(run, "child").outputs[0]
    matched = [t for t in child.terms if t.matches is not None]
    assert matched and f"= c{matched[0].matches}" in text
    metrics = json.dumps(panels.metrics_table(analysis).to_plotly_json(), default=lambda o: o.to_plotly_json(),
                         ensure_ascii=False)
    assert f"{network_reading(run, 'child').reference:.3f}" in metrics
    detail = json.dumps(panels.clause_detail(analysis, matched[0].matches), default=lambda o: o.to_plotly_json(),
                        ensure_ascii=False)
    assert f"exact term, precision {matched[0].precision:.2f}" in detail


def test_clause_table_readouts_use_the_biases(demo, run_id):
    """The explorer passes b1 to clause_table: readouts by exact contribution."""
    from fci.codes import clause_table

    run = demo.run(run_id)
    m = run.models["child"]
    rows = demo.analysis(run_id, "auto").codes["child"].rows
    assert rows == clause_table(m.W1, m.W2, run.clauses, threshold="auto", b1=m.b1)
    assert np.array_equal(m.b1, m.model.effective_weights()[0][1].numpy())


def test_per_clause_outputs_are_read_per_output(tmp_path):
    """A task with one output per clause: the panel reads each output apart, each
    against its own true clause, and the reference is true_formula_agreement's."""
    from fci.codes import true_formula_agreement

    run_fpe([tiny_spec(hidden=4, expansions=(("clause", 2),), outputs="clauses")], device="cpu", store=Store(tmp_path))
    explorer = Explorer(tmp_path)
    (info,) = explorer.catalogue().runs
    analysis = explorer.analysis(info.id, "auto")
    run = analysis.run
    assert run.task.n_outputs == run.n_clauses > 1
    text = json.dumps(panels.decoded_readings(analysis.run), default=lambda o: o.to_plotly_json(), ensure_ascii=False)
    for slot, m in run.models.items():
        reading = network_reading(run, slot)
        assert [o.true_clauses for o in reading.outputs] == [(c,) for c in range(run.n_clauses)]
        assert reading.reference == true_formula_agreement(run.clauses, m.predictions, run.x_test, run.task.groups)
        for o in reading.outputs:
            assert f"output y{o.output} (true: OR of c{o.output})" in text
            assert all(t.matches in (None, o.output) for t in o.terms), "a term matches only its output's clause"


# --------------------------------------------------------------------------- what the weights prove


def _text(component) -> str:
    """Everything a component tree shows or hovers, as JSON text."""
    return json.dumps(component, default=lambda o: o.to_plotly_json(), ensure_ascii=False)


def _rows(component, table_id: str) -> list[list[str]]:
    """The cells' texts of each body row of the table with this id."""
    found = []

    def walk(node):
        if hasattr(node, "to_plotly_json"):
            if getattr(node, "id", None) == table_id:
                found.append(node)
            walk(getattr(node, "children", None))
        elif isinstance(node, (list, tuple)):
            for n in node:
                walk(n)

    walk(component)
    (table,) = found
    return [[td.children for td in tr.children] for tr in table.children[1].children]


def test_the_proved_terms_are_decode_certified_with_its_coverage(demo, run_id):
    """The panel lists exactly decode(model, method="certified")'s terms, in its order,
    each with the true clauses whose literals it contains (it implies them), its
    coverage (exact or a lower bound) and its agreement beside the reference."""
    from fci.codes import circuit_agreement, decode, true_formula_agreement
    from fci.tasks import format_clause

    run = demo.run(run_id)
    m = run.models["parent"]
    circuit = decode(m.model, method="certified")
    panel = panels.certified_panel(run, "parent")
    rows = _rows(panel, "proved-terms-parent-0")
    assert [r[0] for r in rows] == [format_clause(t) for t in circuit.terms(0)] and rows
    truth = [frozenset(c) for c in run.clauses]
    assert [r[1] for r in rows] == [", ".join(f"c{c}" for c in range(run.n_clauses) if truth[c] <= frozenset(t)) or "—"
                                    for t in circuit.terms(0)]
    text = _text(panel)
    exact = "exactly" if circuit.coverage_exact[0] else "at least"
    assert f"{len(circuit.terms(0))} proved terms, coverage {exact} {circuit.coverage[0]:.3f} of its positive inputs" in text
    agreement = circuit_agreement(circuit, m.predictions, run.x_test)
    reference = true_formula_agreement(run.clauses, m.predictions, run.x_test, run.groups)
    assert f"certified {agreement:.3f}" in text and f"true-formula agreement {reference:.3f}" in text
    assert f"(gap {agreement - reference:+.3f})" in text
    assert "cascade" not in text, "one hidden layer: no cascade"


def test_the_prove_button_answers_through_http_and_reads_once(demo, run_id):
    """The decoded panel holds a button per network; its callback answers with the
    certified panel, and a second click reads nothing again (the same components)."""
    from app.readings import certified_reading

    app = create_app(demo.store.dir.parent, explorer=demo)
    decoded = _text(panels.decoded_readings(demo.run(run_id)))
    ids = {"type": panels.PROVED_TYPE, "run": run_id, "slot": "dense"}
    assert json.dumps(ids, ensure_ascii=False) in decoded or all(f'"{k}": "{v}"' in decoded for k, v in ids.items())
    key = next(k for k in app.callback_map if panels.PROVED_BODY in k)
    body = {"type": panels.PROVED_BODY, "run": run_id, "slot": "dense"}
    payload = {"output": key, "outputs": {"id": body, "property": "children"},
               "inputs": [{"id": ids, "property": "n_clicks", "value": 1}],
               "changedPropIds": [json.dumps(ids, separators=(",", ":"), sort_keys=True) + ".n_clicks"], "state": []}
    client = app.server.test_client()
    resp = client.post("/_dash-update-component", json=payload)
    assert resp.status_code == 200
    out = json.dumps(resp.get_json(), ensure_ascii=False)
    proved = certified_reading(demo.run(run_id), "dense")
    assert "proved-terms-dense-0" in out and f"certified {proved.agreement:.3f}" in out
    assert certified_reading(demo.run(run_id), "dense") is proved, "read once per network"


def test_a_deep_run_shows_its_cascade(tmp_path):
    """A trained network with two hidden layers: the panel shows the cascade's layers,
    every feature's formula over the layer below (and over the inputs from layer 2 on)
    and its coverage, equal to cascade(model)'s; the output's proved terms are the
    cascade's reading, and with every input decided and covered (12 inputs) the
    reading agrees with the network on every test input."""
    from fci.codes import cascade
    from fci.tasks import format_clause

    run_fpe([tiny_spec(hidden=[8, 8], expansions=(("clause", 2),), warmup=150, finetune=20)], device="cpu",
            store=Store(tmp_path))
    explorer = Explorer(tmp_path)
    (info,) = explorer.catalogue().runs
    run = explorer.run(info.id)
    m = run.models["child"]
    assert run.n_hidden_layers == 2 and m.accuracy > 0.8, "a deep network that learned the task"
    steps = cascade(m.model)
    assert any(len(f.on) for f in steps.layers[1]), "some layer-2 feature is proved on somewhere"
    panel = panels.certified_panel(run, "child")
    text = _text(panel)
    assert "cascade: 2 hidden layers, " + " → ".join(map(str, steps.sizes)) in text
    for l, feats in enumerate(steps.layers):
        rows = _rows(panel, f"cascade-child-layer-{l + 1}")
        assert rows == [[f.name, f.formula(limit=panels.FEATURE_TERMS)]
                        + ([f.formula(over="inputs", limit=panels.FEATURE_TERMS)] if l else [])
                        + [f"{'=' if f.exact else '≥'} {f.coverage:.3f}"] for f in feats]
    assert [r[:2] for r in _rows(panel, "cascade-child-readout")] == [[f.name, f.formula(limit=panels.FEATURE_TERMS)]
                                                                      for f in steps.readout]
    out = steps.output
    assert [r[0] for r in _rows(panel, "proved-terms-child-0")] == [format_clause(t) for t in out.terms(0)]
    if out.coverage_exact[0] and out.coverage[0] == 1.0:
        assert "certified 1.000" in text


def test_no_text_the_explorer_shows_says_ceiling(demo, run_id):
    """The reference is the true-formula agreement everywhere: labels, hovers, notes."""
    from app.layout import build_layout

    page = render_page(demo, ViewState(run=run_id, clause=0).to_search())
    shown = [page.metrics, page.detail, page.table, page.decoded, page.summary,
             panels.certified_panel(demo.run(run_id), "parent")]
    text = _text(shown).lower()
    assert "true-formula agreement" in text and "ceiling" not in text
    assert "ceiling" not in _text(build_layout(demo)).lower()


def test_the_panel_opens_when_a_reading_is_refused(demo, run_id):
    """A network the readers cannot read: the panel still draws, with the reference and
    one line saying why, for both readings."""
    import dataclasses

    from app.readings import certified_reading

    base = demo.run(run_id)
    models = dict(base.models, dense=dataclasses.replace(base.models["dense"], model=None))
    run = dataclasses.replace(base, models=models, readings={}, memo={})
    decoded = panels.decoded_readings(run)
    text = _text(decoded)
    reading = network_reading(run, "dense")
    assert reading.circuit is None and reading.reason == "the network's model is not loaded"
    assert "decode_function cannot read this network: the network's model is not loaded" in text
    assert f"true-formula agreement {reading.reference:.3f}" in text
    panel = panels.certified_panel(run, "dense")
    proved = certified_reading(run, "dense")
    assert proved.circuit is None and proved.reference == reading.reference
    (line,) = [p.children for p in panel if getattr(p, "id", None) == "proved-refused-dense"]
    assert line == "the certified reader cannot read this network: the network's model is not loaded"
    assert "\n" not in line


def test_a_cnf_reading_shows_disjunctions_matching_the_task_clauses():
    """A hand-built CNF network (a neuron per falsifying term, the readout negated):
    the functional reading in the task's form lists disjunctions, each equal to its
    true clause, and the output is called an AND."""
    from app.readings import read_network

    clauses = [((0, True), (1, True)), ((2, False), (3, True))]
    falsifying = [tuple((v, not p) for v, p in c) for c in clauses]
    model = _and_network(falsifying, [(0, 1)], n=6)
    with torch.no_grad():  # output = NOT (OR of falsifying terms) = AND of the clauses
        model.weights[-1].mul_(-1)
        model.biases[-1].mul_(-1)
    x = _all_inputs(6)
    reading = read_network(model, clauses, [(0, 1)], x, _predictions(model, x), form="cnf")
    assert reading.circuit.form == "cnf" and reading.agreement == 1.0 and reading.reference == 1.0
    (out,) = reading.outputs
    assert sorted((t.text, t.matches) for t in out.terms) == [("x0 ∨ x1", 0), ("¬x2 ∨ x3", 1)]
    text = _text(panels._function_reading(reading, "child"))
    assert "CNF · inputs uniform" in text and "= c0" in text and "= c1" in text
