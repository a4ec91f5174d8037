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
