"""The study command for studies whose unit of work is not a Boolean FPE trial.

`analyses._common.run_study` trains `FPESpec` trials; the studies of the other
seed papers (effective density, wide-and-sparse, real data, deeper networks,
structured sparsity) train other things: dense models at many widths, models
with static random sparsity, FPE on digits. A `JobStudy` describes such a
study as a list of **jobs**, each a JSON config whose outputs (a list of result
rows and, optionally, tensors) are one immutable store entry. The command has
the same contract as every study:

    python -m analyses.<name> [--quick] [--out DIR] [--device auto|cpu|cuda]
                              [--trials N] [--seed S] [--shard I/N] [--data DIR]

A study that trains on the Boolean task (`JobStudy.boolean_task`) also takes
the task and training options of `python -m fci` (fci.cli.add_regime_arguments:
--vars --layout --outputs --p --negation-prob --train-samples, --optimizer --lr
--momentum --weight-decay --batch-size --warmup --finetune). They apply to its
Boolean jobs (other datasets keep the run level's schedule), are checked before
any work with the flag named, and are recorded in summary.json `config.regime`.

Jobs already in the store are loaded, not run; each finished job is written
atomically as soon as its batch finishes, so an interrupted run resumes where it
stopped. `--shard I/N` runs the I-th of N deterministic slices of the jobs and
writes `results.shard-I-of-N.csv`; a final run without `--shard` collects all
jobs from the store and writes:

    results.csv   one row per result row of every job (with the job's config columns)
    stats.csv     the study's per-condition statistics
    summary.json  config, environment, run, statistics, and the comparison with the paper
    *.html        self-contained plotly figures (and `<stem>.plotly.json` beside each)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from analyses._columns import canonical_row
from analyses._common import LEVELS, Level, contract_parser, jsonable, study_options
from analyses._runner import Outputs, Plan, RunInfo, run
from fci.cli import (
    TASK_OPTIONS,
    TRAIN_OPTIONS,
    add_regime_arguments,
    build_train,
    flag_error,
    regime_overrides,
    regime_record,
    regime_text,
)
from fci.store import Store, StoreError, config_key
from fci.tasks import TaskConfig
from fci.train import TrainConfig

__all__ = ["JobStudy", "JobContext", "run_job_study", "build_job_parser", "chunked", "comma_list", "check_alphas", "schedule_from",
           "level_name", "regime_level", "level_task", "regime_caption"]

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """What a JobStudy's hooks get: the parsed options, the run level (with the
    regime options applied: what the Boolean jobs train with), the device, the
    results store (jobs that train FPE trials store their models there through
    `fci.train.run_fpe`, shared with every other study), a caption line stating
    the run's config, and a scratch cache.

    `base_level` is the run level before the regime options, what jobs on other
    data (digits) train with; `task` the run's Boolean task family
    (`JobStudy.boolean_task`), None when the run trains none."""

    args: argparse.Namespace
    level: Level
    device: torch.device
    store: Store | None = None
    caption: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    base_level: Level | None = None
    task: TaskConfig | None = None

    @property
    def base(self) -> Level:
        """The run level before the regime options (`level` when none are taken)."""
        return self.base_level if self.base_level is not None else self.level


@dataclass(frozen=True)
class JobStudy:
    """A study as a list of jobs plus hooks.

    Attributes:
        name: module name; outputs default to data/results/<name>/.
        description: the module's `__doc__`; its first two paragraphs are kept.
        jobs: ctx -> the jobs, JSON-able dicts (each becomes one store entry;
            the runner adds `"kind": "<name>-job"` to its key).
        run: (jobs, ctx) -> iterable of (job, rows, tensors), yielded as each job
            (or batch of jobs) finishes. rows: list of dicts (one per result row);
            tensors: dict of named tensors to keep (may be empty).
        stats: (results, ctx) -> per-condition statistics table (stats.csv).
        figures: (results, stats, ctx) -> {file stem: figure}.
        summarise: (results, stats, ctx) -> extra summary.json fields; put the
            comparison with the source paper under "paper".
        caption: ctx -> the config line under every figure (level, trials, data, schedule).
        add_arguments / validate: study-specific options, checked before any work.
        print_summary: optional (summary, ctx) -> lines printed at the end.
        boolean_task: optional (args, level) -> the study's Boolean task family at
            `level` (`level_task`: the level's sample sizes and task options
            applied), or None when this run trains no Boolean task. Setting it
            gives the study the regime options (fci.cli.add_regime_arguments),
            for its Boolean jobs; a value given to a run without Boolean jobs is refused.
        regime_scope: what the regime options apply to, for --help.
    """

    name: str
    description: str
    jobs: Callable[[JobContext], list[dict[str, Any]]]
    run: Callable[[list[dict[str, Any]], JobContext], Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]]]
    stats: Callable[[pd.DataFrame, JobContext], pd.DataFrame]
    figures: Callable[[pd.DataFrame, pd.DataFrame, JobContext], dict[str, go.Figure]]
    summarise: Callable[[pd.DataFrame, pd.DataFrame, JobContext], dict[str, Any]] | None = None
    caption: Callable[[JobContext], str] | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    validate: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None = None
    print_summary: Callable[[dict[str, Any], JobContext], list[str]] | None = None
    boolean_task: Callable[[argparse.Namespace, Level], TaskConfig | None] | None = None
    regime_scope: str = "the study's Boolean jobs"

    def __post_init__(self):
        object.__setattr__(self, "description", "\n\n".join(self.description.strip().split("\n\n")[:2]))

    def job_config(self, job: dict[str, Any]) -> dict[str, Any]:
        """The store config of a job."""
        return {"kind": f"{self.name}-job", **job}

    # -- how the runner (`analyses._runner.run`) runs a study of jobs

    def parser(self) -> argparse.ArgumentParser:
        return build_job_parser(self)

    def prepare(self, ap: argparse.ArgumentParser, info: RunInfo) -> JobContext:
        return _prepare(self, ap, info)

    def plan(self, ctx: JobContext) -> Plan:
        return _plan(self, ctx)

    def table(self, units: list[dict[str, Any]], ctx: JobContext) -> pd.DataFrame:
        return _table(self, units, ctx)

    def run_record(self, units: list[dict[str, Any]], ctx: JobContext) -> dict[str, Any]:
        return {}

    def finish(self, df: pd.DataFrame, ctx: JobContext) -> Outputs:
        return _finish(self, df, ctx)


def chunked(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    """Consecutive slices of at most `size` items."""
    size = max(1, int(size))
    for s in range(0, len(items), size):
        yield list(items[s : s + size])


_KIND_WORDS = {int: "integers", float: "numbers", str: "names"}


def comma_list(ap: argparse.ArgumentParser, flag: str, text, kind=int, low=None, strict=False, choices=None,
               *, ordered: bool = False) -> tuple:
    """Parse a list-valued option, "a,b,c", into a tuple of distinct values; any
    bad value exits via `ap.error` (status 2) with a message naming `flag` and
    the text given.

    Items may carry whitespace around them; blank items are skipped ("2,3," is
    (2, 3)); an already-parsed list or tuple is checked and normalised the same
    way. `kind` is int, float (finite numbers) or str. Errors: an item that does
    not parse as `kind`, an empty list, a value given twice, a value below `low`
    (at or below it with `strict`), a value not in `choices`.

    Order: numbers come back sorted; names in the order of `choices` when given,
    else in the order given. `ordered=True` is for vectors rather than sets
    (e.g. per-layer widths): the given order is kept and repeats are allowed.
    """
    what = _KIND_WORDS.get(kind)
    if what is None:
        raise TypeError(f"comma_list: kind must be int, float or str, got {kind!r}")
    if isinstance(text, (list, tuple)):
        items, shown = [str(v) for v in text], ",".join(map(str, text))
    else:
        items, shown = str(text).split(","), str(text)
    items = [v.strip() for v in items if v.strip()]
    try:
        vals = [kind(v) for v in items]
    except ValueError:
        vals = None
    if vals is None or (kind is float and not all(math.isfinite(v) for v in vals)):
        ap.error(f"{flag} must be comma-separated {what}, got {shown!r}")
    if not vals:
        ap.error(f"{flag} is empty, got {shown!r}")
    if not ordered:
        twice = sorted({v for v in vals if vals.count(v) > 1}, key=vals.index)
        if twice:
            ap.error(f"{flag} lists {', '.join(map(str, twice))} more than once, got {shown!r}")
    if low is not None:
        if any(v <= low if strict else v < low for v in vals):
            ap.error(f"{flag} values must be {'>' if strict else '>='} {low:g}, got {shown!r}")
    if choices is not None:
        choices = tuple(choices)
        unknown = [v for v in vals if v not in choices]
        if unknown:
            ap.error(f"{flag} takes values from {', '.join(map(str, choices))}; unknown {', '.join(map(str, unknown))}, "
                     f"got {shown!r}")
    if ordered:
        return tuple(vals)
    if kind is not str:
        return tuple(sorted(vals))
    if choices is not None:
        return tuple(c for c in choices if c in vals)
    return tuple(vals)


def check_alphas(ap: argparse.ArgumentParser, flag: str, alphas: Iterable[int], n_in: int, what: str) -> None:
    """Refuse an expansion factor above the inputs a first-layer neuron has (`n_in`):
    its children would be inert and the metrics undefined (NaN)."""
    big = [a for a in alphas if a > n_in]
    if big:
        ap.error(f"{flag} values must be <= {n_in}, the inputs a first-layer neuron of {what} deals to its alpha "
                 f"children (more children than inputs are always empty), got {', '.join(map(str, big))}")


def build_job_parser(study: JobStudy) -> argparse.ArgumentParser:
    ap = contract_parser(
        study.name, study.description,
        epilog=("Outputs: results.csv, stats.csv, summary.json and self-contained .html figures. Finished jobs are kept "
                "in the results store under --data, so a rerun trains nothing and an interrupted run resumes."),
        quick_help="a small run that finishes in about 2 minutes on 2 CPU cores",
        units="jobs",
    )
    if study.boolean_task is not None:
        add_regime_arguments(ap, default_note="the run level's", applies_to=study.regime_scope)
    if study.add_arguments:
        study.add_arguments(ap)
    return ap


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


def regime_caption(ctx: JobContext) -> str:
    """The caption's regime line for the Boolean jobs ('' when the run trains none)."""
    return regime_text(ctx.task, ctx.level.train) if ctx.task is not None else ""


def _check_regime(study: JobStudy, ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The study's own checks, then its Boolean task under the regime options; a bad
    value, or a regime option given to a run without Boolean jobs, exits naming the flag."""
    level = regime_level(ap, args)  # training options first: they need no study option
    if study.validate:
        study.validate(ap, args)
    if study.boolean_task is None:
        return
    try:
        task = study.boolean_task(args, level)
    except ValueError as e:
        flag_error(ap, e)
    if task is None:
        task_set, train_set = regime_overrides(args)
        given = [fl for fl, f in TASK_OPTIONS.items() if f in task_set] + [fl for fl, f in TRAIN_OPTIONS.items() if f in train_set]
        if given:
            ap.error(f"{given[0]} applies to {study.regime_scope}, and this run trains no Boolean task")


def _load_rows(store: Store, key: str) -> list[dict[str, Any]]:
    entry = store.load(key)
    rows = entry.metrics.get("rows")
    if not isinstance(rows, list):
        raise StoreError(f"store entry {entry.path} has no result rows (metrics.json lacks a 'rows' list)")
    return rows


def run_job_study(study: JobStudy, argv: Sequence[str] | None = None) -> int:
    """Parse, validate, run (or load) every job, tabulate and write (`analyses._runner.run`); returns 0."""
    return run(study, argv)


def _prepare(study: JobStudy, ap: argparse.ArgumentParser, info: RunInfo) -> JobContext:
    args = info.args
    if args.trials is None:
        args.trials = LEVELS[info.level].trials
    _check_regime(study, ap, args)  # the study's own checks and its Boolean task: before any work
    level = regime_level(ap, args)
    task = study.boolean_task(args, level) if study.boolean_task is not None else None
    base = LEVELS[info.level]
    ctx = JobContext(args=args, level=level, device=info.device, store=info.store, base_level=base, task=task)
    ctx.caption = study.caption(ctx) if study.caption else f"{study.name} · level={level.name} · trials={args.trials}"
    ctx.config = {
        "study": study.name, "description": study.description, "level": level.name, "trials": args.trials,
        "seed": args.seed, "seeds": [args.seed + t for t in range(args.trials)], "shard": args.shard,
        "device": str(info.device), "data": str(args.data), "out": str(info.out),
        "study_options": study_options(args),
        "caption": ctx.caption,
    }
    if study.boolean_task is not None:
        ctx.config.update({
            "regime": regime_record(task, level.train) if task is not None else None,
            "regime_applies_to": study.regime_scope,
            "task": task.to_dict() if task is not None else None,
            "train": {**level.train.to_dict(), "momentum": level.train.momentum},
            "base_train": {**base.train.to_dict(), "momentum": base.train.momentum},
        })
    return ctx


def _plan(study: JobStudy, ctx: JobContext) -> Plan:
    jobs = study.jobs(ctx)
    ctx.config["jobs"] = len(jobs)  # before sharding: the whole run's
    assert ctx.store is not None
    store = ctx.store

    def produce(todo: list[dict[str, Any]]) -> None:
        bar = tqdm(total=len(todo), desc=study.name, unit="job", disable=not todo)
        for job, rows, tensors in study.run(todo, ctx):
            store.save(study.job_config(job), {"rows": jsonable(rows)}, tensors)
            bar.update(1)
        bar.close()

    return Plan(units=jobs, keys=lambda j: [config_key(study.job_config(j))], produce=produce, shard_key=study.job_config,
                unit="jobs")


def _table(study: JobStudy, jobs: list[dict[str, Any]], ctx: JobContext) -> pd.DataFrame:
    assert ctx.store is not None
    rows = []
    for job in jobs:
        for r in _load_rows(ctx.store, config_key(study.job_config(job))):
            rows.append({**{k: v for k, v in job.items() if not isinstance(v, (dict, list))}, **canonical_row(r)})
    df = pd.DataFrame(rows)
    if "seed" in df.columns and "trial" not in df.columns:  # trial t uses seed S+t in every study
        df.insert(int(df.columns.get_loc("seed")), "trial", df["seed"] - ctx.args.seed)
    return df


def _finish(study: JobStudy, df: pd.DataFrame, ctx: JobContext) -> Outputs:
    stats = study.stats(df, ctx)
    summary: dict[str, Any] = {"stats": stats.to_dict("records")}
    if study.summarise:
        summary.update(study.summarise(df, stats, ctx))
    lines: list[str] | Callable[[dict[str, Any]], list[str]] = []
    if study.print_summary is not None:
        printer = study.print_summary
        lines = lambda full: printer(full, ctx)  # noqa: E731
    return Outputs(stats=stats, summary=summary, figures=dict(study.figures(df, stats, ctx)), lines=lines)

