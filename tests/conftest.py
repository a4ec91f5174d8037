"""Shared fixtures (the builders behind them are in `tests/helpers.py`)."""

from __future__ import annotations

import pytest
import torch

from fci.models.mlp import MaskedMLP
from fci.tasks import DNFTask


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest and most repeatably on one intra-op thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def task() -> DNFTask:
    return DNFTask.generate(n_clauses=4, clause_size=3, n_vars=14, seed=3)


@pytest.fixture
def model(task) -> MaskedMLP:
    return MaskedMLP(task.n_vars, 6, task.n_outputs, seed=1)


# --- browser tests (app) ---
# Headless Chromium for dash[testing] (Debian's chromium + chromedriver; nothing is
# downloaded), and the explorer's demo store, trained once per test session.


@pytest.hookimpl(optionalhook=True)
def pytest_setup_options():
    """Chrome options for dash's `dash_duo` fixture."""
    from app.browser import chrome_options

    return chrome_options()


@pytest.fixture(scope="session")
def app_demo_dir(tmp_path_factory):
    """A store holding the explorer's built-in demo, trained the way `python -m app`
    trains it on an empty store. Returns (data_dir, whether the demo was trained)."""
    from app.__main__ import prepare

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("app-demo")
        _, trained = prepare(root, progress=False)
    finally:
        torch.set_num_threads(old)
    return root, trained
