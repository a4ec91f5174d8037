"""The one study runner: every `python -m analyses.<name>` runs through `run`.

A study says *what* it runs; this module says *how*, once for all of them:

1. parse and check every option before any work (a bad value exits with status
   2 and one line naming the flag);
2. plan the units of work (FPE trials, or jobs), keep the `--shard I/N` slice;
3. quarantine corrupt store entries among the units' keys (one warning each);
4. produce the units not in the store, split with any other process on the
   same store by claims (`fci.store.Store.share`), here or on a Dask cluster
   (`--dask`: the workers train, this process writes); each finished unit is
   written atomically, so an interrupted run resumes where it stopped;
5. build the results table from the store, and write `results.csv` (the
   shard's `results.shard-I-of-N.csv` with `--shard`), `stats.csv`,
   `summary.json` (config, environment, run record, statistics, the paper
   claims with the regime each was checked in) and the figures.

A study kind implements `StudyKind`: `analyses.kinds.Study` (Boolean FPE
trials) and `analyses.kinds.JobStudy` (other units of work) are the two.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import pandas as pd
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from analyses.levels import LEVELS
from analyses.style import write_figure
from analyses.tables import CORRECTION
from fci.cli import (
    DASK_HELP,
    MANY_TRIALS,
    OneLineParser,
    check_dask,
    check_data,
    check_plan,
    check_writable,
    regime_dests,
    run_name,
    start_dask,
)
from fci.io import environment, write_csv, write_json
from fci.models.base import resolve_device
from fci.sharding import parse_shard, shard_items
from fci.store import Store, graceful, resolve_claim_ttl
from fci.stats import ALPHA
from fci.train.executors import DaskAddress, Executor

__all__ = ["Plan", "Outputs", "StudyKind", "RunInfo", "run", "study_main", "REGIME_MAP", "CORRECTION", "command_line", "load_average"]

log = logging.getLogger(__name__)

#: Where each study's `paper` entries point: the regime map says in which regimes FPE beats dense.
REGIME_MAP = ("python -m analyses.regimes (summary.json `answer`; docs/analyses/regimes.png): the regimes (output mode, "
              "training length, optimiser, load) in which random- and clause-split FPE beat dense, with p and "
              f"Benjamini-Hochberg q over the grid's cells (q < {ALPHA:g})")


@dataclass
class RunInfo:
    """What every study's run has, checked before any work: the options, the
    level, the device, the output folder, the store and the shard; with --dask, the
    cluster's address and, once all checks pass, its executor (None: train here)."""

    args: argparse.Namespace
    level: str
    device: torch.device
    out: Path
    store: Store
    shard: tuple[int, int] | None
    dask: DaskAddress | None = None
    executor: Executor | None = None


@dataclass
class Plan:
    """A run's units of work.

    Attributes:
        units: the units (FPE trials, jobs), in the order results are reported.
        keys: a unit's store keys (the entries producing it writes).
        produce: make the given units (train, measure, store); called under claims.
        shard_key: a unit's identity for `--shard` (a JSON-able config).
        unit: what a unit is called in logs and in the run record ("trials", "jobs").
        describe: one log line about the plan (sizes), without the store counts.
        cost: optional, units -> their `fci.train.PlanCost`, checked before any work
            (a plan of days, or one past the machine's memory or disk, needs --yes).
    """

    units: list[Any]
    keys: Callable[[Any], list[str]]
    produce: Callable[[list[Any]], None]
    shard_key: Callable[[Any], Any]
    unit: str = "jobs"
    describe: str = ""
    cost: Callable[[list[Any]], Any] | None = None


@dataclass
class Outputs:
    """What a study adds to a full (unsharded) run's outputs.

    Attributes:
        stats: stats.csv, the per-condition statistics.
        summary: extra summary.json fields (put the comparison with the paper under "paper").
        figures: {file stem: figure}, each written as `<stem>.html` (+ `.plotly.json`).
        tables: extra CSVs, {file stem: table} (e.g. loss_curves).
        lines: printed after the run line (the study's headline numbers), or a
            function of the finished summary.json that gives them.
    """

    stats: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, go.Figure] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    lines: list[str] | Callable[[dict[str, Any]], list[str]] = field(default_factory=list)


class StudyKind(Protocol):
    """How a kind of study plugs into `run`."""

    @property
    def name(self) -> str: ...

    def parser(self) -> argparse.ArgumentParser: ...

    def prepare(self, ap: argparse.ArgumentParser, run: RunInfo) -> Any:
        """Check the study's own options (via `ap.error`) and return its context,
        which has `.config` (summary.json's "config") and `.caption`."""
        ...

    def plan(self, ctx: Any) -> Plan: ...

    def table(self, units: list[Any], ctx: Any) -> pd.DataFrame:
        """results.csv: every unit's rows, all of them in the store by now."""
        ...

    def run_record(self, units: list[Any], ctx: Any) -> dict[str, Any]:
        """Extra fields of summary.json's "run" (e.g. the backends that trained the models)."""
        ...

    def finish(self, df: pd.DataFrame, ctx: Any) -> Outputs: ...


def run(study: StudyKind, argv: Sequence[str] | None = None) -> int:
    """Parse, check, plan, produce (or load), tabulate and write; returns 0. Ctrl-C,
    SIGTERM, a full disk or a store refusal end it in one line (`fci.store.graceful`)."""
    with graceful(f"python -m analyses.{study.name}"):
        return _run(study, argv)


class StudyMain(Protocol):
    """A study module's `main`: `main()` reads the command line, `main(argv)` the given one."""

    def __call__(self, argv: Sequence[str] | None = None) -> int: ...


def study_main(study: StudyKind) -> StudyMain:
    """A study module's `main(argv=None)`: runs `study` on `argv` (the command line
    when None) through `run`; returns the exit status."""

    def main(argv: Sequence[str] | None = None) -> int:
        return run(study, argv)

    main.__doc__ = f"python -m analyses.{study.name} [options]: run the study on `argv`; returns the exit status."
    return main


def _run(study: StudyKind, argv: Sequence[str] | None) -> int:
    """Every check before any work, then the cluster (with --dask), then the work."""
    ap = study.parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    info = check_contract(ap, args, study.name)
    ctx = study.prepare(ap, info)  # the study's own checks: still before any work
    check_folders(ap, info)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t_start = time.perf_counter()
    load_start = load_average()
    plan = study.plan(ctx)
    units = shard_items(plan.units, info.shard, key=plan.shard_key)
    if plan.cost is not None:
        check_plan(ap, plan.cost(units), info.device.type, Path(args.data), args.yes)
    if info.dask is not None:  # every check has passed: start (or reach) the cluster
        info.executor = start_dask(ap, info.dask, packages=("fci", "analyses"))
    try:
        return _produce(study, args, argv, info, ctx, plan, units, t_start, load_start)
    finally:
        if info.executor is not None:
            info.executor.close()


def _produce(study: StudyKind, args: argparse.Namespace, argv: list[str], info: RunInfo, ctx: Any, plan: Plan,
             units: list[Any], t_start: float, load_start: Any) -> int:
    """Produce (or load) the units, tabulate and write, once every check has passed."""
    store = info.store
    groups = [plan.keys(u) for u in units]
    store.heal(k for g in groups for k in g)  # a corrupt entry is quarantined (one warning) and produced again
    stored = sum(all(store.has(k) for k in g) for g in groups)
    log.info("%s: %s%d %s%s; %d already in %s", study.name, f"{plan.describe} -> " if plan.describe else "", len(units),
             plan.unit, f" (shard {args.shard})" if info.shard else "", stored, store.dir)
    t0 = time.perf_counter()
    # Claims split the work with other processes on this store; a cluster gets every unit at once, to fill its workers.
    ran = store.share(groups, lambda idx: plan.produce([units[i] for i in idx]), batch=len(groups) if info.executor else None)
    train_s = time.perf_counter() - t0
    missing = [u for u, g in zip(units, groups) if not all(store.has(k) for k in g)]
    if missing:
        raise RuntimeError(f"{study.name}: {len(missing)} {plan.unit} were not produced, e.g. {plan.shard_key(missing[0])}")

    df = study.table(units, ctx)
    n, u = len(units), plan.unit
    summary: dict[str, Any] = {"config": ctx.config, "environment": environment(info.device),
                               "run": {"command": command_line(study.name, argv), "load_average_start": load_start,
                                       u: n, f"trained_{u}": len(ran), f"loaded_{u}": n - len(ran),
                                       "train_seconds": round(train_s, 2), **study.run_record(units, ctx)}}
    if info.executor is not None:
        summary["run"]["dask"] = {"address": args.dask, "worker_threads": info.executor.parallelism}
    if info.shard:
        csv = write_shard(df, summary, info.out, info.shard, t_start)
        print(f"{study.name}: shard {args.shard}: {n} {u} ({len(ran)} produced here) -> {csv} "
              "(partial; run without --shard to write the figures)")
        return 0

    outs = study.finish(df, ctx)
    summary["partial"] = False
    summary["correction"] = CORRECTION  # every family of tests a study reports is corrected by it
    summary.update(outs.summary)
    for claim in summary.get("paper") or []:  # every claim names the regime it was checked in, and the map
        if isinstance(claim, dict):
            claim.setdefault("regime", " · ".join(t.strip() for t in ctx.caption.replace("<br>", " · ").split(" · ")))
            claim.setdefault("regime_map", REGIME_MAP)
    out = info.out
    files = [write_csv(df, out / "results.csv"), write_csv(outs.stats, out / "stats.csv")]
    files += [write_csv(t, out / f"{name}.csv") for name, t in outs.tables.items()]
    for name, fig in tqdm(outs.figures.items(), desc="figures", unit="fig", leave=False):
        files.append(write_figure(fig, out / f"{name}.html"))
    summary["figures"] = sorted(f"{name}.html" for name in outs.figures)
    summary["run"]["total_seconds"] = round(time.perf_counter() - t_start, 2)
    summary["run"]["load_average_end"] = load_average()
    files.append(write_json(summary, out / "summary.json"))
    run_rec = summary["run"]
    verb = "trained" if u == "trials" else "run"
    print(f"\n{study.name}: {n} {u} ({len(ran)} {verb}, {n - len(ran)} from the store), {run_rec['total_seconds']:.0f}s")
    for line in outs.lines(summary) if callable(outs.lines) else outs.lines:
        print(line)
    print(f"wrote {', '.join(p.name for p in files)} to {out}")
    return 0


def command_line(name: str, argv: Sequence[str]) -> str:
    """The command that made a run, as a user would type it (summary.json's `run.command`)."""
    return shlex.join(["python", "-m", f"analyses.{name}", *argv])


def load_average() -> float | None:
    """The machine's one-minute load average (None where the OS does not say): run
    times on a shared machine mean little without it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def contract_parser(name: str, description: str, epilog: str, quick_help: str, units: str) -> argparse.ArgumentParser:
    """The options every study takes (`units`: what --shard slices, e.g. "trials")."""
    ap = OneLineParser(prog=f"python -m analyses.{name}", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # seconds-long runs for the tests
    ap.add_argument("--out", default=None, help=f"output folder (default: <data>/results/{name}/<run>/, where <run> is "
                    "'default', or the level and the options set, e.g. 'quick-seed=3')")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default: auto)")
    ap.add_argument("--trials", type=int, default=None,
                    help=f"trials per configuration (default: {LEVELS['full'].trials}; --quick: {LEVELS['quick'].trials}); "
                         "trial t uses seed S+t")
    ap.add_argument("--seed", type=int, default=0, help="base seed S (default: 0)")
    ap.add_argument("--shard", default=None, metavar="I/N",
                    help=f"run only the I-th of N disjoint deterministic slices of the {units} and write partial results; "
                         "a final run without --shard collects everything from the store and writes the figures")
    ap.add_argument("--data", default="data", help="results store root (default: data)")
    ap.add_argument("--claim-ttl", type=float, default=None, metavar="SECONDS",
                    help="how long another process's claim on a model holds without being refreshed before this run "
                         "takes the work over (default: $FCI_CLAIM_TTL, else 300)")
    ap.add_argument("--dask", default=None, metavar="ADDRESS", help=DASK_HELP)
    ap.add_argument("--yes", action="store_true",
                    help="start a run whose plan is very large (days of training, or past the machine's memory or disk); "
                         f"without it such a plan, or more than {MANY_TRIALS:,} trials, is refused")
    return ap


#: The options every study takes; the rest are the study's own (recorded in summary.json).
CONTRACT_OPTIONS = frozenset({"quick", "tiny", "out", "device", "trials", "seed", "shard", "data", "dask", "splits",
                              "claim_ttl", "yes",
                              *regime_dests()})


def study_options(args: argparse.Namespace) -> dict[str, Any]:
    """The study's own options (everything but the common contract's)."""
    return {k: v for k, v in vars(args).items() if k not in CONTRACT_OPTIONS}


def write_shard(df: pd.DataFrame, summary: dict[str, Any], out: Path, shard: tuple[int, int], t_start: float) -> Path:
    """Write a shard's partial outputs (`results.shard-I-of-N.csv`, and
    `summary.shard-I-of-N.json` marked partial); returns the CSV's path."""
    suffix = f".shard-{shard[0]}-of-{shard[1]}"
    summary["partial"] = True
    csv = write_csv(df, out / f"results{suffix}.csv")
    summary["run"]["total_seconds"] = round(time.perf_counter() - t_start, 2)
    write_json(summary, out / f"summary{suffix}.json")
    return csv


def check_contract(ap: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> RunInfo:
    """Check the options every study takes (level, device, trials, shard, folders);
    a bad one exits with a message naming it. The folders are checked for
    writing by the runner after the study's own checks, before any work; a
    study fills in its own default --trials (`args.trials` None)."""
    level = "tiny" if args.tiny else "quick" if args.quick else "full"
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        ap.error(f"--device: {e}")
    if args.trials is not None and args.trials < 1:
        ap.error(f"--trials must be >= 1, got {args.trials}")
    if args.trials is not None and args.trials > MANY_TRIALS and not args.yes:
        ap.error(f"--trials {args.trials:,} is more than {MANY_TRIALS:,} trials per configuration; rerun with --yes to plan it")
    try:
        shard = parse_shard(args.shard)
    except ValueError as e:
        ap.error(str(e))
    data = check_data(ap, args.data)
    dask = check_dask(ap, args.dask)
    out = Path(args.out) if args.out is not None else data / "results" / name / run_name(ap, args, level)
    try:
        ttl = resolve_claim_ttl(args.claim_ttl, "--claim-ttl")
    except ValueError as e:
        ap.error(str(e))
    return RunInfo(args=args, level=level, device=device, out=out, store=Store(data, claim_ttl=ttl), shard=shard, dask=dask)


def check_folders(ap: argparse.ArgumentParser, info: RunInfo) -> None:
    """--data and --out must be writable (checked before any work)."""
    for flag, folder in (("--data", Path(info.args.data)), ("--out", info.out)):
        check_writable(ap, flag, folder)
