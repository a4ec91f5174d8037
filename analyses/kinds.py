"""The kinds of study the runner (`analyses.runner.run`) runs, each a small dataclass of
hooks that say *what* to run; the runner says *how*.

- `Study`: a sweep of Boolean FPE trials (`points` per run level); every trial is an
  `fci.train.FPESpec` trained by `fci.train.run_fpe`; one results.csv row per model.
- `JobStudy`: a list of **jobs** (JSON configs, e.g. one width and seed of a dense or
  sparse model); each job's result rows (and tensors) are one store entry.

Both share the hooks a study author writes the same way: `figures`, `summarise`
(summary.json fields; the comparison with the paper under "paper"), `add_arguments`
and `validate` (their own options, checked before any work). The regime map
(`analyses.regimes`) is a third kind, a grid of trials with a schedule per cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from analyses.columns import canonical_row
from analyses.levels import CONFIG_KEYS, HEADLINE, LEVELS, Level, Point, apply_regime, level_regime, make_specs, regime_level
from analyses.rows import condition_order, model_conditions, model_row
from analyses.runner import Outputs, Plan, RunInfo, contract_parser, study_options
from analyses.style import label, loss_figure
from analyses.tables import BASE_METRICS, condition_stats, convergence, loss_curves, p_text, pooled_stats, restart_reason, verdict_lines
from fci.cli import (
    add_regime_arguments,
    flag_error,
    mean_sem_text,
    regime_flags,
    regime_overrides,
    regime_record,
    regime_text,
)
from fci.fpe.splits import SPLITS
from fci.io import jsonable
from fci.store import Store, StoreError, config_key
from fci.tasks import TaskConfig
from fci.train import FPEResult, FPESpec, ModelResult, backends_of, entry_configs, plan_cost, run_fpe, trial_keys
from fci.train.executors import Executor, importable

__all__ = ["Study", "Context", "JobStudy", "JobContext", "STUDY_HOOKS", "JOB_HOOKS", "module_hooks", "trial_plan",
           "trial_shard_key", "build_parser", "build_job_parser", "caption_for", "regime_caption", "chunked", "local_batches",
           "run_job_batch", "LOCAL_BATCHES"]

log = logging.getLogger(__name__)


def trial_shard_key(item: tuple[FPESpec, int]) -> dict[str, Any]:
    """A trial's identity for `--shard`: its dense model's store config (every study of trials shards by it)."""
    return entry_configs(item[0])[("dense", 1)]


def trial_plan(items: list[tuple[FPESpec, int]], run: RunInfo, describe: str) -> Plan:
    """The plan of a study of Boolean FPE trials, `items` (spec, trial index): each
    keyed by its models' store keys and sharded by `trial_shard_key`, produced by
    `fci.train.run_fpe` into the run's store, costed by `plan_cost`. The trials train
    where the run's executor is when they are produced (a Dask cluster with --dask: the
    runner starts it after planning, so it is read then, not now)."""

    def produce(todo: list[tuple[FPESpec, int]]) -> None:
        run_fpe([s for s, _ in todo], device=run.device, progress=True, store=run.store, executor=run.executor)

    return Plan(units=items, keys=lambda item: trial_keys([item[0]])[0], produce=produce, shard_key=trial_shard_key,
                cost=lambda todo: plan_cost([s for s, _ in todo]), unit="trials", describe=describe)


#: Study hook -> the name of the study module's function that `Study.from_module` reads it from.
STUDY_HOOKS = {h: h for h in ("points", "figures", "extra_columns", "summarise", "add_arguments", "validate")}
#: JobStudy hook -> the name of the study module's function that `JobStudy.from_module` reads it from
#: (`run` and `stats` are read from `run_jobs` and `stats_hook`: a study module imports `fci.stats`).
JOB_HOOKS = {"jobs": "jobs", "run": "run_jobs", "stats": "stats_hook", "figures": "figures", "summarise": "summarise",
             "caption": "caption", "add_arguments": "add_arguments", "validate": "validate",
             "print_summary": "print_summary", "boolean_task": "boolean_task"}


def module_hooks(module: str, hooks: dict[str, str]) -> dict[str, Any]:
    """The hooks a study module defines: {hook: the module's function named `hooks[hook]`}
    for each such function present, and the module's `__doc__` as `description`.
    A module attribute of a hook's name that is not callable is refused (TypeError)."""
    mod = sys.modules[module]
    found: dict[str, Any] = {"description": mod.__doc__ or ""}
    for hook, attr in hooks.items():
        fn = getattr(mod, attr, None)
        if fn is None:
            continue
        if not callable(fn):
            raise TypeError(f"{module}.{attr} would be the study's {hook} hook but is a {type(fn).__name__}, not a function")
        found[hook] = fn
    return found


@dataclass
class Context:
    """What a study's hooks get besides the results table."""

    args: argparse.Namespace
    level: Level
    points: list[Point]
    caption: str
    results: list[tuple[FPEResult, int]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # for hooks that share work (not written)
    run: RunInfo | None = None  # the run's device, store and folders
    items: list[tuple[FPESpec, int]] = field(default_factory=list)  # (trial spec, trial index) of the whole sweep


@dataclass(frozen=True)
class Study:
    """A study as data plus hooks.

    Attributes:
        name: module name; the default output folder is data/results/<name>/.
        description: for --help and summary.json; give the study module's
            `__doc__` and its first two paragraphs are kept (title and what it shows).
        points: level name -> the sweep's configurations.
        figures: (results, stats, ctx) -> {file stem: figure}; pure functions of
            the tables except where a study shows weights (the gallery).
        extra_columns: optional (result, trial, condition, alpha, model result, ctx)
            -> extra columns of that model's results.csv row.
        summarise: optional (results, stats, ctx) -> extra summary.json fields.
        add_arguments: optional, adds study-specific options to the parser.
        validate: optional (parser, args) -> None; calls parser.error on a bad
            study-specific option (before any work).
        extra_metrics: extra results.csv columns to summarise per condition.
    """

    name: str
    description: str
    points: Callable[[str], list[Point]]
    figures: Callable[[pd.DataFrame, pd.DataFrame, Context], dict[str, go.Figure]]
    extra_columns: Callable[[FPEResult, int, str, int, ModelResult, Context], dict[str, Any]] | None = None
    summarise: Callable[[pd.DataFrame, pd.DataFrame, Context], dict[str, Any]] | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    validate: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None = None
    extra_metrics: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "description", "\n\n".join(self.description.strip().split("\n\n")[:2]))

    @classmethod
    def from_module(cls, module: str, name: str, **options: Any) -> Study:
        """The study a module defines: its `__doc__` as the description and every hook
        of `STUDY_HOOKS` the module has a function for; `options` add or override fields."""
        return cls(name=name, **{**module_hooks(module, STUDY_HOOKS), **options})

    # -- how the runner (`analyses.runner.run`) runs a study of Boolean FPE trials

    def parser(self) -> argparse.ArgumentParser:
        return build_parser(self)

    def prepare(self, ap: argparse.ArgumentParser, info: RunInfo) -> Context:
        args = info.args
        if args.trials is None:
            args.trials = LEVELS[info.level].trials
        level = apply_regime(ap, args, LEVELS[info.level], self.points(info.level))
        if self.validate:
            self.validate(ap, args)
        points = self.points(level.name)
        items = make_specs(points, level, args.trials, args.seed, splits=args.splits)
        config = {
            "study": self.name, "description": self.description, "level": level.name,
            "trials": args.trials, "seed": args.seed, "seeds": [args.seed + t for t in range(args.trials)],
            "shard": args.shard, "device": str(info.device), "data": str(args.data), "out": str(info.out),
            "points": [p.to_dict() for p in points],
            "task": {**TaskConfig().to_dict(), **level.task, "n_train": level.n_train, "n_test": level.n_test,
                     "n_clauses": "per point", "clause_size": "per point",
                     **({} if "n_vars" in level.task else {"n_vars": "C*k"})},
            "train": level.train.to_dict(),
            "regime": level_regime(level),
            "splits": args.splits or "the study's",
            "channel_threshold": 0.1,
            "study_options": study_options(args),
        }
        return Context(args=args, level=level, points=points, caption=caption_for(self, level, args, info.device),
                       config=config, run=info, items=items)

    def plan(self, ctx: Context) -> Plan:
        assert ctx.run is not None
        return trial_plan(ctx.items, ctx.run, f"{len(ctx.points)} configurations x {ctx.args.trials} trials")

    def table(self, units: list[tuple[FPESpec, int]], ctx: Context) -> pd.DataFrame:
        """One row per model (every model is stored by now: run_fpe loads them)."""
        assert ctx.run is not None
        results = run_fpe([s for s, _ in units], device=ctx.run.device, store=ctx.run.store)
        ctx.results = list(zip(results, [t for _, t in units]))
        rows = []
        for res, trial in tqdm(ctx.results, desc="measure", unit="trial", leave=False):
            x_test, y_test = res.boolean_task.test_data()  # one draw per trial, shared by its conditions
            for cond, alpha, mr in model_conditions(res):
                row = model_row(res, trial, cond, alpha, mr, x_test=x_test, y_test=y_test)
                if self.extra_columns:
                    row.update(self.extra_columns(res, trial, cond, alpha, mr, ctx))
                rows.append(row)
        df = pd.DataFrame(rows)
        if not df.empty:
            order = df.condition.map(condition_order)
            df = df.assign(_order=order).sort_values(CONFIG_KEYS + ["_order", "alpha", "trial"]).drop(columns="_order")
            df = df.reset_index(drop=True)
        return df

    def run_record(self, units: list[tuple[FPESpec, int]], ctx: Context) -> dict[str, Any]:
        provs = [r.provenance for res, _ in ctx.results for _, _, r in model_conditions(res)]
        provs += [res.parent.provenance for res, _ in ctx.results]
        backends = backends_of(provs)
        # Kernel builds (8- and 16-lane) differ by block only; a mix means two backends (kernel, torch, reference).
        return {"models": sum(1 + len(s.expansions) for s, _ in units), "backends": backends,
                "mixed_backends": len({b.split(" ")[0] for b in backends}) > 1}

    def finish(self, df: pd.DataFrame, ctx: Context) -> Outputs:
        restart = restart_reason(ctx.level.train)
        stats = condition_stats(df, BASE_METRICS + tuple(self.extra_metrics), restart=restart)
        curves = loss_curves(ctx.results)
        summary: dict[str, Any] = {"conditions": stats.to_dict("records"),
                                   "pooled": pooled_stats(df, restart=restart).to_dict("records")}
        head = stats[(stats.n_clauses == HEADLINE.n_clauses) & (stats.hidden == HEADLINE.hidden)
                     & (stats.clause_size == HEADLINE.clause_size)]
        summary["headline"] = head[["condition", "alpha", "n", "test_accuracy_mean", "test_accuracy_sem", "rel_improvement_mean",
                                    "rel_improvement_sem", "rel_improvement_p", "rel_improvement_q", "family_size",
                                    "degenerate", "not_applicable", "nnz_mean"]].to_dict("records") \
            if not head.empty else []
        summary["convergence"] = convergence(curves)
        if self.summarise:
            summary.update(self.summarise(df, stats, ctx))
        figs = dict(self.figures(df, stats, ctx))
        figs["loss_curves"] = loss_figure(curves, f"{self.name}: train loss (mean over trials)", ctx.caption)
        return Outputs(stats=stats, summary=summary, figures=figs, tables={"loss_curves": curves}, lines=_pooled_lines)


def build_parser(study: Study) -> argparse.ArgumentParser:
    ap = contract_parser(
        study.name, study.description,
        epilog=("Outputs: results.csv (one row per model), stats.csv, loss_curves.csv, summary.json and "
                "self-contained .html figures. Models come from the results store under --data, so a rerun "
                "trains nothing and an interrupted run resumes."),
        quick_help=(f"a small sweep that finishes in under 2 minutes ({LEVELS['quick'].n_train} train samples, "
                    f"{LEVELS['quick'].train.warmup}+{LEVELS['quick'].train.finetune} epochs)"),
        units="trials",
    )
    add_regime_arguments(ap, default_note="the run level's")
    ap.add_argument("--splits", default=None,
                    help=f"FPE splits at each of the study's alphas, comma-separated from the registered splits "
                         f"({','.join(SPLITS)}) (default: the study's; the alpha = 1 restart control always runs)")
    if study.add_arguments:
        study.add_arguments(ap)
    return ap


def caption_for(study: Study, level: Level, args: argparse.Namespace, device: torch.device) -> str:
    t = level.train
    task = {**TaskConfig().to_dict(), "n_vars": None, **level.task, "n_train": level.n_train}
    return (f"{study.name} · level={level.name} · trials={args.trials} (seeds {args.seed}..{args.seed + args.trials - 1}) · "
            f"k-literal DNF, {level.n_test} test samples<br>{regime_text(task, t)} "
            f"(dense baseline {t.epochs}) · device={device.type} · α=1 restart control · "
            f"error bars: ±1 s.e.m.; * q<0.05 (paired test vs dense, Benjamini-Hochberg over the configurations)")


def _pooled_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    if summary["run"].get("mixed_backends"):
        lines.append(f"warning: the models of this study were trained by different backends "
                     f"({', '.join(summary['run']['backends'])}); they agree to float rounding, not bit for bit")
    lines.append(f"{'condition':<14}{'n pairs':>8}{'accuracy':>18}{'rel. improvement':>22}{'p':>10}{'q':>10}   "
                 "(pooled over configurations, trials as the unit; q: Benjamini-Hochberg over the conditions)")
    for r in summary["pooled"]:
        n = r["n_pairs"]
        acc = mean_sem_text(r["test_accuracy_mean"], r["test_accuracy_sem"], n)
        rel = mean_sem_text(r["rel_improvement_mean"], r["rel_improvement_sem"], n, digits=2, scale=100, unit="%", sign=True)
        lines.append(f"{label(r['condition'], r['alpha']):<14}{n:>8}{acc:>18}{rel:>22}{p_text(r['p']):>10}{p_text(r['q']):>10}"
                     + (f"   not applicable: {r['not_applicable']}" if r.get("not_applicable") else ""))
    if summary.get("paper"):
        lines.append("paper comparison (verdicts from the tests named; q: Benjamini-Hochberg over the family):")
        lines += verdict_lines(summary["paper"])
    return lines




@dataclass
class JobContext:
    """What a JobStudy's hooks get: the parsed options, the run level (with the
    regime options applied: what the Boolean jobs train with), the device, the
    results store (jobs that train FPE trials store their models there through
    `fci.train.run_fpe`, shared with every other study), a caption line stating
    the run's config, and a scratch cache.

    `base_level` is the run level before the regime options, what jobs on other
    data (digits) train with; `task` the run's Boolean task family
    (`JobStudy.boolean_task`), None when the run trains none. `executor`: where
    `fci.train.run_fpe` calls of a study that runs on the driver train (pass
    `executor=ctx.executor`): a Dask cluster with --dask, else None (here)."""

    args: argparse.Namespace
    level: Level
    device: torch.device
    store: Store | None = None
    caption: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    base_level: Level | None = None
    task: TaskConfig | None = None
    executor: Executor | None = None
    run: RunInfo | None = None  # the run's store, folders and cluster

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
        cluster: how the jobs run with --dask. "workers": the batches of jobs a
            local run hands `run` one after another (`local_batches`) run on the
            cluster's workers, so each batch computes what it computes here; `run`
            must then use nothing but its jobs and the context (no store, no file
            that only this machine has). "driver": `run` runs here and its
            `fci.train.run_fpe` calls train on the cluster (`executor=ctx.executor`).
            None (the default): --dask is refused.
        cluster_note: why --dask is refused (cluster None), for its one-line error.
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
    cluster: str | None = None
    cluster_note: str = "its jobs are not declared safe to run on other machines"

    def __post_init__(self):
        object.__setattr__(self, "description", "\n\n".join(self.description.strip().split("\n\n")[:2]))
        if self.cluster not in (None, "workers", "driver"):
            raise ValueError(f"JobStudy {self.name}: cluster must be 'workers', 'driver' or None, got {self.cluster!r}")

    @classmethod
    def from_module(cls, module: str, name: str, **options: Any) -> JobStudy:
        """The study a module defines: its `__doc__` as the description and every hook
        of `JOB_HOOKS` the module has a function for (`run` from `run_jobs`, `stats`
        from `stats_hook`); `options` add or override fields."""
        return cls(name=name, **{**module_hooks(module, JOB_HOOKS), **options})

    def job_config(self, job: dict[str, Any]) -> dict[str, Any]:
        """The store config of a job."""
        return {"kind": f"{self.name}-job", **job}

    # -- how the runner (`analyses.runner.run`) runs a study of jobs

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


#: A local run claims a quarter of the pending units at a time (`fci.store.Store.share`'s default batch).
LOCAL_BATCHES = 4


def local_batches(todo: Sequence[Any]) -> list[list[Any]]:
    """The batches in which a local run, alone on its store, hands the pending units
    `todo` to a study: `LOCAL_BATCHES` consecutive slices of equal size (the last shorter)."""
    return list(chunked(todo, math.ceil(len(todo) / LOCAL_BATCHES))) if todo else []


def run_job_batch(hook: Callable[..., Iterable[tuple[Any, Any, Any]]], jobs: list[dict[str, Any]],
                  ctx: JobContext) -> list[tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]]:
    """A JobStudy's `run` hook over one batch of jobs, where an executor runs it (a
    Dask worker): every (job, rows, tensors) it yields, for the driver to store."""
    return [(job, rows, {k: v.detach().cpu().contiguous() for k, v in tensors.items()}) for job, rows, tensors in hook(jobs, ctx)]


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
        given = [fl for fl, f in regime_flags("task").items() if f in task_set] + \
            [fl for fl, f in regime_flags("train").items() if f in train_set]
        if given:
            ap.error(f"{given[0]} applies to {study.regime_scope}, and this run trains no Boolean task")


def _load_rows(store: Store, key: str) -> list[dict[str, Any]]:
    entry = store.load(key)
    rows = entry.metrics.get("rows")
    if not isinstance(rows, list):
        raise StoreError(f"store entry {entry.path} has no result rows (metrics.json lacks a 'rows' list)")
    return rows


def _prepare(study: JobStudy, ap: argparse.ArgumentParser, info: RunInfo) -> JobContext:
    args = info.args
    if args.trials is None:
        args.trials = LEVELS[info.level].trials
    if info.dask is not None and study.cluster is None:
        ap.error(f"--dask: {study.name} cannot run on a Dask cluster: {study.cluster_note}")
    _check_regime(study, ap, args)  # the study's own checks and its Boolean task: before any work
    level = regime_level(ap, args)
    task = study.boolean_task(args, level) if study.boolean_task is not None else None
    base = LEVELS[info.level]
    # The executor is started after planning: `produce` finds it in `ctx.run`.
    ctx = JobContext(args=args, level=level, device=info.device, store=info.store, base_level=base, task=task, run=info)
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
        executor = ctx.run.executor if ctx.run is not None else None  # started by the runner after planning
        ctx.executor = executor if study.cluster == "driver" else None
        bar = tqdm(total=len(todo), desc=study.name, unit="job", disable=not todo)
        results: Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]]
        if executor is not None and study.cluster == "workers":
            # The batches a local run would hand `run`, each computed on a worker; stored here as each returns.
            portable = dataclasses.replace(ctx, store=None, executor=None, run=None)
            calls = [(batch,) for batch in local_batches(todo)]
            done = executor.run(functools.partial(run_job_batch, importable(study.run)), calls, shared={"ctx": portable},
                                name=f"fci-{study.name}")
            results = (r for _, out in done for r in out)
        else:
            results = study.run(todo, ctx)
        for job, rows, tensors in results:
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
