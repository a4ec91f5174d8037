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
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from analyses._common import (Level, _validate, contract_parser, environment, jsonable, study_options, write_csv, write_figure,
                               write_json, write_shard)
from analyses._columns import canonical_row
from fci.sharding import shard_items
from fci.store import Store, StoreError, config_key

__all__ = ["JobStudy", "JobContext", "run_job_study", "build_job_parser", "chunked", "comma_list", "check_alphas"]

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """What a JobStudy's hooks get: the parsed options, the run level, the
    device, a caption line stating the run's config, and a scratch cache."""

    args: argparse.Namespace
    level: Level
    device: torch.device
    caption: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)


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

    def __post_init__(self):
        object.__setattr__(self, "description", "\n\n".join(self.description.strip().split("\n\n")[:2]))

    def job_config(self, job: dict[str, Any]) -> dict[str, Any]:
        """The store config of a job."""
        return {"kind": f"{self.name}-job", **job}


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
    if study.add_arguments:
        study.add_arguments(ap)
    return ap


def _load_rows(store: Store, key: str) -> list[dict[str, Any]]:
    entry = store.load(key)
    rows = entry.metrics.get("rows")
    if not isinstance(rows, list):
        raise StoreError(f"store entry {entry.path} has no result rows (metrics.json lacks a 'rows' list)")
    return rows


#: Where each study's `paper` entries point: the regime map says in which regimes FPE beats dense.
REGIME_MAP = ("python -m analyses.regimes (summary.json `answer`; docs/analyses/regimes.png): the regimes (output mode, "
              "training length, optimiser, load) in which random- and clause-split FPE beat dense, with p")


def run_job_study(study: JobStudy, argv: Sequence[str] | None = None) -> int:
    """Parse, validate, run (or load) every job, tabulate and write; returns 0."""
    ap = build_job_parser(study)
    args = ap.parse_args(argv)
    level, device, out, store, shard = _validate(ap, args, study)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t_start = time.perf_counter()
    ctx = JobContext(args=args, level=level, device=device)
    ctx.caption = study.caption(ctx) if study.caption else f"{study.name} · level={level.name} · trials={args.trials}"

    jobs = study.jobs(ctx)
    jobs = shard_items(jobs, shard, key=study.job_config)
    keys = [config_key(study.job_config(j)) for j in jobs]
    store.heal(keys)  # a corrupt entry is quarantined (one warning) and rerun
    todo = [j for j, k in zip(jobs, keys) if not store.has(k)]
    log.info("%s: %d jobs%s; %d already in %s", study.name, len(jobs), f" (shard {args.shard})" if shard else "",
             len(jobs) - len(todo), store.dir)
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc=study.name, unit="job", disable=not todo)

    def produce(idx: list[int]) -> None:
        for job, rows, tensors in study.run([jobs[i] for i in idx], ctx):
            store.save(study.job_config(job), {"rows": jsonable(rows)}, tensors)
            bar.update(1)

    ran = store.share([[k] for k in keys], produce)  # claims split the jobs with other processes on this store
    bar.close()
    train_s = time.perf_counter() - t0
    missing = [j for j, k in zip(jobs, keys) if not store.has(k)]
    if missing:
        raise RuntimeError(f"{study.name}: {len(missing)} jobs were not produced by the study's run hook, e.g. {missing[0]}")

    rows = []
    for job, key in zip(jobs, keys):
        for r in _load_rows(store, key):
            rows.append({**{k: v for k, v in job.items() if not isinstance(v, (dict, list))}, **canonical_row(r)})
    df = pd.DataFrame(rows)
    if "seed" in df.columns and "trial" not in df.columns:  # trial t uses seed S+t in every study
        df.insert(int(df.columns.get_loc("seed")), "trial", df["seed"] - args.seed)
    ctx.config = {
        "study": study.name, "description": study.description, "level": level.name, "trials": args.trials,
        "seed": args.seed, "seeds": [args.seed + t for t in range(args.trials)], "shard": args.shard,
        "device": str(device), "data": str(args.data), "out": str(out), "jobs": len(jobs),
        "study_options": study_options(args),
        "caption": ctx.caption,
    }
    summary: dict[str, Any] = {"config": ctx.config, "environment": environment(device)}
    summary["run"] = {"jobs": len(jobs), "trained_jobs": len(ran), "loaded_jobs": len(jobs) - len(ran),
                      "train_seconds": round(train_s, 2)}
    if shard:
        csv = write_shard(df, summary, out, shard, t_start)
        print(f"{study.name}: shard {args.shard}: {len(jobs)} jobs ({len(ran)} run) -> {csv} "
              "(partial; run without --shard to write the figures)")
        return 0

    stats = study.stats(df, ctx)
    summary["partial"] = False
    summary["stats"] = stats.to_dict("records")
    if study.summarise:
        summary.update(study.summarise(df, stats, ctx))
    for claim in summary.get("paper") or []:  # every claim names the regime it was checked in, and the map
        if isinstance(claim, dict):
            claim.setdefault("regime", " · ".join(t.strip() for t in ctx.caption.replace("<br>", " · ").split(" · ")))
            claim.setdefault("regime_map", REGIME_MAP)
    files = [write_csv(df, out / "results.csv"), write_csv(stats, out / "stats.csv")]
    figs = study.figures(df, stats, ctx)
    for name, fig in tqdm(figs.items(), desc="figures", unit="fig", leave=False):
        files.append(write_figure(fig, out / f"{name}.html"))
    summary["figures"] = sorted(f"{n}.html" for n in figs)
    summary["run"]["total_seconds"] = round(time.perf_counter() - t_start, 2)
    files.append(write_json(summary, out / "summary.json"))
    run = summary["run"]
    print(f"\n{study.name}: {run['jobs']} jobs ({run['trained_jobs']} run, {run['loaded_jobs']} from the store), "
          f"{run['total_seconds']:.0f}s")
    if study.print_summary:
        for line in study.print_summary(summary, ctx):
            print(line)
    print(f"wrote {', '.join(p.name for p in files)} to {out}")
    return 0
