"""How big a run is and what it sweeps: run levels (`LEVELS`: full, quick, tiny), the
sweep points of the Boolean studies (`Point`, `HEADLINE`, `superposition_points`), and
the trial specs they become (`make_specs`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from fci.cli import (
    build_train,
    flag_error,
    parse_splits,
    regime_overrides,
    regime_record,
)
from fci.tasks import TaskConfig
from fci.train import FPESpec, TrainConfig

__all__ = ["Level", "LEVELS", "default_train", "EXPANSIONS", "Point", "HEADLINE", "SUPERPOSITION", "superposition_points",
           "CONFIG_KEYS", "GROUP_KEYS", "RESTART", "point_task", "point_expansions", "make_specs", "apply_regime", "level_regime",
           "schedule_from", "level_name", "regime_level", "level_task"]


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Level:
    """How big a run is: the default trial count, the data sizes and the schedule.

    Attributes:
        name: "full" (the default run), "quick" (--quick) or "tiny" (tests only).
        trials: default number of trials (--trials overrides).
        n_train: training samples per task (--train-samples overrides).
        n_test: test samples per task.
        train: the training schedule, shared by every study at this level so
            that identical (task, width, seed) trials are trained once (the
            training options override its fields).
        task: TaskConfig fields beyond the point's C and k and the sample sizes
            (--vars, --layout, --outputs, --p, --negation-prob); empty = defaults.
    """

    name: str
    trials: int
    n_train: int
    n_test: int
    train: TrainConfig
    task: dict[str, Any] = field(default_factory=dict)  # TaskConfig fields set by the task options (--p, ...)


LEVELS: dict[str, Level] = {
    # The default run: TrainConfig's defaults (lr 0.01, batch 256, 200 dense
    # warm-up epochs + 200 fine-tuning epochs, i.e. 6400 dense steps), on the
    # SPEC's data sizes.
    "full": Level("full", trials=5, n_train=4096, n_test=2048, train=TrainConfig()),
    # A smoke run that finishes in under 2 minutes on 2 cores.
    "quick": Level("quick", trials=3, n_train=512, n_test=512,
                   train=TrainConfig(lr=0.01, batch_size=128, warmup=100, finetune=100)),
    # For the tests: seconds.
    "tiny": Level("tiny", trials=2, n_train=128, n_test=128,
                  train=TrainConfig(lr=0.02, batch_size=64, warmup=4, finetune=4)),
}


def default_train(quick: bool = False) -> TrainConfig:
    """The training schedule every study uses at the default or --quick level."""
    return LEVELS["quick" if quick else "full"].train


EXPANSIONS: tuple[tuple[str, int], ...] = (("clause", 2), ("random", 2), ("clause", 4), ("random", 4))
"""The expansions most studies train: clause and random split at alpha 2 and 4."""


@dataclass(frozen=True)
class Point:
    """One configuration of a sweep; every trial of it is one `FPESpec`.

    Attributes:
        n_clauses: C, clauses of the DNF task.
        hidden: H, hidden width of the dense parent.
        expansions: (split, alpha) pairs the parent is expanded into.
        clause_size: k, literals per clause.
    """

    n_clauses: int
    hidden: int
    expansions: tuple[tuple[str, int], ...] = EXPANSIONS
    clause_size: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"n_clauses": self.n_clauses, "hidden": self.hidden, "clause_size": self.clause_size,
                "expansions": [list(e) for e in self.expansions]}


HEADLINE = Point(n_clauses=8, hidden=8)
"""The paper's headline configuration: 8 clauses, 8 neurons, alpha 2 and 4."""


SUPERPOSITION: dict[str, dict[str, tuple]] = {
    "full": {"hidden": (2, 4, 8, 16), "clauses": (4, 8, 16, 32), "skip": ()},
    "quick": {"hidden": (4, 8, 16), "clauses": (4, 8, 16), "skip": ()},
    "tiny": {"hidden": (4, 8), "clauses": (4, 8), "skip": ()},
}
"""The superposition sweep shared by several studies: hidden widths (at
HEADLINE.n_clauses clauses) and clause counts (at HEADLINE.hidden neurons);
`skip` lists (clauses, hidden) cells of the grid that are not run."""


def superposition_points(level: str, grid: bool = True) -> list[Point]:
    """The (hidden x clauses) grid, or with grid=False only its two lines through
    the headline point: widths at 8 clauses and clause counts at 8 neurons."""
    sw = SUPERPOSITION[level]
    if grid:
        pairs = [(c, h) for c in sw["clauses"] for h in sw["hidden"] if (c, h) not in set(sw["skip"])]
    else:
        pairs = [(HEADLINE.n_clauses, h) for h in sw["hidden"]] + [(c, HEADLINE.hidden) for c in sw["clauses"]]
    seen, out = set(), []
    for c, h in pairs:
        if (c, h) not in seen:
            seen.add((c, h))
            out.append(Point(n_clauses=c, hidden=h))
    return out


CONFIG_KEYS = ["n_clauses", "clause_size", "hidden"]
"""Columns that name a configuration (a trial's dense baseline shares them)."""


GROUP_KEYS = CONFIG_KEYS + ["condition", "alpha"]
"""Columns that name one condition of one configuration."""


RESTART: tuple[str, int] = ("random", 1)
"""The alpha = 1 restart control: the parent at the end of warm-up, copied unchanged
and fine-tuned with a fresh optimiser, like every child (condition 'restart')."""


def point_task(point: Point, level: Level) -> TaskConfig:
    """The task family of a point at a level (its C and k, the level's sizes and task options)."""
    return TaskConfig(n_clauses=point.n_clauses, clause_size=point.clause_size, n_train=level.n_train,
                      n_test=level.n_test, **level.task)


def point_expansions(point: Point, splits: Sequence[str] | None = None, restart: bool = True) -> tuple[tuple[str, int], ...]:
    """The point's (split, alpha) children; with `splits`, those splits at each of the
    point's alphas instead; with `restart`, the alpha = 1 restart control too."""
    exps = tuple(point.expansions)
    if splits is not None:
        alphas = list(dict.fromkeys(a for _, a in exps if a > 1))
        exps = tuple((s, a) for a in alphas for s in splits)
    if restart and RESTART not in exps:
        exps = exps + (RESTART,)
    return exps


def make_specs(points: Sequence[Point], level: Level, trials: int, seed: int, splits: Sequence[str] | None = None,
               restart: bool = True) -> list[tuple[FPESpec, int]]:
    """(spec, trial) for every point and trial; trial t uses seed `seed + t`."""
    out = []
    for p in points:
        task = point_task(p, level)
        exps = point_expansions(p, splits, restart)
        for t in range(trials):
            out.append((FPESpec(task=task, hidden=p.hidden, seed=seed + t, expansions=exps, train=level.train), t))
    return out


def apply_regime(ap: argparse.ArgumentParser, args: argparse.Namespace, level: Level, points: Sequence[Point]) -> Level:
    """The level with the task and training options applied, every point's task
    checked (a bad value exits naming its flag, before any work); `args.splits`
    becomes a list of registered names (or None: the study's own)."""
    task_set, train_set = regime_overrides(args)
    n_train = task_set.pop("n_train", level.n_train)
    lv = dataclasses.replace(level, n_train=n_train, train=build_train(ap, level.train, train_set), task={**level.task, **task_set})
    for p in points:
        try:
            point_task(p, lv)
        except ValueError as e:
            flag_error(ap, e)
    args.splits = parse_splits(ap, args.splits) if args.splits is not None else None
    return lv


def level_regime(level: Level) -> dict[str, Any]:
    """The regime options' values at a level (summary.json's `config.regime`)."""
    task = {**TaskConfig().to_dict(), "n_vars": None, **level.task, "n_train": level.n_train}
    return regime_record(task, level.train)


def schedule_from(base: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """`base` with the options --warmup, --finetune, --batch-size and --lr applied
    where given (a study's own schedule options). Raises ValueError naming a bad value."""
    over = {"warmup": args.warmup, "finetune": args.finetune, "batch_size": args.batch_size, "lr": args.lr}
    return TrainConfig.from_dict({**base.to_dict(), **{k: v for k, v in over.items() if v is not None}})


def level_name(args: argparse.Namespace) -> str:
    """The run level the contract options ask for: tiny, quick or full."""
    return "tiny" if args.tiny else "quick" if args.quick else "full"


def regime_level(ap: argparse.ArgumentParser, args: argparse.Namespace) -> Level:
    """The run level with the training options and the task options applied
    (--train-samples sets its n_train, the others its `task` fields); the plain
    level for a study without them. A bad training value exits naming its flag;
    task values are checked where a task is built (`level_task`)."""
    level = LEVELS[level_name(args)]
    if not hasattr(args, "optimizer"):
        return level
    task_set, train_set = regime_overrides(args)
    n_train = task_set.pop("n_train", level.n_train)
    return dataclasses.replace(level, n_train=n_train, train=build_train(ap, level.train, train_set),
                               task={**level.task, **task_set})


def level_task(level: Level, **fields: Any) -> TaskConfig:
    """A Boolean task of a study at `level`: the study's own fields (C, k, ...),
    the level's sample sizes, and its task options (which win). Raises
    ValueError on a bad value (naming the field)."""
    return TaskConfig(**{**fields, "n_train": level.n_train, "n_test": level.n_test, **level.task})
