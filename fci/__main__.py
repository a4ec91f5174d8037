"""`python -m fci`: train one configuration (dense, clause-split and random-split
FPE) for several trials as one stack, store the models, print a summary table."""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from fci.codes import ceiling_agreement, circuit_agreement, clause_recovery, decode, decode_function, network_predictions
from fci.expand import SPLITS
from fci.metrics import clause_mean_capacity, cosine_interference, feature_capacity, trial_stats
from fci.model import resolve_device
from fci.store import Store
from fci.tasks import TaskConfig
from fci.train import FPESpec, TrainConfig, run_fpe


def _p(value: str) -> float | str:
    return value if value == "balanced" else float(value)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fci", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t = ap.add_argument_group("task (SPEC §1)")
    t.add_argument("--clauses", type=int, default=8, help="number of clauses C")
    t.add_argument("--clause-size", type=int, default=3, help="literals per clause k")
    t.add_argument("--vars", type=int, default=None, help="input variables n (default C*k)")
    t.add_argument("--layout", default="disjoint", choices=["disjoint", "shared"])
    t.add_argument("--negation-prob", type=float, default=0.5)
    t.add_argument("--outputs", default="dnf", choices=["dnf", "clauses"])
    t.add_argument("--p", type=_p, default="balanced", help="planting probability, or 'balanced'")
    t.add_argument("--train-samples", type=int, default=4096)
    t.add_argument("--test-samples", type=int, default=2048)
    m = ap.add_argument_group("model and FPE (SPEC §2-3)")
    m.add_argument("--hidden", type=int, default=8, help="hidden neurons of the dense parent")
    m.add_argument("--alpha", type=int, default=2, help="expansion factor")
    m.add_argument("--splits", default="clause,random", help=f"comma-separated, from {','.join(SPLITS)}")
    tr = ap.add_argument_group("training")
    tr.add_argument("--warmup", type=int, default=TrainConfig.warmup, help="dense epochs before expansion")
    tr.add_argument("--finetune", type=int, default=TrainConfig.finetune, help="epochs after expansion")
    tr.add_argument("--lr", type=float, default=TrainConfig.lr)
    tr.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    tr.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    r = ap.add_argument_group("run")
    r.add_argument("--trials", type=int, default=5)
    r.add_argument("--seed", type=int, default=0, help="trial t uses seed + t")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    r.add_argument("--data", default="data", help="results store root")
    r.add_argument("--threshold", type=float, default=None,
                   help="per-neuron relative sign threshold for static decoding (default: data-driven, 'auto')")
    return ap


def measure(model, task, x_test, threshold: float | None) -> dict[str, float]:
    """Interference (SPEC §4) and both decodings (SPEC §5) of one trained model:
    clause F1 and agreement with the model on x_test (N, n) of static `decode` and of
    `decode_function`, beside the ceiling (agreement of the true formula)."""
    W1 = model.effective_weights()[0][0]
    clauses = task.clauses
    y_net = network_predictions(model, x_test)
    t0 = time.perf_counter()
    static = decode(model, threshold="auto" if threshold is None else threshold)
    t1 = time.perf_counter()
    function = decode_function(model)
    t2 = time.perf_counter()
    return {
        "capacity": clause_mean_capacity(feature_capacity(W1), clauses),
        "cosine": cosine_interference(W1),
        "f1": clause_recovery(static.clauses, clauses)["f1"],
        "agreement": circuit_agreement(static, y_net, x_test),
        "function_f1": clause_recovery(function.clauses, clauses)["f1"],
        "function_agreement": circuit_agreement(function, y_net, x_test),
        "ceiling": ceiling_agreement(clauses, y_net, x_test, task.groups),
        "static_s": t1 - t0,
        "function_s": t2 - t1,
    }


def _mean_sem(values) -> str:
    s = trial_stats(np.asarray(values, dtype=float))
    return f"{s['mean']:.4f} ± {s['sem']:.4f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        splits = [s.strip() for s in args.splits.split(",") if s.strip()]
        bad = [s for s in splits if s not in SPLITS]
        if bad or not splits:
            raise ValueError(f"--splits must name some of {SPLITS}, got {args.splits!r}")
        if args.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {args.trials}")
        device = resolve_device(args.device)
        task = TaskConfig(
            n_clauses=args.clauses, clause_size=args.clause_size, n_vars=args.vars, layout=args.layout,
            negation_prob=args.negation_prob, outputs=args.outputs, p=args.p,
            n_train=args.train_samples, n_test=args.test_samples,
        )
        train = TrainConfig(lr=args.lr, batch_size=args.batch_size, warmup=args.warmup, finetune=args.finetune, weight_decay=args.weight_decay)
        specs = [
            FPESpec(task=task, hidden=args.hidden, seed=args.seed + t, expansions=tuple((s, args.alpha) for s in splits), train=train)
            for t in range(args.trials)
        ]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store = Store(args.data)
    t0 = time.perf_counter()
    results = run_fpe(specs, device=device, progress=True, store=store)
    elapsed = time.perf_counter() - t0

    rows = [("dense", [r.dense for r in results])]
    rows += [(f"{s} α={args.alpha}", [r.children[(s, args.alpha)] for r in results]) for s in splits]
    print(f"\nC={args.clauses} k={args.clause_size} hidden={args.hidden} alpha={args.alpha} trials={args.trials} "
          f"warmup={args.warmup} finetune={args.finetune} device={device.type}")
    print(f"{'condition':<16}{'test accuracy (mean ± s.e.)':>30}{'nnz':>14}")
    for name, res in rows:
        nnz = sorted({m.nnz for m in res})
        nnz_s = str(nnz[0]) if len(nnz) == 1 else f"{min(nnz)}-{max(nnz)}"
        print(f"{name:<16}{_mean_sem([m.test_accuracy for m in res]):>30}{nnz_s:>14}")
    x_tests = [r.task.test_data()[0] for r in results]  # one draw per trial, shared by its conditions
    measured = [(name, [measure(m.model, r.task, x, args.threshold) for r, m, x in zip(results, res, x_tests)])
                for name, res in rows]
    tables = (
        ("what the network computes (decode_function): clause F1, agreement with the network on the test set, "
         "the ceiling (the true clauses' agreement), seconds per network; mean ± s.e. over trials",
         ("function_f1", "function_agreement", "ceiling", "function_s"), ("function F1", "function agreement", "ceiling", "seconds")),
        (f"interference and static decoding (threshold {'auto' if args.threshold is None else args.threshold}, mean ± s.e. over trials)",
         ("capacity", "cosine", "f1", "agreement"), ("feature capacity", "cosine interf.", "decode F1", "circuit agreement")),
    )
    for title, cols, heads in tables:
        print(f"\n{title}")
        print(f"{'condition':<16}" + "".join(f"{h:>20}" for h in heads))
        for name, ms in measured:
            print(f"{name:<16}" + "".join(f"{_mean_sem([m[c] for m in ms]):>20}" for c in cols))
    print(f"{elapsed:.1f}s; models stored under {store.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
