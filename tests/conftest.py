"""Shared fixtures: tiny tasks, models and schedules that train in a second."""

from __future__ import annotations

import pytest
import torch

from fci.model import MaskedMLP
from fci.tasks import DNFTask, TaskConfig
from fci.train import FPESpec, TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest and most repeatably on one intra-op thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def random_masks(model: MaskedMLP, seed: int, p: float = 0.5) -> MaskedMLP:
    """Give every weight and bias of `model` a random 0/1 mask (keep probability p)."""
    g = torch.Generator().manual_seed(seed)
    for l in range(model.n_layers):
        wm = (torch.rand(model.weights[l].shape, generator=g) < p).float()
        bm = (torch.rand(model.biases[l].shape, generator=g) < p).float()
        model.set_masks(l, wm, bm)
    return model


def tiny_task_config(**kw) -> TaskConfig:
    base = dict(n_clauses=4, clause_size=3, n_train=256, n_test=256)
    base.update(kw)
    return TaskConfig(**base)


def tiny_spec(seed: int = 0, hidden=4, expansions=(("clause", 2), ("random", 2)), warmup=3, finetune=3, **task_kw) -> FPESpec:
    return FPESpec(
        task=tiny_task_config(**task_kw),
        hidden=hidden,
        seed=seed,
        expansions=expansions,
        train=TrainConfig(warmup=warmup, finetune=finetune, batch_size=64, lr=0.02),
    )


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
