"""The explorer on every stored model kind: the studies' own `--tiny` runs
(real_data on digits, wide_sparse, structured_sparsity, effective_density,
deep_fpe) write a store; every entry with weights becomes runs whose networks
are exactly the stored tensors, Boolean tasks get their trained clauses back,
and the picker sorts, searches and groups them. In headless Chromium: one page
per kind, drawn as `python -m app.screens` draws the documentation's pictures."""

from __future__ import annotations

import importlib
import json
import time

import numpy as np
import pytest

from analyses.entries import ListedRun, ModelRef
from app import create_app, figures
from app.bench import CallbackClient
from app.cache import Explorer
from app.catalogue import Catalogue, natural_key
from app.screens import KIND_PAGES, pick
from app.state import ViewState
from app.views import run_options
from fci.metrics import clause_mean_capacity, feature_capacity
from fci.store import Store

STUDIES = ("real_data", "wide_sparse", "structured_sparsity", "effective_density", "deep_fpe", "cnn_fpe")


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """A store written by every study's --tiny run (about 25 s on 2 cores)."""
    root = tmp_path_factory.mktemp("app-kinds")
    for name in STUDIES:
        importlib.import_module(f"analyses.{name}").main(
            ["--tiny", "--device", "cpu", "--out", str(root / "out" / name), "--data", str(root / "data")])
    return root / "data"


@pytest.fixture(scope="module")
def explorer(kinds):
    return Explorer(kinds)


def _entries(explorer, kind):
    store = explorer.store
    return [e for e in (store.load(k) for k in store.keys()) if e.config["kind"] == kind]


def test_every_stored_kind_becomes_runs(explorer):
    cat = explorer.catalogue()
    assert cat.warnings == []
    by_study = {s: [r for r in cat.runs if r.study == s] for s in STUDIES}
    assert len(by_study["real_data"]) == sum(len(e.config["expansions"]) for e in _entries(explorer, "real_data-job"))
    assert len(by_study["structured_sparsity"]) == 5 * len(_entries(explorer, "structured_sparsity-job"))
    assert len(by_study["wide_sparse"]) == len(_entries(explorer, "wide_sparse-job")) > 0
    assert len(by_study["effective_density"]) == len(_entries(explorer, "effective_density-job")) > 0
    deep = _entries(explorer, "deep_fpe-job")
    assert len(by_study["deep_fpe"]) == sum(1 for e in deep for r in e.metrics["rows"] if r["condition"] != "dense") > 0
    assert len(by_study["cnn_fpe"]) == sum(len(e.config["expansions"]) for e in _entries(explorer, "cnn_fpe-job")) > 0
    # deep_fpe's, real_data's and wide_sparse's models are `fpe` entries (run_fpe on a DatasetSpec): the job
    # runs show them, so they are not listed again on their own
    fpe_children = [e for kind in ("fpe", "boolean-fpe") for e in _entries(explorer, kind) if e.config["condition"] != "dense"]
    shown = {r["store_key"] for kind in ("real_data-job", "wide_sparse-job", "deep_fpe-job")
             for e in _entries(explorer, kind) for r in e.metrics["rows"] if r.get("store_key")}
    fpe_runs = [r for r in cat.runs if r.study == "fpe"]
    assert fpe_children and shown and {r.id for r in fpe_runs} == {e.key for e in fpe_children} - shown
    assert not any("have no explorer view" in n for n in cat.notes)
    assert {r.split for r in by_study["wide_sparse"]} >= {"dense", "sparse"}
    assert {r.split for r in by_study["structured_sparsity"]} == {"clause", "random", "clause_nm", "random_nm",
                                                                  "random_dynamic"}


def test_run_labels_name_study_and_dataset(explorer):
    for r in explorer.catalogue().runs:
        assert r.label.startswith(f"{r.study} · {r.dataset} · ")


def test_a_fixed_boolean_task_gets_its_own_clauses_back(explorer):
    """A deep_fpe Boolean trial trains on one task with a fixed seed (its DatasetSpec's),
    not a task per trial: the explorer redraws that task, the one stored with the model."""
    info = next(r for r in explorer.catalogue().runs if r.study == "deep_fpe" and r.dataset == "boolean")
    run = explorer.run(info.id)
    stored = explorer.store.load(dict(info.refs)["child"].key).metrics["clauses"]
    assert run.has_clauses and [[list(l) for l in c] for c in run.clauses] == stored
    assert {r.dataset for r in explorer.catalogue().runs if r.study == "real_data"} == {"digits"}
    assert {r.dataset for r in explorer.catalogue().runs if r.study == "effective_density"} == {"boolean", "digits"}


def test_boolean_jobs_get_their_trained_clauses_back(explorer):
    """structured_sparsity stores each model's clause-mean capacity, computed with
    the clauses it trained on: the explorer's regenerated clauses give the same."""
    checked = 0
    for e in _entries(explorer, "structured_sparsity-job"):
        rows = {r["condition"]: r for r in e.metrics["rows"] if r.get("record") == "model"}
        run = explorer.run(f"{e.key}/clause")
        assert run.has_clauses and run.n_clauses == e.config["task"]["n_clauses"]
        for cond, slot in (("clause", "child"), ("dense", "dense")):
            W1 = run.models[slot].W1
            assert clause_mean_capacity(feature_capacity(W1), run.clauses) == pytest.approx(rows[cond]["feature_capacity"],
                                                                                             abs=1e-5)
            checked += 1
    assert checked


def _stored(store: Store, ref: ModelRef, name: str):
    return store.load(ref.key).tensors[ref.prefix + name].numpy()


@pytest.mark.parametrize("study", ["real_data", "structured_sparsity", "wide_sparse", "effective_density"])
def test_networks_shown_are_the_stored_tensors(explorer, study):
    info = next(r for r in explorer.catalogue().runs if r.study == study)
    run = explorer.run(info.id)
    assert set(run.models) == {slot for slot, _ in info.refs}
    ranges = figures.shared_ranges([run])
    for slot, ref in info.refs:
        m = run.models[slot]
        W = _stored(explorer.store, ref, "W0")
        M = np.ones_like(W) if ref.init_only else _stored(explorer.store, ref, "M0")
        fig = figures.weight_heatmap(run, m, None, None, "weights", 0, ranges["weights"])
        z = figures.array_of(fig["data"][0]["z"])
        rows, cols = m.row_order, run.order
        assert np.array_equal(np.isnan(z), M[np.ix_(rows, cols)] == 0), "exactly the masked weights are marked"
        np.testing.assert_allclose(z[~np.isnan(z)], (W * M)[np.ix_(rows, cols)][~np.isnan(z)], rtol=1e-6)
        assert fig["data"][0]["zmax"] == ranges["weights"].zmax == figures.row_scale(
            [x.W1 for x in run.models.values()]).zmax, "one scale for the row"
        masks = figures.array_of(figures.weight_heatmap(run, m, None, None, "masks")["data"][0]["z"])
        assert np.array_equal(masks, (M[np.ix_(rows, cols)] != 0).astype(np.float32))
        last = m.n_hidden_layers
        readout = figures.readout_heatmap(run, m)
        Wl = _stored(explorer.store, ref, f"W{last}")
        Ml = np.ones_like(Wl) if ref.init_only else _stored(explorer.store, ref, f"M{last}")
        zr = figures.array_of(readout["data"][0]["z"])
        prev = m.layer_rows(last - 1)
        np.testing.assert_allclose(np.nan_to_num(zr), (Wl * Ml)[:, prev], rtol=1e-6)
        assert readout["data"][0]["y"] == run.out_labels


def test_deep_nets_per_layer_and_digit_classes(explorer):
    info = next(r for r in explorer.catalogue().runs if r.study == "effective_density" and r.dataset == "digits")
    run = explorer.run(info.id)
    assert run.n_hidden_layers == 2 and run.out_labels == [str(k) for k in range(10)]
    child = run.models["child"]
    fig = figures.weight_heatmap(run, child, None, None, "weights", 1)
    z = figures.array_of(fig["data"][0]["z"])
    np.testing.assert_allclose(z, child.layers[1][0], rtol=1e-6)  # a dense layer: no masked cell
    assert fig["data"][0]["x"] == child.layer_labels(0) and fig["data"][0]["y"] == child.layer_labels(1)
    np.testing.assert_allclose(figures.array_of(figures.gram_heatmap(run, child, None, 1)["data"][0]["z"]),
                               child.layers[1][0].T @ child.layers[1][0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="layer must be in 0..1"):
        figures.weight_heatmap(run, child, layer=2)
    init = run.models["parent"]
    np.testing.assert_allclose(init.W1, _stored(explorer.store, dict(info.refs)["parent"], "W0"))
    assert run.labels[:2] == ["r0c0", "r0c1"], "digit inputs are named by their pixel"


def test_a_cnn_run_opens_with_its_filters_as_pictures(explorer):
    """A cnn_fpe child: each first-layer filter drawn as its C images of k x k (the
    stored tensors), the Gram and capacity of the flattened filters as the study
    measured them, and the head's readout over filter x position inputs."""
    info = next(r for r in explorer.catalogue().runs if r.study == "cnn_fpe" and r.alpha == 2)
    run = explorer.run(info.id)
    child, ref = run.models["child"], dict(info.refs)["child"]
    W = _stored(explorer.store, ref, "W0") * _stored(explorer.store, ref, "M0")  # (F, C, k, k)
    F, C, k, _ = W.shape
    assert child.is_cnn and child.picture_shape(0) == (C, k, k) and child.H == F
    np.testing.assert_allclose(child.W1, W.reshape(F, -1))
    fig = figures.model_figures(explorer.analysis(info.id, "auto"), None, "weights")["child"]["weights"]
    z = figures.array_of(fig["data"][0]["z"])
    text = np.asarray(fig["data"][0]["text"], dtype=object).astype(str)
    for r, i in enumerate(child.row_order):
        cells = np.argwhere(np.char.startswith(text, child.labels[r] + " · "))
        assert len(cells) == C * k * k
        y0, x0 = cells.min(0)
        for c in range(C):  # channel c's image sits c * (k + 1) columns to the right
            tile = z[y0:y0 + k, x0 + c * (k + 1):x0 + c * (k + 1) + k]
            np.testing.assert_allclose(np.nan_to_num(tile), W[i, c], rtol=1e-6)
    entry = explorer.store.load(ref.key)
    rows = {(r["split"], int(r["alpha"])): r for r in entry.metrics["rows"]}
    assert child.mean_capacity == pytest.approx(rows[(info.split, info.alpha)]["feature_capacity"], abs=1e-5)
    G = figures.array_of(figures.gram_heatmap(run, child)["data"][0]["z"])
    np.testing.assert_allclose(G, child.W1.T @ child.W1, rtol=1e-4, atol=1e-6)
    readout = figures.readout_heatmap(run, child)
    head = _stored(explorer.store, ref, "W1") * _stored(explorer.store, ref, "M1")
    np.testing.assert_allclose(np.nan_to_num(figures.array_of(readout["data"][0]["z"])), head, rtol=1e-6)


def test_deep_fpe_runs_open_the_models_its_rows_name(explorer):
    """deep_fpe's rows name each model's own store entry; its runs show exactly
    those networks, the child's parent at expansion and the shared dense baseline."""
    from analyses.deep_fpe import store_keys

    for e in _entries(explorer, "deep_fpe-job"):
        keys = store_keys(e.config)
        for r in e.metrics["rows"]:
            assert r["store_key"] == keys[(r["condition"], int(r["alpha"]), r["layers"])]
    info = next(r for r in explorer.catalogue().runs if r.study == "deep_fpe")
    run = explorer.run(info.id)
    refs = dict(info.refs)
    assert refs["parent"].key == refs["child"].key and refs["parent"].prefix == "parent."
    for slot in ("parent", "child", "dense"):
        W = _stored(explorer.store, refs[slot], "W1") * _stored(explorer.store, refs[slot], "M1")
        np.testing.assert_allclose(run.models[slot].layers[1][0], W)


def test_every_run_renders_through_http(kinds, explorer):
    app = create_app(kinds, explorer=explorer)
    client = CallbackClient(app)
    for r in explorer.catalogue().runs:
        for view, layer in (("weights", 0), ("masks", 0), ("weights", 1)):
            client.drawn = None
            status, out = client.update(ViewState(run=r.id, view=view, layer=layer).to_search())
            assert status == 200
            text = json.dumps(out["messages.children"])
            assert "msg-error" not in text, (r.id, text)
            if layer >= explorer.run(r.id).n_hidden_layers:
                assert "URL field layer" in text
            else:
                assert "URL field" not in text
            if view == "weights" and layer == 0:
                decoded = json.dumps(out["decoded.children"], ensure_ascii=False)
                run = explorer.run(r.id)
                if not run.has_clauses:
                    assert "Decoding reads Boolean tasks" in decoded, r.id
                else:  # deep networks too: decode_function evaluates them whole
                    assert all(f"decoded-{slot}" in decoded for slot in run.models) and "true-formula agreement" in decoded


def _info(run_id, **kw) -> ListedRun:
    base = dict(id=run_id, task="C=8 k=3 n=24 disjoint dnf", hidden="8", alpha=2, split="clause", trial=0,
                epochs=(1, 1), child_accuracy=0.9, dense_accuracy=0.8, study="fpe", dataset="boolean",
                task_config="{}", n_clauses=8, refs=(("parent", None), ("child", None), ("dense", None)))
    base.update(kw)
    return ListedRun(**base)


def test_landing_is_the_headline_else_the_most_informative():
    runs = [_info("a", hidden="16", n_clauses=16), _info("b", trial=3), _info("c", trial=1),
            _info("d", hidden="2", n_clauses=16, task="C=16 k=3 n=48 disjoint dnf")]
    assert Catalogue(runs).landing().id == "c", "the headline configuration, lowest trial"
    rest = [r for r in runs if r.hidden != "8"] + [_info("w", study="wide_sparse", refs=(("child", None),), hidden="8")]
    assert Catalogue(rest).landing().id == "a", "clauses and all three networks, then the size nearest 8"
    digits = [_info("x", dataset="digits", task_config="", n_clauses=0, study="real_data"),
              _info("y", dataset="digits", task_config="", n_clauses=0, study="real_data", hidden="64")]
    assert Catalogue(digits).landing().id == "x"


def test_picker_sorts_numerically_searches_fields_and_groups(explorer):
    cat = explorer.catalogue()
    hidden = cat.values("hidden")
    firsts = [float(h.split("-")[0]) for h in hidden]
    assert firsts == sorted(firsts) and len(hidden) > 2
    assert sorted(["C=16", "C=4", "C=32", "C=8"], key=natural_key) == ["C=4", "C=8", "C=16", "C=32"]
    assert sorted([16, 2, 4, 8], key=natural_key) == [2, 4, 8, 16]
    some = next(r for r in cat.runs if r.study == "wide_sparse")
    q = f"H={some.hidden} · trial {some.trial}"
    found = cat.select(q)
    assert some in found and all(r.hidden == some.hidden and r.trial == some.trial for r in found)
    assert len(found) < len(cat.runs)
    assert cat.select(f"trial {some.trial}") and all(r.trial == some.trial for r in cat.select(f"trial {some.trial}"))
    assert {r.study for r in cat.select("structured_sparsity, clause_nm")} == {"structured_sparsity"}
    assert all(r.split == "clause_nm" for r in cat.select("structured_sparsity, clause_nm"))
    assert cat.select("no such thing") == []
    opts = run_options(explorer, {}, None)
    headers = [o for o in opts if o.get("disabled")]
    groups = list(dict.fromkeys(r.group for r in cat.runs))
    assert [h["value"].removeprefix("group:") for h in headers] == groups
    tasks = {g: {r.task for r in cat.runs if r.group == g} for g in groups}
    for h in headers:  # a task every run of the group shares is said once, in the header
        g = h["value"].removeprefix("group:")
        assert h["label"].strip("─ ").startswith(g + (f" · {next(iter(tasks[g]))}" if len(tasks[g]) == 1 else ""))
    for o in (o for o in opts if not o.get("disabled")):  # labels without the group's boilerplate
        r = cat.get(o["value"])
        assert o["title"] == r.label and not o["label"].startswith(r.group)
        assert (r.task in o["label"]) == (len(tasks[r.group]) > 1)
    limited = run_options(explorer, {}, None, limit=5)
    assert len([o for o in limited if not o.get("disabled")]) == 5
    assert limited[-1]["label"].startswith(f"… {len(cat.runs) - 5} more runs match")


# --------------------------------------------------------------------------- in the browser


#: Colour bars outside the visible box of their column.
_OUTSIDE_BARS_JS = """
const out = [];
for (const col of document.querySelectorAll('.column')) {
  if (col.offsetParent === null) continue;
  const c = col.getBoundingClientRect();
  for (const bar of col.querySelectorAll('.colorbar')) {
    const b = bar.getBoundingClientRect();
    if (b.width > 0 && (b.left < c.left - 1 || b.right > c.right + 1)) out.push(col.querySelector('.graph').id);
  }
}
return out;
"""


def _text(duo, element_id: str) -> str:
    return duo.driver.execute_script(f"const e = document.getElementById('{element_id}'); return e ? e.textContent : '';")

@pytest.mark.browser
@pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")
def test_each_model_kind_in_the_browser(dash_duo, kinds, explorer, tmp_path):
    from app.browser import chromium_available

    if not chromium_available():
        pytest.skip("needs Debian's chromium and chromium-driver")
    from tests.app.test_browser import _free_port, _scale, _wait

    app = create_app(kinds, explorer=explorer)
    dash_duo.start_server(app, port=_free_port())
    dash_duo.driver.implicitly_wait(0)
    cat = explorer.catalogue()
    dash_duo.driver.set_window_size(1280, 1400)
    for study, (_, view, layer, says) in KIND_PAGES.items():
        info = pick(cat.runs, study)
        if info is None:  # the studies' models are shown by their job runs; only the demo is study "fpe"
            assert study == "fpe", study
            continue
        dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=info.id, view=view, layer=layer, clause=1)
                            .to_search())
        _wait(lambda s=says: s in _text(dash_duo, "col-title-child"), what=f"{study}'s page", timeout=30)
        scale = _wait(lambda: _scale(dash_duo, "child-weights"), what="the child heatmap")
        if view == "masks":
            assert scale[:2] == [0, 1]
        assert info.dataset in dash_duo.find_element("#run-summary").text
        shown = {slot for slot, _ in info.refs}
        for slot in ("parent", "child", "dense"):
            visible = dash_duo.driver.execute_script(
                f"return getComputedStyle(document.getElementById('col-title-{slot}')).display !== 'none';")
            assert visible == (slot in shown), f"{study}: the {slot} column is shown iff the run has that network"
        if not explorer.run(info.id).has_clauses:
            assert not dash_duo.find_element("#clauses-section").is_displayed()
            note = _wait(lambda: dash_duo.driver.find_elements("css selector", "#decoded-none"), what="decoding note")
            assert note[0].is_displayed() and "Decoding reads Boolean tasks" in note[0].text
        time.sleep(0.5)
        sw, cw = dash_duo.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];")
        assert sw <= cw, f"{study}: the page scrolls sideways at 1280 px"
        assert dash_duo.driver.execute_script(_OUTSIDE_BARS_JS) == [], f"{study}: a colour bar outside its panel"
        if study == "cnn_fpe":  # the filters drawn as pictures, one image per input channel
            assert "each filter drawn as" in _text(dash_duo, "legend-weights")
        assert dash_duo.driver.save_screenshot(str(tmp_path / f"{study}.png"))
    # The picker's search narrows the list as the user types two fields.
    some = next(r for r in cat.runs if r.study == "wide_sparse")
    q = f"H={some.hidden} · trial {some.trial}"
    box = dash_duo.find_element("#run-search")
    box.send_keys(q)
    n = len(cat.select(q))
    _wait(lambda: f"{n} of {len(cat.runs)} match" in _text(dash_duo, "run-count"), what="narrowed list")
    assert not [e for e in dash_duo.get_logs() or [] if e.get("level") == "SEVERE"]


def test_the_picker_scales_to_thousands_of_runs():
    runs = [_info(f"{study}-{h}-{t}-{s}", study=study, hidden=str(h), trial=t, split=s)
            for study in ("fpe", "wide_sparse", "real_data") for h in (2, 4, 8, 16, 32, 64) for t in range(50)
            for s in ("clause", "random", "gram")]
    cat = Catalogue(runs)
    assert len(cat.runs) == 2700
    found = cat.select("H=16 · trial 4")
    assert found and {(r.hidden, r.trial) for r in found} == {("16", 4)}, "both fields narrow; trial 4 is not 40-49"
    assert len(found) == 3 * 3
    assert cat.select("h=16, TRIAL 4") == found, "case and separator do not matter"
    assert {r.study for r in cat.select("wide_sparse · H=2 · random")} == {"wide_sparse"}
    assert cat.values("hidden") == ["2", "4", "8", "16", "32", "64"]
    assert cat.values("trial") == list(range(50))

    class _Fake:
        def catalogue(self):
            return cat

    opts = run_options(_Fake(), {"study": ["real_data"]}, runs[0].id, "trial 1")
    listed = [o["value"] for o in opts if not o.get("disabled")]
    assert listed[0] == runs[0].id, "the current run stays listed"
    assert set(listed[1:]) == {r.id for r in cat.select("trial 1", study=["real_data"])}
    big = run_options(_Fake(), {}, None, limit=400)
    assert len([o for o in big if not o.get("disabled")]) == 400
    assert big[-1]["label"] == "… 2300 more runs match: narrow the search"
