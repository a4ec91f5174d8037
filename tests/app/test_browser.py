"""End to end in headless Chromium (dash[testing] + Debian's chromium/chromedriver):
load the explorer on the demo store, select clauses three ways, check that the
highlight, the detail panel, the table and the URL follow; one colour scale per
row and the legends; the slider's tooltip; bad URL fields shown and kept; the
compare mode; readable layouts at small and large H and n; save the README
screenshot (docs/explorer.png). The other model kinds: tests/app/test_kinds.py."""

from __future__ import annotations

import socket
import time

import pytest

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]

from app.browser import chromium_available

if not chromium_available():
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)
pytest.importorskip("selenium")
pytest.importorskip("dash.testing.browser")

from app import create_app  # noqa: E402
from app.figures import CHANNEL_COLOR, number_text, row_scale  # noqa: E402
from app.readings import network_reading
from app.state import DEFAULT_FRACTION, DEFAULT_THRESHOLD, ViewState  # noqa: E402
from app.views import graph_id  # noqa: E402
from fci.store import Store  # noqa: E402
from fci.train import run_fpe  # noqa: E402
from tests.helpers import ROOT, tiny_spec  # noqa: E402

DOCS = ROOT / "docs"
SCREENSHOT = DOCS / "explorer.png"

_SHAPES_JS = """
const el = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!el || !el.layout || !el.layout.shapes) return null;
return el.layout.shapes.filter(s => s.name && s.name.startsWith(arguments[1] + ':') && s.visible !== false)
    .flatMap(s => s.name.split(':')[1].split(',').filter(x => x !== '').map(x => parseInt(x))).sort((a, b) => a - b);
"""

#: [zmin, zmax, colour-bar title] of a graph's first trace, as plotly.js draws it.
_SCALE_JS = """
const el = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!el || !el.data || !el.data.length) return null;
const t = el.data[0];
return [t.zmin, t.zmax, t.colorbar && t.colorbar.title ? t.colorbar.title.text : ''];
"""

#: Colour bars not inside the visible box of their column: [graph id, bar box, column box].
_OUTSIDE_BARS_JS = """
const out = [];
for (const col of document.querySelectorAll('.column')) {
  if (col.offsetParent === null) continue;
  const c = col.getBoundingClientRect();
  for (const bar of col.querySelectorAll('.colorbar')) {
    const b = bar.getBoundingClientRect();
    if (b.width === 0) continue;
    if (b.left < c.left - 1 || b.right > c.right + 1) out.push([col.querySelector('.graph').id, [b.left, b.right], [c.left, c.right]]);
  }
}
return out;
"""

#: [page scroll width, page client width].
_PAGE_WIDTH_JS = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"

#: Bounding boxes [left, top, right, bottom] of the elements matching a selector.
_BOXES_JS = """
return Array.from(document.querySelectorAll(arguments[0]))
  .filter(e => !arguments[1] || (e.textContent || '').trim() !== '')
  .map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })
  .filter(b => b[2] > b[0] && b[3] > b[1]);
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float = 20.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _highlight(duo, gid: str, kind: str):
    return duo.driver.execute_script(_SHAPES_JS, f"#{gid}", kind)


def _scale(duo, gid: str):
    return duo.driver.execute_script(_SCALE_JS, f"#{gid}")


def _overlaps(boxes, axis: int, slack: float = 0.5) -> list:
    """Pairs of boxes overlapping along axis 0 (x) or 1 (y), after sorting."""
    boxes = sorted(boxes, key=lambda b: b[axis])
    return [(a, b) for a, b in zip(boxes, boxes[1:]) if b[axis] < a[axis + 2] - slack]


def _click_cell(duo, gid: str, row: int, col: int, n_rows: int, n_cols: int) -> None:
    """Click a heatmap cell (offsets from the plot area's centre: the same in every
    Selenium version)."""
    from selenium.webdriver.common.action_chains import ActionChains

    area = duo.driver.find_element("css selector", f"#{gid} .nsewdrag")
    duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", area)
    box = duo.driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", area)
    dx = ((col + 0.5) / n_cols - 0.5) * box[0]
    dy = ((row + 0.5) / n_rows - 0.5) * box[1]
    ActionChains(duo.driver).move_to_element(area).move_by_offset(int(dx), int(dy)).click().perform()


def _selected_row(duo) -> str:
    rows = duo.driver.find_elements("css selector", "#clause-table tr.selected")
    return rows[0].text.split()[0] if rows else ""


def _start(duo, data_dir) -> "object":
    app = create_app(data_dir)
    duo.start_server(app, port=_free_port())
    duo.driver.implicitly_wait(0)  # we poll ourselves; an implicit wait slows every empty lookup
    return app


def _no_severe(duo) -> None:
    assert not [e for e in duo.get_logs() or [] if e.get("level") == "SEVERE"]


def test_explorer_end_to_end(dash_duo, app_demo_dir):
    data_dir, _ = app_demo_dir
    app = _start(dash_duo, data_dir)
    explorer = app.explorer
    run_id = explorer.catalogue().landing().id
    assert explorer.catalogue().get(run_id).split == "clause", "the headline run (C=8, H=8, α=2, clause) lands"

    # The page loads on the headline run, fills the URL and highlights clause 0.
    dash_duo.wait_for_contains_text("#clause-title", "Clause c0", timeout=30)
    _wait(lambda: f"run={run_id}" in dash_duo.driver.current_url, what="the run id in the URL")
    analysis = explorer.analysis(run_id, DEFAULT_THRESHOLD)
    child_channel = lambda c: analysis.codes["child"].rows[c]["channel"]  # noqa: E731
    assert _wait(lambda: _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron") is not None,
                 what="the child heatmap") is not None
    assert _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron") == child_channel(0)
    _wait(lambda: _selected_row(dash_duo) == "c0", what="table row c0 selected")

    # Select clause 3 from the dropdown: heatmap highlight, detail, table and URL follow.
    dash_duo.select_dcc_dropdown("#clause", index=3)
    dash_duo.wait_for_contains_text("#clause-title", "Clause c3")
    assert _wait(lambda: _highlight(dash_duo, graph_id("child", "weights"), "clause-var")
                 == sorted(v for v, _ in analysis.run.clauses[3]), what="clause 3's literals outlined")
    assert _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron") == child_channel(3)
    assert _highlight(dash_duo, graph_id("parent", "weights"), "channel-neuron") == analysis.codes["parent"].rows[3]["channel"]
    assert _highlight(dash_duo, "capacity", "clause") == [3]
    _wait(lambda: _selected_row(dash_duo) == "c3", what="table row c3 selected")
    _wait(lambda: "clause=3" in dash_duo.driver.current_url, what="clause=3 in the URL")

    # The highlight drawn in the browser sits where plotly itself would draw it:
    # the clause outline's left edge on the boundary between two columns.
    xs = dash_duo.driver.execute_script("""
        const gd = document.querySelector('#child-weights .js-plotly-plot');
        const i = gd.layout.shapes.findIndex(s => (s.name || '').startsWith('clause-var:'));
        const d = gd.querySelector('.shapelayer path[data-index="' + i + '"]').getAttribute('d');
        const xa = gd._fullLayout.xaxis;
        return [parseFloat(d.slice(1)), xa._offset + xa.l2p(parseFloat(gd.layout.shapes[i].path.slice(1)))];""")
    assert xs[0] == pytest.approx(xs[1], abs=0.01)

    # A click on a table row selects that clause.
    row = dash_duo.driver.find_element("css selector", "#clause-table tbody tr:nth-child(1)")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", row)
    row.click()
    dash_duo.wait_for_contains_text("#clause-title", "Clause c0")
    _wait(lambda: _selected_row(dash_duo) == "c0", what="table row c0 selected")
    _wait(lambda: _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron") == child_channel(0),
          what="clause 0's channel highlighted")

    # A click on a heatmap cell selects the clause of its column.
    run = analysis.run
    col = list(run.order).index(run.clauses[5][0][0])
    _click_cell(dash_duo, graph_id("child", "weights"), 0, col, run.models["child"].H, len(run.order))
    dash_duo.wait_for_contains_text("#clause-title", "Clause c5")
    _wait(lambda: _highlight(dash_duo, graph_id("child", "weights"), "clause-var")
          == sorted(v for v, _ in run.clauses[5]), what="clause 5's literals outlined")

    # The threshold travels in the URL and redraws the codes.
    dash_duo.driver.get(dash_duo.server_url + f"/?run={run_id}&clause=0&threshold=0.3&view=codes")
    dash_duo.wait_for_contains_text("#clause-title", "Clause c0", timeout=30)
    high = explorer.analysis(run_id, 0.3)
    _wait(lambda: _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron")
          == high.codes["child"].rows[0]["channel"], what="the channel at threshold 0.3")

    # The README screenshot: weights view, a clause whose channel survives the split.
    shown = next((c for c in range(analysis.run.n_clauses) if child_channel(c)), 0)
    dash_duo.driver.set_window_size(1600, 1750)
    dash_duo.driver.get(dash_duo.server_url + f"/?run={run_id}&clause={shown}&view=weights")
    dash_duo.wait_for_contains_text("#clause-title", f"Clause c{shown}", timeout=30)
    _wait(lambda: _highlight(dash_duo, graph_id("dense", "weights"), "clause-var"), what="figures drawn")
    time.sleep(0.5)
    DOCS.mkdir(exist_ok=True)
    assert dash_duo.driver.save_screenshot(str(SCREENSHOT))
    dash_duo.driver.set_window_size(1600, 2000)

    # An unknown run id in the URL renders a message, and the server keeps answering.
    dash_duo.driver.get(dash_duo.server_url + "/?run=no-such-run&clause=2")
    dash_duo.wait_for_contains_text("#messages", "unknown run 'no-such-run'", timeout=30)
    dash_duo.driver.get(dash_duo.server_url + f"/?run={run_id}&clause=1")
    dash_duo.wait_for_contains_text("#clause-title", "Clause c1", timeout=30)
    _no_severe(dash_duo)


def test_decoded_terms_and_the_reference_appear_and_the_threshold_is_auto_by_default(dash_duo, app_demo_dir):
    app = _start(dash_duo, app_demo_dir[0])
    run_id = app.explorer.catalogue().landing().id
    run = app.explorer.run(run_id)
    dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=run_id, clause=0).to_search())
    dash_duo.wait_for_contains_text("#clause-title", "Clause c0", timeout=60)
    # Per network: the decoded terms with their precision, the agreement beside the reference.
    for slot in run.models:
        reading = network_reading(run, slot)
        block = _wait(lambda s=slot: dash_duo.driver.find_elements("css selector", f"#decoded-{s}"),
                      what=f"the decoded terms of the {slot}")[0]
        text = block.text
        assert f"decoded function {reading.agreement:.3f}" in text and f"true-formula agreement {reading.reference:.3f}" in text
        rows = block.find_elements("css selector", f"#decoded-terms-{slot}-0 tbody tr")
        assert [r.find_elements("css selector", "td")[0].text for r in rows] == [t.text for t in reading.outputs[0].terms]
        assert [r.find_elements("css selector", "td")[1].text for r in rows] == [f"{t.precision:.3f}"
                                                                                for t in reading.outputs[0].terms]
        missed = dash_duo.find_element(f"#decoded-missed-{slot}-0").text
        assert missed.endswith(", ".join(f"c{c}" for c in reading.outputs[0].missed) or "none")
    # What the weights prove: read on request, in its own callback, for the parent.
    from app.readings import certified_reading
    from fci.tasks import format_clause

    button = _wait(lambda: dash_duo.driver.find_elements("css selector", "#decoded-parent .proved button"),
                   what="the prove button of the parent")[0]
    dash_duo.driver.execute_script("arguments[0].click();", button)
    _wait(lambda: dash_duo.driver.find_elements("css selector", "#proved-terms-parent-0 tbody tr"),
          what="the parent's proved terms", timeout=120)
    proved = certified_reading(run, "parent")
    rows = dash_duo.driver.find_elements("css selector", "#proved-terms-parent-0 tbody tr td:first-child")
    assert [r.get_attribute("textContent") for r in rows] == [format_clause(t) for t in proved.circuit.terms(0)]
    assert f"true-formula agreement {proved.reference:.3f}" in dash_duo.find_element("#proved-agreement-parent").text
    # The documentation's picture of the decoded readings (docs/explorer/decoded.png).
    dash_duo.driver.set_window_size(1600, 2000)
    panel = dash_duo.find_element("#decoded")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", panel)
    time.sleep(0.3)
    (DOCS / "explorer").mkdir(parents=True, exist_ok=True)
    assert panel.screenshot(str(DOCS / "explorer" / "decoded.png"))
    metrics = dash_duo.find_element("#metrics-table").text
    assert "true-formula agreement (the reference)" in metrics and f"{network_reading(run, 'child').reference:.3f}" in metrics
    # The threshold defaults to auto (the slider greyed out); unticking it gives a fraction.
    assert "threshold=auto" in dash_duo.driver.current_url
    disabled = "return document.querySelector('#threshold [data-disabled], #threshold [aria-disabled=\"true\"]') !== null;"
    _wait(lambda: dash_duo.driver.execute_script(disabled), what="the slider disabled under auto")
    label = dash_duo.find_element("#threshold-label").text
    assert "each neuron" in label and "max|w|" in label
    dash_duo.driver.find_element("css selector", "#threshold-auto input").click()
    _wait(lambda: f"threshold={DEFAULT_FRACTION:g}" in dash_duo.driver.current_url, what="a numeric threshold")
    _wait(lambda: not dash_duo.driver.execute_script(disabled), what="the slider enabled")
    codes = app.explorer.analysis(run_id, DEFAULT_FRACTION).codes
    label = f"agreement, static decode (threshold {DEFAULT_FRACTION:g} of each neuron's max|w|) (gap)"
    rows_js = ("return Array.from(document.querySelectorAll('#metrics-table tr'))"
               ".map(r => Array.from(r.children).map(c => c.textContent));")
    ref = {n: network_reading(run, n).reference for n in run.models}
    _wait(lambda: [label, *(f"{codes[n].agreement:.3f} ({codes[n].agreement - ref[n]:+.3f})" for n in run.models)]
          in dash_duo.driver.execute_script(rows_js), what="the static decode's agreement at the new threshold")
    _no_severe(dash_duo)


def test_one_colour_scale_per_row_and_a_legend_for_every_encoding(dash_duo, app_demo_dir):
    app = _start(dash_duo, app_demo_dir[0])
    run_id = app.explorer.catalogue().landing().id
    dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=run_id, clause=2).to_search())
    dash_duo.wait_for_contains_text("#clause-title", "Clause c2", timeout=30)
    run = app.explorer.run(run_id)
    for kind, values in (("weights", [m.W1 for m in run.models.values()]),
                         ("gram", [m.gram for m in run.models.values()])):
        scales = [_wait(lambda n=n, k=kind: _scale(dash_duo, graph_id(n, k)), what=f"{n} {kind}") for n in run.models]
        zmax = row_scale(values).zmax
        for zmin_, zmax_, title in scales:
            assert zmax_ == pytest.approx(zmax, rel=1e-6) and zmin_ == -zmax_, f"{kind}: one symmetric scale per row"
            assert f"±{number_text(zmax)}" in title, "the range is stated on the colour bar"
    legend = dash_duo.find_element("#legend-weights").text
    for words in ("positive", "negative", "masked", "selected clause", "channel neurons", "one scale per row"):
        assert words in legend
    assert "pictures" not in legend and "filter" not in legend, "the legend says only what this kind shows"
    for n in run.models:
        poly = dash_duo.driver.execute_script(
            f"return document.querySelector('#{n}-poly .js-plotly-plot').layout.title.text")
        assert "in the selected clause’s channel" in poly and "clause channels it is in" in poly
        coll = dash_duo.driver.execute_script(
            f"return document.querySelector('#{n}-collisions .js-plotly-plot').layout.title.text")
        assert "entangled group" in coll and "no channel" in coll and "selected clause" in coll
    # "none" is plain grey, never the highlight green; real channels are green.
    green = "rgb(0, 166, 81)"
    assert CHANNEL_COLOR == "#00a651"
    colours = dash_duo.driver.execute_script("""
        return Array.from(document.querySelectorAll('#clause-table td, #clause-detail td'))
          .map(td => [td.textContent.trim(), getComputedStyle(td).color]);""")
    nones = [c for t, c in colours if t == "none"]
    assert nones and green not in nones
    assert any(c == green for t, c in colours if t.startswith("h"))
    _no_severe(dash_duo)


def test_slider_tooltip_leaves_the_run_summary_visible(dash_duo, app_demo_dir):
    from selenium.webdriver.common.action_chains import ActionChains

    app = _start(dash_duo, app_demo_dir[0])
    run_id = app.explorer.catalogue().landing().id
    dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=run_id, threshold=0.1).to_search())
    dash_duo.wait_for_contains_text("#clause-title", "Clause c0", timeout=30)
    handle = dash_duo.driver.find_element("css selector", "#threshold [role='slider']")
    ActionChains(dash_duo.driver).move_to_element(handle).click_and_hold().perform()
    time.sleep(0.5)
    tips = dash_duo.driver.execute_script("""
        return Array.from(document.querySelectorAll('[class*="tooltip"]')).filter(e => e.offsetParent !== null)
          .map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; });""")
    ActionChains(dash_duo.driver).release().perform()
    summary = dash_duo.driver.execute_script(_BOXES_JS, "#run-summary")[0]
    assert tips, "the tooltip shows while the handle is held"
    for t in tips:
        assert t[3] <= summary[1] or t[1] >= summary[3] or t[2] <= summary[0] or t[0] >= summary[2], \
            f"the tooltip {t} covers the run summary {summary}"


def test_bad_url_fields_are_named_and_the_url_is_kept(dash_duo, app_demo_dir):
    app = _start(dash_duo, app_demo_dir[0])
    run_id = app.explorer.catalogue().landing().id
    sent = f"?run={run_id}&clause=99&threshold=-1&view=xyz&layer=x"
    dash_duo.driver.get(dash_duo.server_url + "/" + sent)
    dash_duo.wait_for_contains_text("#messages", "URL field threshold", timeout=30)
    text = dash_duo.find_element("#messages").text
    for expected in ("URL field threshold: sent '-1', neither auto nor a number in [0, 1]; using auto instead",
                     "URL field view: sent 'xyz', not one of weights, codes, masks; using weights instead",
                     "URL field clause: sent '99', this task has clauses 0..7; using none instead",
                     "URL field layer: sent 'x', not a layer number (0 = first hidden layer); using layer 0 instead"):
        assert expected in text
    time.sleep(1.0)
    assert dash_duo.driver.current_url.endswith(sent), "the URL keeps what the user sent"
    # A control change rewrites the URL with valid values; the messages go.
    dash_duo.driver.find_element("css selector", "#view input[value='codes']").click()
    _wait(lambda: "view=codes" in dash_duo.driver.current_url, what="the URL rewritten")
    assert "threshold=auto" in dash_duo.driver.current_url and "xyz" not in dash_duo.driver.current_url
    _wait(lambda: "URL field" not in dash_duo.find_element("#messages").text, what="the messages cleared")


def test_compare_mode_shows_two_runs_on_one_scale(dash_duo, app_demo_dir):
    app = _start(dash_duo, app_demo_dir[0])
    cat = app.explorer.catalogue()
    a = next(r for r in cat.runs if r.split == "clause")
    b = next(r for r in cat.runs if r.split == "random")
    dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=a.id, clause=1, compare=b.id).to_search())
    dash_duo.wait_for_contains_text("#clause-title", "Clause c1", timeout=30)
    _wait(lambda: dash_duo.find_element("#compare-section").is_displayed(), what="the compare section")
    assert "random split" in dash_duo.find_element("#b-col-title-child").text
    assert "clause split" in dash_duo.find_element("#col-title-child").text
    ra, rb = app.explorer.run(a.id), app.explorer.run(b.id)
    zmax = row_scale([m.W1 for r in (ra, rb) for m in r.models.values()]).zmax
    for gid in ("child-weights", "dense-weights", "b-child-weights"):
        assert _wait(lambda g=gid: _scale(dash_duo, g), what=gid)[1] == pytest.approx(zmax, rel=1e-6)
    # The compared run's weights sit right under the run's, within one screen; a same-trial comparison
    # shares the parent and the dense baseline, so only the child column is shown again.
    top = dash_duo.driver.execute_script(
        "return [document.getElementById('child-weights').getBoundingClientRect().top,"
        " document.getElementById('b-child-weights').getBoundingClientRect().top, window.innerHeight];")
    assert 0 < top[1] - top[0] <= top[2], f"the compared run starts {top[1] - top[0]:.0f} px below the first"
    visible = dash_duo.driver.execute_script(
        "return ['parent', 'child', 'dense'].map(n => getComputedStyle(document.getElementById('b-' + n + '-weights')"
        ".closest('.column')).visibility);")
    assert visible == ["hidden", "visible", "hidden"]
    assert b.id in dash_duo.find_element("#compare-summary").text
    assert _highlight(dash_duo, "b-child-weights", "clause-var") == sorted(v for v, _ in rb.clauses[1])
    # Leaving compare mode hides the section.
    dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=a.id, clause=1).to_search())
    dash_duo.wait_for_contains_text("#clause-title", "Clause c1", timeout=30)
    _wait(lambda: dash_duo.driver.execute_script(
        "const e = document.getElementById('compare-section'); return e && getComputedStyle(e).display === 'none';"),
        what="the compare section hidden")


@pytest.fixture(scope="module")
def shapes_store(tmp_path_factory):
    """Runs of awkward shapes: 2 neurons over 48 variables (16 clauses), and 64
    neurons over 256 variables (64 clauses of 4)."""
    root = tmp_path_factory.mktemp("app-shapes")
    run_fpe([tiny_spec(hidden=2, n_clauses=16, expansions=(("clause", 2),)),
             tiny_spec(hidden=64, n_clauses=64, clause_size=4, n_vars=256, expansions=(("clause", 2),))],
            device="cpu", store=Store(root))
    return root


@pytest.mark.parametrize("which", ["narrow", "wide"])
def test_layouts_stay_readable_at_any_H_and_n(dash_duo, shapes_store, which):
    app = _start(dash_duo, shapes_store)
    run = next(r for r in app.explorer.catalogue().runs if (r.hidden == "2") == (which == "narrow"))
    loaded = app.explorer.run(run.id)
    dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=run.id, clause=1).to_search())
    dash_duo.wait_for_contains_text("#clause-title", "Clause c1", timeout=60)
    H = loaded.models["child"].H
    for gid in ("child-weights", "parent-weights", "child-gram"):
        _wait(lambda g=gid: _scale(dash_duo, g), what=gid, timeout=60)
        area = dash_duo.driver.execute_script(_BOXES_JS, f"#{gid} .nsewdrag")[0]
        assert area[2] - area[0] > 0
        if gid.endswith("weights"):
            rows = H if gid.startswith("child") else loaded.models["parent"].H
            assert (area[3] - area[1]) / rows >= 7 - 0.01, "a minimum row height"
        ticks = dash_duo.driver.execute_script(_BOXES_JS, f"#{gid} .xtick text", True)
        assert ticks and not _overlaps(ticks, 0), "x labels never run together"
        yticks = dash_duo.driver.execute_script(_BOXES_JS, f"#{gid} .ytick text", True)
        assert not _overlaps(yticks, 1), "y labels never run together"
        notes = dash_duo.driver.execute_script(_BOXES_JS, f"#{gid} .annotation", True)
        assert not _overlaps(notes, 0), "clause names never run together"
    col = dash_duo.driver.execute_script(
        "const c = document.querySelector('#child-weights').closest('.column'); return [c.scrollWidth, c.clientWidth];")
    assert col[0] <= col[1] + 1, "every matrix fits its column (nothing scrolls apart)"
    assert dash_duo.driver.execute_script(_OUTSIDE_BARS_JS) == [], "every colour bar beside its matrix, in view"
    _no_severe(dash_duo)


@pytest.mark.parametrize("which", ["demo", "digits"])
def test_no_horizontal_scroll_and_every_colour_bar_in_its_panel_at_1280(dash_duo, app_demo_dir, tmp_path, which):
    """At 1280 px (and wider) the page never scrolls sideways, on the demo and on a
    digits run of 64 neurons, and every colour bar lies inside its panel."""
    from tests.app.test_figures import digits_store

    data = app_demo_dir[0] if which == "demo" else tmp_path
    if which == "digits":
        digits_store(tmp_path, hidden=64)
    app = _start(dash_duo, data)
    run_id = app.explorer.catalogue().landing().id
    for width in (1280, 1440):
        dash_duo.driver.set_window_size(width, 1000)
        dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=run_id).to_search())
        _wait(lambda: _scale(dash_duo, "child-gram"), what="the Gram row", timeout=60)
        time.sleep(0.5)
        sw, cw = dash_duo.driver.execute_script(_PAGE_WIDTH_JS)
        assert sw <= cw, f"{width} px: the page scrolls sideways ({sw} > {cw})"
        assert dash_duo.driver.execute_script(_OUTSIDE_BARS_JS) == []
    _no_severe(dash_duo)


_GRAM_SHOWN_JS = """
const el = document.querySelector(arguments[0] + ' .js-plotly-plot');
const t = el._fullData[0]; let n = 0, shown = 0;  // what plotly draws: the typed array decoded
for (const row of t.z) for (const v of row) { if (v === null || isNaN(v)) continue; n++; if (Math.abs(v) > t.zmax / 10) shown++; }
return [shown, n, t.zmax];
"""


def test_a_digits_gram_with_an_outlier_still_shows_its_cells_in_the_browser(dash_duo, tmp_path):
    """One pixel's weights far above the rest: plotly draws >= 5% of every Gram's cells
    above a tenth of its colour range, and the title states the true range."""
    from tests.app.test_figures import digits_store

    ex = digits_store(tmp_path, outlier=20.0)
    app = create_app(tmp_path)
    dash_duo.start_server(app, port=_free_port())
    dash_duo.driver.set_window_size(1280, 1000)
    run_id = ex.catalogue().runs[0].id
    dash_duo.driver.get(dash_duo.server_url + "/" + ViewState(run=run_id).to_search())
    for n in ("parent", "child", "dense"):
        _wait(lambda g=f"{n}-gram": _scale(dash_duo, g), what=f"{n} Gram", timeout=60)
        shown, cells, zmax = dash_duo.driver.execute_script(_GRAM_SHOWN_JS, f"#{n}-gram")
        assert cells == 64 * 64 and shown / cells >= 0.05, f"{n}: {shown} of {cells} cells visible"
        title = dash_duo.driver.execute_script(f"return document.querySelector('#{n}-gram .js-plotly-plot').layout.title.text")
        assert "true range" in title and "beyond" in title
    _no_severe(dash_duo)
