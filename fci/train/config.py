"""How models train (`TrainConfig`) and what one FPE trial is (`FPESpec`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fci.data.datasets import Dataset
from fci.data.spec import DatasetSpec
from fci.fpe.splits import SPLITS, split_info
from fci.io import known_fields
from fci.options import option
from fci.seeding import derive_seed
from fci.tasks import BooleanTask, TaskConfig

__all__ = ["TrainConfig", "FPESpec", "ADAM_BETAS", "ADAM_EPS", "MAX_LR"]

#: Adam's moment decay rates and epsilon: torch's defaults, fixed (not configurable).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

#: The largest learning rate (and weight decay) a config accepts. An Adam step moves each
#: weight by up to lr; no schedule of these small networks needs more than about 1, so a
#: larger value is taken for a typo and refused before any work.
MAX_LR = 1e3


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

    lr: float = option(0.01, regime=True, help="learning rate")
    batch_size: int = option(256, regime=True, help="minibatch size")
    warmup: int = option(200, regime=True, help="dense epochs before expansion")
    finetune: int = option(200, regime=True, help="epochs after expansion (the dense baseline trains warmup + finetune)")
    weight_decay: float = option(0.0, regime=True, help="L2 penalty added to the gradient")
    optimizer: str = option("adam", choices=("adam", "sgd"), regime=True, help="optimiser")
    shuffle_seed: int = option(0, help="seed of the minibatch order, shared by every model of a stack")
    momentum: float = option(0.0, regime=True, help="SGD momentum in [0, 1) (optimizer sgd only)")

    def __post_init__(self):
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr <= MAX_LR:
            raise ValueError(f"lr must be a number in (0, {MAX_LR:g}], got {self.lr!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("warmup", "finetune"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (epochs), got {v!r}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not 0 <= self.weight_decay <= MAX_LR:
            raise ValueError(f"weight_decay must be a number in [0, {MAX_LR:g}], got {self.weight_decay!r}")
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
    """One trial: its data, a dense parent and its FPE children (SPEC §3).

    Attributes:
        task: the Boolean task family when `data` is None; each trial draws its own
            task with seed derive_seed(seed, "task").
        hidden: hidden width of the dense parent (int) or widths (tuple) for deeper nets.
        seed: the trial seed; initialisation and split seeds (and a per-trial task) derive from it.
        expansions: (split, alpha) pairs to expand the parent into.
        train: the training schedule.
        data: any other dataset (`fci.data.DatasetSpec`: digits, embeddings, a Boolean
            task with a fixed seed), the same for every trial seed; None: `task`.
            A Boolean spec drawn per trial is stored as `task` (one spelling, one key).
        layers: the hidden layers FPE splits: (0,) (default: `expand` of layer 0),
            other indices or "all" (`expand_layers`, the budget kept over the network).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    hidden: int | tuple[int, ...] = 8
    seed: int = 0
    expansions: tuple[tuple[str, int], ...] = (("clause", 2), ("random", 2))
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DatasetSpec | None = None
    layers: tuple[int, ...] | str = (0,)

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        widths = [self.hidden] if isinstance(self.hidden, int) else list(self.hidden)
        if not widths or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in widths):
            raise ValueError(f"hidden must be a width >= 1 or a tuple of them, got {self.hidden!r}")
        object.__setattr__(self, "expansions", tuple((str(s), int(a)) for s, a in self.expansions))
        if self.data is not None and not isinstance(self.data, DatasetSpec):
            raise ValueError(f"data must be a fci.data.DatasetSpec or None, got {type(self.data).__name__}")
        if self.data is not None and self.data.per_trial:  # a task per trial is what `task` says
            task = self.data.task
            assert task is not None
            object.__setattr__(self, "task", task)
            object.__setattr__(self, "data", None)
        if self.layers != "all":
            if isinstance(self.layers, str) or not all(isinstance(l, int) and not isinstance(l, bool) for l in self.layers):
                raise ValueError(f"layers must be 'all' or hidden-layer indices, got {self.layers!r}")
            layers = tuple(sorted(set(self.layers)))
            if not layers or not all(0 <= l < len(widths) for l in layers):
                raise ValueError(f"layers must index the hidden layers 0..{len(widths) - 1}, got {self.layers!r}")
            object.__setattr__(self, "layers", layers)
        for split, alpha in self.expansions:
            if split not in SPLITS:
                raise ValueError(f"expansions: split must be one of {SPLITS}, got {split!r}")
            if alpha < 1:
                raise ValueError(f"expansions: alpha must be an integer >= 1, got {alpha}")
            if split_info(split).needs_clauses and not self.dataset_spec.has_clauses:
                raise ValueError(f"the {split} split needs a Boolean task's clauses; {self.data!r} has none (use random or gram)")

    @property
    def boolean(self) -> bool:
        """Whether the trial trains on a Boolean task (DNF or CNF)."""
        return self.data is None or self.data.kind == "boolean"

    @property
    def dataset_spec(self) -> DatasetSpec:
        """The trial's data as a spec (a per-trial Boolean task when `data` is None)."""
        return self.data if self.data is not None else DatasetSpec.boolean(self.task, seed=None)

    @property
    def loss(self) -> str:
        """'bce' on Boolean tasks, else the dataset's loss."""
        return "bce" if self.boolean else self.dataset().loss

    @classmethod
    def from_entry_config(cls, config: dict[str, Any]) -> "FPESpec":
        """The trial spec of a stored model's config (see `entry_configs`), with
        that model's expansion (none for the dense baseline). Unknown keys in
        the task or train dicts are dropped with a warning."""
        try:
            cond, alpha = config["condition"], int(config["alpha"])
            data = DatasetSpec.from_dict(config["data"]) if "data" in config else None
            return cls(
                task=TaskConfig.from_dict(config["task"]) if "task" in config else TaskConfig(),
                hidden=config["hidden"],  # __post_init__ makes a list a tuple
                seed=int(config["seed"]),
                expansions=() if cond == "dense" else ((cond, alpha),),
                train=TrainConfig.from_dict(config["train"]),
                data=data,
                layers=config.get("layers", (0,)) if not isinstance(config.get("layers"), list) else tuple(config["layers"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an FPE trial config (missing or malformed {e}): keys {sorted(config)}") from None

    def make_task(self) -> BooleanTask:
        """The trial's Boolean task (ValueError for other data)."""
        if self.data is None:
            return BooleanTask.from_config(self.task, derive_seed(self.seed, "task"))
        task = self.data.task
        if task is None or self.data.seed is None:
            raise ValueError(f"{self.data!r} is not a Boolean task")
        return BooleanTask.from_config(task, self.data.seed)

    def dataset(self) -> Dataset:
        """The trial's data (built once per process for a shared spec)."""
        return self.dataset_spec.build(trial_seed=self.seed)

    def init_seed(self) -> int:
        return derive_seed(self.seed, "init")

    def split_seed(self, split: str, alpha: int) -> int:
        return derive_seed(self.seed, "split", split, alpha)

    @property
    def hidden_list(self) -> list[int]:
        return [self.hidden] if isinstance(self.hidden, int) else list(self.hidden)
