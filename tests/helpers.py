"""Builders for small fixtures: tiny tasks, models and schedules that train in a second.

Tests import these (`from tests.helpers import tiny_spec`); `conftest.py` holds the fixtures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from fci.models.mlp import MaskedMLP
from fci.tasks import TaskConfig
from fci.train import FPESpec, TrainConfig

#: The repository's root folder.
ROOT = Path(__file__).resolve().parents[1]


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


def run_tiny(main: Callable[[list[str]], int], root: Path) -> list[str]:
    """Run a study's `main` at the tiny level on CPU, outputs in root/out and the store
    under root/data; asserts it exits 0 and returns its arguments (to run it again)."""
    argv = ["--tiny", "--device", "cpu", "--out", str(root / "out"), "--data", str(root / "data")]
    assert main(argv) == 0
    return argv


def tiny_run_fixture(main: Callable[[list[str]], int], name: str):
    """A module-scoped fixture that runs a study once with `run_tiny` in a fresh folder
    named `name`: its value is (root, argv)."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory):
        root = tmp_path_factory.mktemp(name)
        return root, run_tiny(main, root)

    return fixture
