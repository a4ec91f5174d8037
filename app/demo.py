"""The built-in demo: one trial of 8 clauses, 8 neurons, alpha 2 — dense, clause-split
and random-split — small enough to train in seconds on a CPU, long enough for
feature channels to show (100 dense epochs, then 100 after expansion)."""

from __future__ import annotations

from fci.store import Store
from fci.tasks import TaskConfig
from fci.train import FPESpec, TrainConfig, run_fpe

__all__ = ["DEMO_SPEC", "train_demo"]

DEMO_SPEC = FPESpec(
    task=TaskConfig(n_clauses=8, clause_size=3),
    hidden=8,
    seed=0,
    expansions=(("clause", 2), ("random", 2)),
    train=TrainConfig(warmup=100, finetune=100),
)


def train_demo(store: Store, progress: bool = True, device: str = "cpu") -> None:
    """Train the demo trial and store its three models (loaded, not retrained, if
    they are already there)."""
    run_fpe([DEMO_SPEC], device=device, progress=progress, store=store)
