"""`fci` (or `python -m fci`): train one configuration (dense, clause-split and random-split
FPE) for several trials as one stack, store the models, print a summary table
and write it, with the full configuration, to summary.json."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fci import stats
from fci.cli import (
    DASK_HELP,
    MANY_TRIALS,
    OneLineParser,
    add_config_arguments,
    build_task,
    build_train,
    check_dask,
    check_data,
    check_plan,
    check_writable,
    config_values,
    mean_sem_text,
    parse_splits,
    regime_record,
    regime_text,
    run_name,
    start_dask,
)
from fci.fpe.splits import SPLITS
from fci.io import environment, write_json
from fci.metrics import (
    clause_mean_capacity,
    cosine_interference,
    feature_capacity,
    relative_improvement,
    trial_stats,
)
from fci.models.base import resolve_device
from fci.readings import FUNCTIONAL, TEXT_KEYS, measure_readings
from fci.store import Store, graceful, resolve_claim_ttl
from fci.tasks import TaskConfig
from fci.train import FPESpec, ModelResult, TrainConfig, backends_of, plan_cost, run_fpe

SUBCOMMANDS = {
    "study": "run a study: fci study NAME [options] (the same as python -m analyses.NAME); without NAME, list them",
    "explore": "open the explorer: fci explore [--data DIR] [--port P] (the same as python -m app)",
    "store": "check or repair a results store: fci store verify|repair DIR (the same as python -m fci.store)",
}


def build_parser() -> argparse.ArgumentParser:
    prog = "python -m fci" if Path(sys.argv[0]).name == "__main__.py" else "fci"
    ap = OneLineParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="subcommands:\n" + "\n".join(f"  fci {k:<8} {v}" for k, v in SUBCOMMANDS.items()))
    add_config_arguments(ap, TaskConfig, "task (SPEC §1)", defaults=TaskConfig())
    add_config_arguments(ap, TrainConfig, "training (SPEC §7)", defaults=TrainConfig())
    m = ap.add_argument_group("model and FPE (SPEC §2-3)")
    m.add_argument("--hidden", type=int, default=8, help="hidden neurons of the dense parent (default: 8)")
    m.add_argument("--alpha", type=int, default=2, help="expansion factor (default: 2)")
    m.add_argument("--splits", default="clause,random",
                   help=f"comma-separated, from {','.join(SPLITS)} (default: clause,random)")
    r = ap.add_argument_group("run")
    r.add_argument("--trials", type=int, default=5, help="trials; trial t uses seed + t (default: 5)")
    r.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default: auto)")
    r.add_argument("--data", default="data", help="results store root (default: data)")
    r.add_argument("--dask", default=None, metavar="ADDRESS", help=DASK_HELP)
    r.add_argument("--out", default=None, help="folder for summary.json (default: <data>/results/fci/<run>/, where <run> "
                   "is 'default' or the options set, e.g. 'seed=3-hidden=16')")
    r.add_argument("--claim-ttl", type=float, default=None, metavar="SECONDS",
                   help="how long another process's claim on a model holds without being refreshed before this run "
                        "takes the work over (default: $FCI_CLAIM_TTL, else 300)")
    r.add_argument("--yes", action="store_true",
                   help="start a run whose plan is very large (days of training, or past the machine's memory or disk)")
    r.add_argument("--threshold", type=float, default=None,
                   help="per-neuron relative sign threshold in [0, 1] for static decoding (default: auto, each neuron's "
                        "own two-cluster split)")
    return ap


def measure(model, task, x_test, inputs, threshold: float | None) -> dict[str, Any]:
    """Interference (SPEC §4) and every reading (SPEC §5) of one trained model, verified
    on x_test (N, n): `fci.readings.measure_readings` (the static channel reading beside
    the best constant, the certified static reading, `decode_function` on uniform inputs
    and on the task's unlabeled training ``inputs`` (M, n), the true-formula agreement and
    each reading's gap to it)."""
    W1 = model.effective_weights()[0][0]
    return {
        "capacity": clause_mean_capacity(feature_capacity(W1), task.clauses),
        "cosine": cosine_interference(W1),
        **measure_readings(model, task, x_test, inputs, threshold="auto" if threshold is None else threshold),
    }


def _texts(values) -> str:
    """The distinct values of a text column over trials, with counts when they differ: `dnf` or `dnf 2, cnf 1`."""
    vals = [str(v) for v in values]
    kinds = sorted(set(vals), key=vals.index)
    return kinds[0] if len(kinds) == 1 else ", ".join(f"{k} {vals.count(k)}" for k in kinds)


def _mean_sem(values) -> str:
    """`mean ± s.e.` over trials; `mean (n=1)` for one trial, `n/a` where the
    metric is undefined (cosine interference of a layer with < 2 non-zero neurons)."""
    v = np.asarray(values, dtype=float)
    s = trial_stats(v[np.isfinite(v)])
    return mean_sem_text(s["mean"], s["sem"], int(s["n"]))


def _tables(threshold: float | None) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """The printed tables: (title, measure keys, column heads); every agreement is on the test inputs unless
    its head names another distribution."""
    tau = "auto" if threshold is None else threshold
    on = "agreement with the network on the test inputs (the task's input distribution); mean ± s.e. over trials"
    uniform, given = FUNCTIONAL["function"], FUNCTIONAL["inputs_function"]
    return (
        (f"static readings from the weights alone: channels (decode, threshold {tau}) beside the best constant output "
         f"(always 1 or always 0 per output), and certified (decode(method='certified')); {on}",
         ("circuit_agreement", "constant_agreement", "decode_f1", "certified_agreement", "certified_coverage",
          "certified_coverage_exact", "certified_proved", "certified_seconds"),
         ("channels", "best constant", "channels F1", "certified", "coverage", "coverage exact", "outputs proved",
          "certified s")),
        (f"what the network computes (decode_function), read on {uniform}: {on}; its agreement on its own inputs, the "
         "form and term length it chose, clause F1 and exact F1, warnings, seconds",
         ("function_agreement", "function_own_agreement", "function_form", "function_max_literals", "function_f1",
          "function_exact_f1", "function_warnings", "function_seconds"),
         ("agreement", "on uniform", "form", "max literals", "F1", "exact F1", "warnings", "seconds")),
        (f"the same, read on {given} (inputs=, never labels), where the network is used",
         ("inputs_function_agreement", "inputs_function_own_agreement", "inputs_function_form",
              "inputs_function_max_literals", "inputs_function_f1", "inputs_function_exact_f1", "inputs_function_warnings",
              "inputs_function_seconds"),
         ("agreement", "on task inputs", "form", "max literals", "F1", "exact F1", "warnings", "seconds")),
        ("true-formula agreement (the task's formula against the network on the test inputs; for one output, the test "
         "accuracy) and each reading's gap, reading - reference: a reference, not a bound (a reading may exceed it)",
         ("true_formula_agreement", "certified_gap", "function_gap", "inputs_function_gap"),
         ("true-formula agr.", "certified gap", "uniform gap", "task-inputs gap")),
        ("interference (mean ± s.e. over trials)", ("capacity", "cosine"), ("feature capacity", "cosine interf.")),
    )


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], list[FPESpec]]:
    """Check every option before any work; a bad one exits (status 2) with one line naming it."""
    for flag, value, low in (("--clauses", args.clauses, 1), ("--clause-size", args.clause_size, 1),
                             ("--hidden", args.hidden, 1), ("--alpha", args.alpha, 1), ("--trials", args.trials, 1),
                             ("--train-samples", args.train_samples, 1), ("--test-samples", args.test_samples, 1),
                             ("--batch-size", args.batch_size, 1), ("--warmup", args.warmup, 0),
                             ("--finetune", args.finetune, 0)):
        if value < low:
            ap.error(f"{flag} must be an integer >= {low}, got {value}")
    if args.trials > MANY_TRIALS and not args.yes:
        ap.error(f"--trials {args.trials:,} is more than {MANY_TRIALS:,}; rerun with --yes to plan it")
    if args.vars is not None and args.vars < 1:
        ap.error(f"--vars must be an integer >= 1, got {args.vars}")
    if args.threshold is not None and not (math.isfinite(args.threshold) and 0 <= args.threshold <= 1):
        ap.error(f"--threshold is a fraction of each neuron's max|w| in [0, 1] (omit it for 'auto'), got {args.threshold}")
    splits = parse_splits(ap, args.splits)
    task = build_task(ap, **config_values(args, TaskConfig))
    train = build_train(ap, TrainConfig(), config_values(args, TrainConfig))
    n_vars = task.resolved_n_vars
    if args.alpha > n_vars:
        ap.error(f"--alpha must lie in [1, n={n_vars}] (a parent neuron has n inputs to deal to its alpha children; "
                 f"with more children than inputs some are always empty), got {args.alpha}")
    try:
        args.device = resolve_device(args.device)
    except ValueError as e:
        ap.error(f"--device: {e}")
    data = check_writable(ap, "--data", check_data(ap, args.data))
    run = run_name(ap, args, "full")
    args.out = str(check_writable(ap, "--out", data / "results" / "fci" / run if args.out is None else args.out))
    args.dask_address = check_dask(ap, args.dask)  # after the run's name, which --dask does not change
    specs = [
        FPESpec(task=task, hidden=args.hidden, seed=args.seed + t, expansions=tuple((s, args.alpha) for s in splits), train=train)
        for t in range(args.trials)
    ]
    check_plan(ap, plan_cost(specs), args.device.type, data, args.yes)
    try:
        args.claim_ttl = resolve_claim_ttl(args.claim_ttl, "--claim-ttl")
    except ValueError as e:
        ap.error(str(e))
    return splits, specs


def condition_summary(name: str, split: str | None, alpha: int, results: list[ModelResult], measured: list[dict[str, float]],
                      dense_accuracy: np.ndarray, resolution: float | None = None) -> dict[str, Any]:
    """summary.json's record of one condition over trials: test accuracy mean, s.e.m.
    and n; for a child, the relative improvement over its trial's dense baseline
    (mean, s.e.m.) and the paired test of accuracy against dense (`fci.stats.paired_test`,
    guarded by the accuracy's `resolution`, 1 / (test samples x outputs): its p,
    test and reason); nnz; and every printed measurement's mean, s.e.m. and n
    (finite trials only; a text one, such as a reading's distribution or form, per trial)."""
    acc = np.array([m.test_accuracy for m in results], dtype=float)
    s = trial_stats(acc)
    rec: dict[str, Any] = {"condition": name, "split": split, "alpha": alpha, "n": int(s["n"]),
                           "test_accuracy_mean": s["mean"], "test_accuracy_sem": s["sem"],
                           "test_accuracy": acc.tolist(), "nnz": sorted({int(m.nnz) for m in results})}
    if split is not None:
        ri = trial_stats(np.asarray(relative_improvement(acc, dense_accuracy), dtype=float))
        test = stats.paired_test(acc, dense_accuracy, resolution=resolution)
        rec.update(rel_improvement_mean=ri["mean"], rel_improvement_sem=ri["sem"], paired_p=test.p, paired_test=test.test,
                   paired_reason=test.reason, paired_mean_diff=test.mean_diff, n_pairs=int(test.n))
    for key in measured[0] if measured else ():
        if key in TEXT_KEYS:  # a distribution's name, a form: per trial
            rec[key] = [m[key] for m in measured]
            continue
        v = np.array([m[key] for m in measured], dtype=float)
        ms = trial_stats(v[np.isfinite(v)])
        rec[key] = {"mean": ms["mean"], "sem": ms["sem"], "n": int(ms["n"])}
    return rec


def dispatch(argv: list[str]) -> int | None:
    """Run a subcommand (`fci study`, `fci explore`, `fci store`); None when `argv` names none."""
    if not argv or argv[0] not in SUBCOMMANDS:
        return None
    cmd, rest = argv[0], argv[1:]
    if cmd == "study":
        from analyses.__main__ import main as study_main

        return study_main(rest)
    if cmd == "explore":
        from app.__main__ import main as explore_main

        return explore_main(rest)
    from fci.store import main as store_main

    return store_main(rest)


@graceful("python -m fci")
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    status = dispatch(argv)
    if status is not None:
        return status
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # before the checks: the plan's warning is one
    splits, specs = validate(ap, args)
    device = args.device
    store = Store(args.data, claim_ttl=args.claim_ttl)
    executor = start_dask(ap, args.dask_address) if args.dask_address is not None else None  # after every check
    t0 = time.perf_counter()
    # run_fpe heals the store (a corrupt entry is quarantined with one warning and retrained) and claims
    # its trials there, so two processes on one store split the work; with --dask the cluster trains, this process stores
    try:
        results = run_fpe(specs, device=device, progress=True, store=store, executor=executor)
    finally:
        if executor is not None:
            executor.close()
    ran = results.trained
    elapsed = time.perf_counter() - t0

    rows: list[tuple[str, str | None, int, list[ModelResult]]] = [("dense", None, 1, [r.dense for r in results])]
    rows += [(f"{s} α={args.alpha}", s, args.alpha, [r.children[(s, args.alpha)] for r in results]) for s in splits]
    print(f"\nC={args.clauses} k={args.clause_size} hidden={args.hidden} alpha={args.alpha} trials={args.trials} "
          f"device={device.type}\n{regime_text(specs[0].task, specs[0].train)}")
    print(f"{'condition':<16}{'test accuracy (mean ± s.e.)':>30}{'nnz':>14}")
    for name, _, _, res in rows:
        nnz = sorted({m.nnz for m in res})
        nnz_s = str(nnz[0]) if len(nnz) == 1 else f"{min(nnz)}-{max(nnz)}"
        print(f"{name:<16}{_mean_sem([m.test_accuracy for m in res]):>30}{nnz_s:>14}")
    # one test draw per trial, shared by its conditions; the training inputs (never labels) are the task's input model
    data = [(r.boolean_task.test_data()[0], r.boolean_task.train_data()[0]) for r in results]
    measured = [(name, [measure(m.model, r.boolean_task, x, xi, args.threshold) for r, m, (x, xi) in zip(results, res, data)])
                for name, _, _, res in rows]
    for title, cols, heads in _tables(args.threshold):
        print(f"\n{title}")
        print(f"{'condition':<16}" + "".join(f"{h:>20}" for h in heads))
        for name, ms in measured:
            print(f"{name:<16}" + "".join(f"{_texts([m[c] for m in ms]) if c in TEXT_KEYS else _mean_sem([m[c] for m in ms]):>20}"
                                          for c in cols))

    dense_acc = np.array([r.dense.test_accuracy for r in results], dtype=float)
    task, train = specs[0].task, specs[0].train
    models = [m for _, _, _, res in rows for m in res] + [r.parent for r in results]
    backends = backends_of([m.provenance for m in models])
    summary = {
        "config": {
            "command": "python -m fci",
            "options": {k: (str(v) if k == "device" else v) for k, v in vars(args).items() if k != "dask_address"},
            "regime": regime_record(task, train),
            "task": task.to_dict(), "train": {**train.to_dict(), "momentum": train.momentum},
            "clauses": args.clauses, "clause_size": args.clause_size, "test_samples": args.test_samples,
            "hidden": args.hidden, "alpha": args.alpha, "splits": splits, "threshold": "auto" if args.threshold is None else args.threshold,
            "trials": args.trials, "seed": args.seed, "seeds": [s.seed for s in specs],
            "device": str(device), "data": str(args.data), "out": str(args.out),
        },
        "environment": environment(device),
        "run": {"trials": len(specs), "models": len(specs) * (1 + len(splits)), "trained_trials": len(ran),
                "loaded_trials": len(specs) - len(ran), "backends": backends,
                "mixed_backends": len({b.split(" ")[0] for b in backends}) > 1, "seconds": round(elapsed, 2),
                "store": str(store.dir)},
        "conditions": [condition_summary(name, split, alpha, res, ms, dense_acc, 1 / (task.n_test * task.n_outputs))
                       for (name, split, alpha, res), (_, ms) in zip(rows, measured)],
    }
    path = write_json(summary, Path(args.out) / "summary.json")
    print(f"{elapsed:.1f}s; models stored under {store.dir}; summary: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
