"""How much of a trained network the certified static reading explains, by task size.

    python -m benchmarks.certified [--quick] [--trials N] [--families F ...] [--data DIR]
                                   [--threads N] [--functional] [--out FILE] [option=value ...]

Trains fci's networks with the library (``run_fpe``: ``FPESpec(task=TaskConfig(...),
hidden=..., seed=t, expansions=(("clause", 2), ("random", 2)))``, trials t = 0..N-1) and
reads each model (dense, clause α=2, random α=2) with ``decode(model,
method="certified")``. Families:

- ``8x8``: 8 clauses of 3 literals (24 inputs), 8 hidden neurons;
- ``24x16``: 24 clauses (72 inputs), 16 neurons;
- ``12x8``: 12 clauses, one output per clause (36 inputs, 12 outputs), 8 neurons;
- ``deep``: 8 clauses, two hidden layers of 8 (read through the cascade).

Per condition, means over trials of: the certified circuit's agreement with the network on
the task's test inputs and on 8192 uniform inputs; the reference (the true formula's
agreement with the network on the test inputs, ``true_formula_agreement``) and the best
constant output's; the coverage the reading reports (a sound lower bound unless exact) and
the share of outputs whose coverage is exact; the share of terms certified (1 by
construction: checked, not assumed, by evaluating every term on the uniform inputs);
terms per output; CPU seconds per network (BLAS limited to ``--threads``, default 1).
``--functional`` adds ``decode_function``'s agreement beside it. Extra ``option=value``
arguments are passed to the certified reading (e.g. ``pieces=65536``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

from benchmarks._threads import blas_threads, usable_cores
from fci.codes import true_formula_agreement, decode, decode_function
from fci.codes.certified import DEFAULTS
from fci.codes.network import read_network
from fci.tasks import TaskConfig

FAMILIES: dict[str, tuple[dict[str, Any], int | tuple[int, ...]]] = {
    "8x8": (dict(n_clauses=8, clause_size=3), 8),
    "24x16": (dict(n_clauses=24, clause_size=3), 16),
    "12x8": (dict(n_clauses=12, clause_size=3, outputs="clauses"), 8),
    "deep": (dict(n_clauses=8, clause_size=3), (8, 8)),
}
CONDITIONS = (("dense", None), ("clause2", ("clause", 2)), ("random2", ("random", 2)))


def _models(family: str, trials: int, data: str | None):
    from fci.store import Store
    from fci.train import FPESpec, run_fpe

    task_kw, hidden = FAMILIES[family]
    specs = [FPESpec(task=TaskConfig(**task_kw), hidden=hidden, seed=t, expansions=(("clause", 2), ("random", 2)))
             for t in range(trials)]
    runs = run_fpe(specs, device="cpu", store=Store(data) if data else None)
    for r in runs:
        x_test = r.boolean_task.test_data()[0].numpy().astype(np.float64)
        for cond, key in CONDITIONS:
            yield cond, r.seed, (r.dense if key is None else r.children[key]).model, r.boolean_task, x_test


def _measure(model, task, x_test: np.ndarray, seed: int, functional: bool, options: dict) -> dict:
    net = read_network(model)
    rng = np.random.default_rng(seed)
    x_uni = (rng.random((8192, net.n_in)) < 0.5).astype(np.float64)
    y_test, y_uni = net.predict(x_test), net.predict(x_uni)
    c0, w0 = time.process_time(), time.perf_counter()
    circuit = decode(model, method="certified", **options)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    got_test, got_uni = circuit.evaluate(x_test) > 0.5, circuit.evaluate(x_uni) > 0.5
    # every term checked on the uniform inputs: a DNF term never where the network says 0,
    # a CNF clause never false where it says 1
    hold = [not (got_uni[:, o] & ~y_uni[:, o]).any() if circuit.form == "dnf" else not (~got_uni[:, o] & y_uni[:, o]).any()
            for o in range(net.n_out)]
    row = {
        "agreement_test": float((got_test == y_test).mean()),
        "agreement_uniform": float((got_uni == y_uni).mean()),
        "reference": float(true_formula_agreement(task.clauses, y_test.astype(np.float32), x_test, task.groups, form=task.form)),
        "constant": float(np.maximum(y_test.mean(axis=0), 1 - y_test.mean(axis=0)).mean()),
        "coverage": float(np.mean(circuit.coverage)),
        "coverage_exact": float(np.mean(circuit.coverage_exact)),
        "certified": float(np.mean([all(c) for c in circuit.certified])) if circuit.certified else 1.0,
        "held": float(np.mean(hold)),
        "terms": float(len(circuit.clauses) / net.n_out),
        "cnf": float(circuit.form == "cnf"),
        "cpu_s": cpu,
        "wall_s": wall,
    }
    if functional:
        fun = decode_function(model, seed=seed)
        row["function_test"] = float(((fun.evaluate(x_test) > 0.5) == y_test).mean())
    return row


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    if key not in DEFAULTS or not value:
        raise argparse.ArgumentTypeError(f"expected option=value with option one of {', '.join(DEFAULTS)}, got {text!r}")
    return key, value if key == "form" else int(value)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 trials of the 8x8 family")
    p.add_argument("--trials", type=int, default=5, help="trials per family (default 5)")
    p.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    p.add_argument("--data", default=None, help="a results store to reuse trained models from (default: train afresh)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--functional", action="store_true", help="also read every model with decode_function")
    p.add_argument("--out", default=None, help="write the per-model rows as JSON here")
    p.add_argument("options", nargs="*", type=_option, help="certified reading options, option=value")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error(f"--trials must be >= 1, got {args.trials}")
    if args.quick:
        args.trials, args.families = 2, ["8x8"]
    options = dict(args.options)
    rows = []
    with blas_threads(args.threads):
        for family in args.families:
            for cond, seed, model, task, x_test in _models(family, args.trials, args.data):
                rows.append({"family": family, "condition": cond, "seed": seed,
                             **_measure(model, task, x_test, seed, args.functional, options)})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"certified static reading, {args.trials} trials, options {options or 'default'}; {usable_cores()} CPU cores, "
          f"{args.threads} BLAS thread(s), load {load:.1f}, numpy {np.__version__}, {platform.python_implementation()} "
          f"{platform.python_version()}")
    cols = ["agreement_test", "agreement_uniform", "reference", "constant", "coverage", "coverage_exact", "certified",
            "held", "terms", "cnf", "cpu_s"] + (["function_test"] if args.functional else [])
    head = ["family", "condition"] + ["test", "uniform", "reference", "constant", "coverage>=", "exact", "certified",
                                      "held", "terms", "cnf", "cpu s"] + (["function"] if args.functional else [])
    print(" | ".join(head))
    for family in args.families:
        for cond, _ in CONDITIONS:
            sel = [r for r in rows if r["family"] == family and r["condition"] == cond]
            if sel:
                print(" | ".join([family, cond] + [f"{np.mean([r[c] for r in sel]):.3f}" for c in cols]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
