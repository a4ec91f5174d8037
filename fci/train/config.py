"""How models train (`TrainConfig`) and what one FPE trial is (`FPESpec`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fci._fields import known_fields
from fci.expand import SPLITS
from fci.seeding import derive_seed
from fci.tasks import DNFTask, TaskConfig

__all__ = ["TrainConfig", "FPESpec", "ADAM_BETAS", "ADAM_EPS"]

#: Adam's moment decay rates and epsilon: torch's defaults, fixed (not configurable).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class TrainConfig:
    """How models train.

    Attributes:
        lr: Adam learning rate (> 0).
        batch_size: minibatch size (>= 1).
        warmup: dense epochs before expansion (>= 0).
        finetune: epochs after expansion; the dense baseline trains warmup + finetune (>= 0).
        weight_decay: L2 penalty added to the gradient, as torch.optim.Adam does (>= 0).
        optimizer: "adam" (default) or "sgd".
        momentum: SGD momentum in [0, 1), as torch.optim.SGD's (0 = plain SGD; "sgd" only).
            Left out of `to_dict` when 0, so the store keys of momentum-free runs
            are those they had before the field existed.
        shuffle_seed: seed of the minibatch order, shared by every model of a stack.
    """

    lr: float = 0.01
    batch_size: int = 256
    warmup: int = 200
    finetune: int = 200
    weight_decay: float = 0.0
    optimizer: str = "adam"
    shuffle_seed: int = 0
    momentum: float = 0.0

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("warmup", "finetune"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (epochs), got {v!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum applies to optimizer 'sgd' only, got momentum={self.momentum} with {self.optimizer!r}")
        object.__setattr__(self, "momentum", float(self.momentum))

    @property
    def epochs(self) -> int:
        return self.warmup + self.finetune

    def optimizer_settings(self) -> dict[str, Any]:
        """Everything the optimiser's state depends on: a run may only be
        continued under the same settings (batch size and epochs may change)."""
        out: dict[str, Any] = {"optimizer": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "adam":
            out.update(betas=ADAM_BETAS, eps=ADAM_EPS)
        elif self.momentum:
            out["momentum"] = self.momentum
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.momentum:
            del d["momentum"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls(**known_fields(cls, d))


@dataclass(frozen=True)
class FPESpec:
    """One trial: a Boolean task, a dense parent and its FPE children.

    Attributes:
        task: the task family; the task itself is drawn with seed derive_seed(seed, "task").
        hidden: hidden width of the dense parent (int) or widths (tuple) for deeper nets.
        seed: the trial seed; task, data, initialisation and split seeds derive from it.
        expansions: (split, alpha) pairs to expand the parent into.
        train: the training schedule.
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    hidden: int | tuple[int, ...] = 8
    seed: int = 0
    expansions: tuple[tuple[str, int], ...] = (("clause", 2), ("random", 2))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "expansions", tuple((str(s), int(a)) for s, a in self.expansions))
        for split, alpha in self.expansions:
            if split not in SPLITS:
                raise ValueError(f"expansions: split must be one of {SPLITS}, got {split!r}")
            if alpha < 1:
                raise ValueError(f"expansions: alpha must be an integer >= 1, got {alpha}")

    @classmethod
    def from_entry_config(cls, config: dict[str, Any]) -> "FPESpec":
        """The trial spec of a stored model's config (see `entry_configs`), with
        that model's expansion (none for the dense baseline). Unknown keys in
        the task or train dicts are dropped with a warning."""
        try:
            cond, alpha = config["condition"], int(config["alpha"])
            return cls(
                task=TaskConfig.from_dict(config["task"]),
                hidden=config["hidden"],  # __post_init__ makes a list a tuple
                seed=int(config["seed"]),
                expansions=() if cond == "dense" else ((cond, alpha),),
                train=TrainConfig.from_dict(config["train"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an FPE trial config (missing or malformed {e}): keys {sorted(config)}") from None

    def make_task(self) -> DNFTask:
        return DNFTask.from_config(self.task, derive_seed(self.seed, "task"))

    def init_seed(self) -> int:
        return derive_seed(self.seed, "init")

    def split_seed(self, split: str, alpha: int) -> int:
        return derive_seed(self.seed, "split", split, alpha)

    @property
    def hidden_list(self) -> list[int]:
        return [self.hidden] if isinstance(self.hidden, int) else list(self.hidden)
