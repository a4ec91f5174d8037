"""The fci explorer: a Dash app to inspect every stored model kind, and per-clause
codes before and after splitting.

`python -m app [--data DIR]` serves it (training a small demo into an empty store
first; waitress, or Dash's development server with --debug); `create_app(data_dir)`
builds the app for other servers and tests. The modules, one idea each:
`app.catalogue` (which runs a store holds: each entry read by the reader its kind
registered in `analyses.entries`), `app.runs` (loading one run: MLP or CNN
tensors), `app.readings` (what a network computes, what its weights prove and what they code),
`app.cache` (`Explorer`: the caches), `app.state` (the URL), `app.views` (page and
event logic), `app.figures` and `app.panels` (drawing); `app.callbacks` only wires
them, and `assets/highlight.js` draws clause highlights in the browser.
`python -m app.bench` times interactions; `python -m app.screens` draws the
documentation's pictures.
"""

from __future__ import annotations

from pathlib import Path

from dash import Dash

from app.cache import Explorer
from app.callbacks import register_callbacks
from app.layout import build_layout

__all__ = ["ExplorerApp", "create_app"]


class ExplorerApp(Dash):
    """The explorer's Dash app; `explorer` is the Explorer its callbacks read
    (exposed for tests and benchmarks)."""

    explorer: Explorer


def create_app(data_dir: str | Path = "data", explorer: Explorer | None = None) -> ExplorerApp:
    """A Dash app exploring the results store under `data_dir` (`<data_dir>/store/`).

    The catalogue is read per page load, so runs stored while the server runs
    appear on the next load. Pass `explorer` to share its caches (benchmarks)."""
    explorer = explorer or Explorer(data_dir)
    # Dash documents update_title=None as "leave document.title alone"; its annotation says only str.
    app = ExplorerApp(__name__, title="fci explorer", assets_folder=str(Path(__file__).parent / "assets"),
                      update_title=None)  # type: ignore[arg-type]
    app.layout = lambda: build_layout(explorer)
    register_callbacks(app, explorer)
    app.explorer = explorer  # for tests and benchmarks
    return app
