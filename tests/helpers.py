"""Builders for small fixtures: tiny tasks, models and schedules that train in a second.

Tests import these (`from tests.helpers import tiny_spec`); `conftest.py` holds the fixtures.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest
import torch

import fci
from fci.models.mlp import MaskedMLP, MaskedMLPStack
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


def refusal(main: Callable[[list[str]], int], argv: list[str], capsys) -> tuple[int | str | None, str]:
    """Run a command that must refuse its arguments: its exit code and what it wrote
    to stderr (fails the test when it does not exit)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


def assert_trained_alike(a: MaskedMLPStack, b: MaskedMLPStack, atol: float) -> None:
    """Two stacks trained the same way agree, weights and biases within `atol`, and
    nothing under a mask of `a` (padding included) moved off zero."""
    for l in range(a.n_layers):
        assert torch.allclose(a.weights[l], b.weights[l], atol=atol), (a.weights[l] - b.weights[l]).abs().max()
        assert torch.allclose(a.biases[l], b.biases[l], atol=atol)
        assert torch.all(a.weights[l][a.weight_mask(l) == 0] == 0)
        assert torch.all(a.biases[l][a.bias_mask(l) == 0] == 0)


def planted_dnf(clauses: list, n: int, outputs: str = "dnf", copies: int = 1):
    """Clean planted DNF network: ``copies`` neurons per clause with weight +1 for a
    positive literal, -1 for a negated one and bias ``1 - #positive`` (fires, with
    activation 1, only when every literal is true), plus one dead neuron. Readout +1;
    ``b2 = -0.5``. ``outputs``: "dnf" (one OR output) or "clauses" (one per clause).
    Returns (W1, b1, W2, b2) float32 tensors."""
    C = len(clauses)
    H = C * copies + 1
    W1 = torch.zeros(H, n)
    b1 = torch.zeros(H)
    O = 1 if outputs == "dnf" else C
    W2 = torch.zeros(O, H)
    for c, clause in enumerate(clauses):
        for r in range(copies):
            i = c * copies + r
            for v, positive in clause:
                W1[i, v] = 1.0 if positive else -1.0
            b1[i] = 1.0 - sum(p for _, p in clause)
            W2[0 if outputs == "dnf" else c, i] = 1.0
    b2 = torch.full((O,), -0.5)
    return W1, b1, W2, b2


def assert_uses_only_top_level_names(code: str) -> None:
    """A documented example imports only `fci` and uses only names `fci` exports."""
    assert re.findall(r"^\s*(?:from|import) (\S+)", code, re.M) == ["fci"]
    used = set(re.findall(r"\bfci\.(\w+)", code))
    assert used and used <= set(fci.__all__)
