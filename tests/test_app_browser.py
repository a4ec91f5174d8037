"""End to end in headless Chromium (dash[testing] + Debian's chromium/chromedriver):
load the explorer on the demo store, select clauses three ways, check that the
highlight, the detail panel, the table and the URL follow, save the README
screenshot (docs/explorer.png), and check an unknown run id in the URL."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")]

from app.browser import chromium_available

if not chromium_available():
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)
pytest.importorskip("selenium")
pytest.importorskip("dash.testing.browser")

from app import create_app  # noqa: E402
from app.views import graph_id  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "explorer.png"

_SHAPES_JS = """
const el = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!el || !el.layout || !el.layout.shapes) return null;
return el.layout.shapes.filter(s => s.name && s.name.startsWith(arguments[1] + ':'))
    .map(s => parseInt(s.name.split(':')[1])).sort((a, b) => a - b);
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


def _click_cell(duo, gid: str, row: int, col: int, n_rows: int, n_cols: int) -> None:
    """Click a heatmap cell (offsets from the plot area's centre: the same in every
    Selenium version)."""
    from selenium.webdriver.common.action_chains import ActionChains

    area = duo.driver.find_element("css selector", f"#{gid} .nsewdrag")
    box = duo.driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", area)
    dx = ((col + 0.5) / n_cols - 0.5) * box[0]
    dy = ((row + 0.5) / n_rows - 0.5) * box[1]
    ActionChains(duo.driver).move_to_element(area).move_by_offset(int(dx), int(dy)).click().perform()


def _selected_row(duo) -> str:
    rows = duo.driver.find_elements("css selector", "#clause-table tr.selected")
    return rows[0].text.split()[0] if rows else ""


def test_explorer_end_to_end(dash_duo, app_demo_dir):
    data_dir, _ = app_demo_dir
    app = create_app(data_dir)
    explorer = app.explorer
    run_id = explorer.catalogue().runs[0].id
    dash_duo.start_server(app, port=_free_port())
    dash_duo.driver.implicitly_wait(0)  # we poll ourselves; an implicit wait slows every empty lookup

    # The page loads, fills the URL and highlights clause 0.
    dash_duo.wait_for_contains_text("#clause-title", "Clause c0", timeout=30)
    _wait(lambda: f"run={run_id}" in dash_duo.driver.current_url, what="the run id in the URL")
    analysis = explorer.analysis(run_id, 0.1)
    child_channel = lambda c: analysis.codes["child"].rows[c]["channel"]  # noqa: E731
    assert _wait(lambda: _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron") is not None,
                 what="the child heatmap") is not None
    assert _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron") == child_channel(0)
    assert _selected_row(dash_duo) == "c0"

    # Select clause 3 from the dropdown: heatmap highlight, detail, table and URL follow.
    dash_duo.select_dcc_dropdown("#clause", index=3)
    dash_duo.wait_for_contains_text("#clause-title", "Clause c3")
    assert _wait(lambda: _highlight(dash_duo, graph_id("child", "weights"), "clause-var")
                 == sorted(v for v, _ in analysis.run.clauses[3]), what="clause 3's literals outlined")
    assert _highlight(dash_duo, graph_id("child", "weights"), "channel-neuron") == child_channel(3)
    assert _highlight(dash_duo, graph_id("parent", "weights"), "channel-neuron") == analysis.codes["parent"].rows[3]["channel"]
    _wait(lambda: _selected_row(dash_duo) == "c3", what="table row c3 selected")
    _wait(lambda: "clause=3" in dash_duo.driver.current_url, what="clause=3 in the URL")

    # A click on a table row selects that clause.
    dash_duo.driver.find_element("css selector", "#clause-table tbody tr:nth-child(1)").click()
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
    dash_duo.driver.get(dash_duo.server_url + f"/?run={run_id}&clause={shown}&threshold=0.1&view=weights")
    dash_duo.wait_for_contains_text("#clause-title", f"Clause c{shown}", timeout=30)
    _wait(lambda: _highlight(dash_duo, graph_id("dense", "weights"), "clause-var"), what="figures drawn")
    time.sleep(0.5)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert dash_duo.driver.save_screenshot(str(SCREENSHOT))

    # An unknown run id in the URL renders a message, and the server keeps answering.
    dash_duo.driver.get(dash_duo.server_url + "/?run=no-such-run&clause=2")
    dash_duo.wait_for_contains_text("#messages", "unknown run 'no-such-run'", timeout=30)
    dash_duo.driver.get(dash_duo.server_url + f"/?run={run_id}&clause=1")
    dash_duo.wait_for_contains_text("#clause-title", "Clause c1", timeout=30)
    assert not [e for e in dash_duo.get_logs() or [] if e.get("level") == "SEVERE"]
