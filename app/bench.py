"""`python -m app.bench`: how long the explorer's server takes to answer each interaction.

Every interaction is timed end to end on the server: the HTTP request to Dash's
callback endpoint (Flask test client, no browser), dispatch, the page callback
(event -> URL -> figures and panels), JSON encoding of the response; the client
keeps the digests of what it draws, as the browser does, so unchanged figure
data are not sent again. The first view of a run includes decoding each of its
networks once (`fci.codes.decode_function`, cached for the process).
Two models are measured: the built-in demo (8 clauses, 8 -> 16 neurons, 24
variables) and a 64-neuron parent over 256 variables (64 clauses of 4; its
alpha-2 child has 128 neurons), trained briefly into a temporary store.

With `--browser`, also the whole round trip a user sees in headless Chromium:
from a click on a clause-table row until the detail panel and the heatmap
highlight show the new clause (server, transfer, the browser drawing the
highlight into the figures it shows and re-rendering the detail panel).

    python -m app.bench [--repeats 5] [--data DIR] [--browser]
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from app import create_app
from app.callbacks import CONTROLS
from app.state import ViewState

__all__ = ["CallbackClient", "main", "measure", "measure_browser"]


class CallbackClient:
    """Calls a Dash app's callbacks through its HTTP endpoint, as the browser does,
    keeping the `drawn` store between calls as the browser keeps it."""

    def __init__(self, app):
        self.app = app
        self.http = app.server.test_client()
        self.drawn: Any = None

    def _key(self, output: str) -> str:
        keys = [k for k in self.app.callback_map if output in k.strip(".").split("...")]
        if len(keys) != 1:
            raise KeyError(f"no single callback writes {output!r}")
        return keys[0]

    def call(self, output: str, values: dict[str, Any], changed: list[str]) -> tuple[int, dict[str, Any]]:
        """Fire the callback that writes `output` ("id.prop"); `values` gives input
        and state values by "id.prop" (missing ones are None; pattern inputs are
        empty). Returns (HTTP status, {"id.prop": value} of the outputs it set)."""
        key = self._key(output)
        spec = self.app.callback_map[key]

        def fill(items):
            out = []
            for item in items:
                if isinstance(item["id"], dict):  # a pattern-matching input: no rows rendered here
                    out.append([])
                else:
                    out.append({**item, "value": values.get(f"{item['id']}.{item['property']}")})
            return out

        outputs = [dict(zip(("id", "property"), o.split("."))) for o in key.strip(".").split("...")]
        payload = {"output": key, "outputs": outputs if len(outputs) > 1 else outputs[0],
                   "inputs": fill(spec["inputs"]), "state": fill(spec["state"]), "changedPropIds": changed}
        resp = self.http.post("/_dash-update-component", json=payload)
        if resp.status_code != 200:
            return resp.status_code, {}
        body = json.loads(resp.data)
        return 200, {f"{i}.{p}": v for i, props in body.get("response", {}).items() for p, v in props.items()}

    def update(self, search: str, changed: str | None = None, value: Any = None) -> tuple[int, dict[str, Any]]:
        """The page callback after `changed` ("id.prop") took `value`; None: a page
        load or history navigation to `search`."""
        state, _ = ViewState.from_search(search)
        values = {"url.search": search, "drawn.data": self.drawn,
                  **{f"{c}.value": getattr(state, c) for c in CONTROLS}}
        if changed:
            values[changed] = value
        status, out = self.call("url.search", values, [changed or "url.search"])
        if "drawn.data" in out:
            self.drawn = out["drawn.data"]
        return status, out

    def interact(self, search: str, changed: str | None = None, value: Any = None) -> str:
        """One interaction; returns the URL query it leads to."""
        status, out = self.update(search, changed, value)
        if status != 200:
            raise RuntimeError(f"the page callback answered HTTP {status}")
        return out.get("url.search", search)


def _time(fn, repeats: int) -> tuple[float, float]:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts), max(ts)


def measure(data_dir: str | Path, run_id: str, repeats: int = 5) -> list[tuple[str, float, float]]:
    """(interaction, median ms, max ms) for a stored run, on a fresh app (cold caches
    for the first rows)."""
    app = create_app(data_dir)
    client = CallbackClient(app)
    base = ViewState(run=run_id, clause=0, threshold=0.1).to_search()
    out = []
    t0 = time.perf_counter()
    client.interact(base)
    out.append(("first view of the run (load + decode_function + draw)", (time.perf_counter() - t0) * 1000, float("nan")))
    run = app.explorer.run(run_id)
    C, label = run.n_clauses, run.labels[1]
    clauses = iter(k % C for k in range(1, 10 * repeats))
    views = {"weights": "codes", "codes": "weights"}
    shown = {"view": "weights"}

    def toggle():
        search = ViewState(run=run_id, clause=0, view=shown["view"]).to_search()
        shown["view"] = views[shown["view"]]
        client.interact(search, "view.value", shown["view"])

    def reload():
        client.drawn = None
        client.interact(base)

    steps = {
        "select a clause (dropdown)": lambda: client.interact(base, "clause.value", next(clauses)),
        "click a heatmap cell": lambda: client.interact(base, "child-weights.clickData", {"points": [{"x": label, "y": "h0"}]}),
        "click a table row / graph node": lambda: client.interact(base, "child-collisions.clickData", {"points": [{"customdata": C - 1}]}),
        "toggle weights / sign codes": lambda: toggle(),
        "reload the page (cached run)": reload,
    }
    for name, fn in steps.items():
        out.append((name, *_time(fn, repeats)))
    thresholds = iter([0.05 + 0.01 * k for k in range(10 * repeats)])
    out.append(("move the threshold slider (new analysis)",
                *_time(lambda: client.interact(base, "threshold.value", next(thresholds)), repeats)))
    return out


_HIGHLIGHT_JS = """const el = document.querySelector('#child-weights .js-plotly-plot');
return el && el.layout && el.layout.shapes ? el.layout.shapes.filter(s => (s.name || '').startsWith('clause-var:'))
    .map(s => s.name).join(',') : '';"""

#: In the page: a capturing click listener stamps `performance.now()` when a
#: clause-table row is clicked, then checks once per animation frame whether the
#: detail panel shows that clause and the child heatmap's clause highlight
#: moved; the frame where both hold is the end stamp.
_STOPWATCH_JS = """
const highlight = () => { const el = document.querySelector('#child-weights .js-plotly-plot');
  return el && el.layout && el.layout.shapes ? el.layout.shapes.filter(s => (s.name || '').startsWith('clause-var:'))
    .map(s => s.name).join(',') : ''; };
window.__fciClick = null;
document.addEventListener('click', e => {
  const row = e.target.closest('#clause-table tbody tr');
  if (!row) return;
  const c = row.rowIndex - 1, t0 = performance.now(), before = highlight();
  const rec = window.__fciClick = {clause: c, t0: t0, ms: null};
  const check = () => {
    if (window.__fciClick !== rec) return;
    const title = document.getElementById('clause-title');
    if (title && title.textContent.includes('Clause c' + c + ':') && highlight() !== before) {
      rec.ms = performance.now() - t0; return; }
    requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
}, true);
"""


def measure_browser(data_dir: str | Path, run_id: str, clicks: int = 6) -> tuple[list[float], list[float]]:
    """Two timings per click on a clause-table row, in headless Chromium, until the
    detail panel and the child heatmap's highlight show that clause:
    (in-page ms: from the DOM click event, `performance.now()`, to the first
    animation frame showing the update, so WebDriver's own overhead is left out;
    wall ms: from Selenium's `click()` call until Selenium sees the update)."""
    from selenium import webdriver
    from werkzeug.serving import make_server

    from app.browser import chrome_options

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(data_dir)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = webdriver.Chrome(options=chrome_options())
    script = "var e = document.getElementById('clause-title'); return e ? e.textContent : '';"

    def wait(cond, timeout=60.0):
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError("the page did not update")
            time.sleep(0.005)

    try:
        driver.get(f"http://127.0.0.1:{port}/" + ViewState(run=run_id, clause=0).to_search())
        wait(lambda: "Clause c0" in driver.execute_script(script) and driver.execute_script(_HIGHLIGHT_JS))
        driver.execute_script(_STOPWATCH_JS)
        time.sleep(1.0)  # let the first draw settle
        n = app.explorer.run(run_id).n_clauses
        page, wall = [], []
        for k in range(clicks):
            c = 1 + k % (n - 1) if n > 1 else 0
            before = driver.execute_script(_HIGHLIGHT_JS)
            row = driver.find_element("css selector", f"#clause-table tbody tr:nth-child({c + 1})")
            t0 = time.perf_counter()
            row.click()
            wait(lambda: f"Clause c{c}:" in driver.execute_script(script)
                 and driver.execute_script(_HIGHLIGHT_JS) != before)
            wall.append((time.perf_counter() - t0) * 1000)
            wait(lambda: driver.execute_script("return window.__fciClick && window.__fciClick.ms") is not None)
            page.append(driver.execute_script("return window.__fciClick.ms"))
            time.sleep(0.3)
        return page, wall
    finally:
        driver.quit()
        server.shutdown()


def _bench_store(root: Path) -> str:
    """A 64-neuron, 256-variable trial (brief training), stored under root; returns
    its clause-split run id."""
    from app.cache import Explorer
    from fci.store import Store
    from fci.tasks import TaskConfig
    from fci.train import FPESpec, TrainConfig, run_fpe

    spec = FPESpec(task=TaskConfig(n_clauses=64, clause_size=4, n_vars=256, n_train=2048, n_test=2048), hidden=64,
                   seed=0, expansions=(("clause", 2),), train=TrainConfig(warmup=15, finetune=15))
    run_fpe([spec], device="cpu", store=Store(root))
    return Explorer(root).catalogue().runs[0].id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=None, help="store holding the demo (default: a temporary one)")
    ap.add_argument("--browser", action="store_true", help="also time clicks in headless Chromium")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from app.__main__ import prepare
    from app.cache import Explorer

    with tempfile.TemporaryDirectory() as tmp:
        demo_dir = Path(args.data or Path(tmp) / "demo")
        prepare(demo_dir, progress=False)
        demo_run = Explorer(demo_dir).catalogue().runs[0].id
        big_dir = Path(tmp) / "big"
        print("training the 64 x 256 bench model ...", file=sys.stderr, flush=True)
        big_run = _bench_store(big_dir)
        for title, d, rid, budget in (("demo: 8 clauses, 8 -> 16 neurons x 24 variables", demo_dir, demo_run, 300),
                                      ("64 clauses, 64 -> 128 neurons x 256 variables", big_dir, big_run, 1000)):
            print(f"\n{title}  (budget {budget} ms per interaction, server side)")
            print(f"{'interaction':<50}{'median ms':>10}{'max ms':>10}")
            for name, med, mx in measure(d, rid, args.repeats):
                print(f"{name:<50}{med:>10.1f}{mx:>10.1f}")
            if args.browser:
                page, wall = measure_browser(d, rid, clicks=max(args.repeats, 3))
                print(f"{'browser: row click event -> frame showing it':<50}{statistics.median(page):>10.1f}"
                      f"{max(page):>10.1f}")
                print(f"{'browser: selenium click() -> update seen':<50}{statistics.median(wall):>10.1f}"
                      f"{max(wall):>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
