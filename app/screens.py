"""`python -m app.screens --data DIR [--out docs]`: the documentation's screenshots of
the explorer, one per model kind in the store, taken in headless Chromium.

    <out>/explorer/<study>.png   one page per study found (fpe, real_data, ...)
    <out>/explorer-digits.png    the digits run the README shows
    <out>/explorer/compare.png   the headline run compared with the same trial's random split

Each page is the run a reader would pick first for its kind (`KIND_PAGES`): the
widest parent of trial 0, in the view that shows what is special about it
(masks for the sparse kinds, the second layer for deep nets).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from analyses.entries import ListedRun
from app.cache import Explorer
from app.state import ViewState

__all__ = ["KIND_PAGES", "Page", "pick", "shoot", "main"]

#: study -> (which runs qualify, view, layer, text the child column's title must show).
Page = tuple[Callable[[ListedRun], bool], str, int, str]
KIND_PAGES: dict[str, Page] = {
    "fpe": (lambda r: r.study == "fpe" and r.split == "clause", "weights", 0, "FPE child"),
    "real_data": (lambda r: r.study == "real_data" and r.split == "gram" and r.alpha == 2, "weights", 0, "gram split"),
    "structured_sparsity": (lambda r: r.study == "structured_sparsity" and r.split == "clause_nm", "masks", 0, "N:M"),
    "wide_sparse": (lambda r: r.study == "wide_sparse" and r.split == "sparse", "masks", 0, "Statically sparse"),
    "effective_density": (lambda r: r.study == "effective_density" and r.dataset == "digits", "weights", 1,
                          "Deep dense"),
    "deep_fpe": (lambda r: r.study == "deep_fpe" and r.dataset == "boolean" and r.split.endswith("(all)"), "weights", 1,
                 "all hidden layers"),
    "cnn_fpe": (lambda r: r.study == "cnn_fpe" and r.alpha == 2, "weights", 0, "FPE child"),
}


def pick(runs: list[ListedRun], study: str) -> ListedRun | None:
    """The run shown for `study`: the headline for fpe, else a mid-width parent
    (8 to 32 neurons when there is one) of the lowest trial."""
    choose = KIND_PAGES[study][0]
    cands = [r for r in runs if choose(r)]
    if not cands:
        return None

    def width(r: ListedRun) -> float:
        return float(r.hidden.split("-")[0])

    return min(cands, key=lambda r: (not 8 <= width(r) <= 32, r.trial, -width(r)))


def shoot(data_dir: str | Path, out: str | Path, width: int = 1280, height: int = 1600) -> list[Path]:
    """Serve the explorer over `data_dir`, save one screenshot per kind found;
    returns the files written."""
    from selenium import webdriver
    from werkzeug.serving import make_server

    from app import create_app
    from app.browser import chrome_options

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    out = Path(out)
    (out / "explorer").mkdir(parents=True, exist_ok=True)
    explorer = Explorer(data_dir)
    app = create_app(data_dir, explorer=explorer)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = webdriver.Chrome(options=chrome_options(width, height))
    text = "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';"
    written = []
    try:
        runs = explorer.catalogue().runs
        for study, (_, view, layer, says) in KIND_PAGES.items():
            info = pick(runs, study)
            if info is None:
                continue
            run = explorer.run(info.id)
            codes = explorer.analysis(info.id, 0.1).codes.get("child")
            clause = next((c for c in range(run.n_clauses) if codes and codes.rows[c]["channel"]), None)
            driver.get(f"http://127.0.0.1:{port}/" + ViewState(run=info.id, view=view, layer=layer, clause=clause)
                       .to_search())
            end = time.monotonic() + 60
            while says not in driver.execute_script(text, "col-title-child"):
                if time.monotonic() > end:
                    raise TimeoutError(f"the {study} page did not draw")
                time.sleep(0.1)
            drawn = ("const g = document.getElementById('child-weights');"
                     "return !!(g && g.querySelector('.heatmaplayer image, .hm image, .heatmaplayer'))")
            while not driver.execute_script(drawn):
                if time.monotonic() > end:
                    raise TimeoutError(f"the {study} page drew no heatmap")
                time.sleep(0.2)
            time.sleep(3.0)  # let every figure draw
            for path in [out / "explorer" / f"{study}.png"] + ([out / "explorer-digits.png"] if study == "real_data" else []):
                driver.save_screenshot(str(path))
                written.append(path)
        written += _shoot_compare(driver, port, runs, out, text)
    finally:
        driver.quit()
        server.shutdown()
    return written


def _shoot_compare(driver, port: int, runs: list[ListedRun], out: Path, text: str) -> list[Path]:
    """The compare view: the headline run above the same trial's random split, if stored."""
    a = pick(runs, "fpe")
    b = next((r for r in runs if a is not None and r.study == a.study and r.task == a.task and r.trial == a.trial
              and r.hidden == a.hidden and r.split == "random" and r.alpha == a.alpha), None)
    if a is None or b is None:
        return []
    driver.get(f"http://127.0.0.1:{port}/" + ViewState(run=a.id, compare=b.id, clause=1).to_search())
    end = time.monotonic() + 60
    while "random" not in driver.execute_script(text, "b-col-title-child"):
        if time.monotonic() > end:
            raise TimeoutError("the compare page did not draw")
        time.sleep(0.2)
    time.sleep(3.0)
    path = out / "explorer" / "compare.png"
    driver.save_screenshot(str(path))
    return [path]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.screens", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="results store root (runs under DIR/store/)")
    ap.add_argument("--out", default="docs", help="folder for the pictures")
    args = ap.parse_args(argv)
    for path in shoot(args.data, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
