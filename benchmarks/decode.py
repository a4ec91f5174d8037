"""Timing of the two readings of a network: static ``decode`` and ``decode_function``.

    python -m benchmarks.decode [--quick] [--threads N] [--seed S] [--repeat R]

Networks of 256 inputs and 128 hidden neurons (SPEC §5's size target: decode_function
at its defaults — both forms, term length "auto" — under 10 s on 2 cores; ``--quick``:
64 inputs, 32 neurons):

- *planted*: 64 disjoint clauses of 3 literals (random negations), two AND-threshold
  neurons per clause (±1 per literal, bias 1 - #positive) plus N(0, 0.02) noise on
  every weight, 8 outputs each reading the OR of 8 clauses (b2 = -0.5);
- *gaussian*: every weight and bias N(0, 1), one output: no planted structure, so
  candidate terms come from arbitrary weights (the worst case for the candidate
  count).

For each: wall seconds (best of ``--repeat``) and the process's CPU seconds for that
run, the share of the 10 s budget, the machine's load average (other processes on a
shared machine slow the wall time down), the form and term length decode_function
chose, terms found, and checks: clause F1 against
the planted clauses, the circuit's agreement with the network on 8192 fresh uniform
inputs, and beside it the true-formula agreement (the planted formula's: a
reference, which a reading may exceed).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import time

import numpy as np

from benchmarks._threads import blas_threads, usable_cores
from fci.codes import (
    circuit_agreement,
    clause_recovery,
    decode,
    decode_function,
    network_predictions,
    true_formula_agreement,
)

BUDGET_S = 10.0


def planted(n: int, H: int, C: int, groups: int, noise: float, seed: int):
    """(W1, b1, W2, b2), clauses, output groups: two AND neurons per clause."""
    rng = np.random.default_rng(seed)
    W1 = rng.normal(0.0, noise, (H, n)).astype(np.float32)
    b1 = np.zeros(H, np.float32)
    W2 = np.zeros((groups, H), np.float32)
    variables = rng.permutation(n)[: 3 * C].reshape(C, 3)
    clauses = []
    for c in range(C):
        clause = tuple(sorted((int(v), bool(rng.random() < 0.5)) for v in variables[c]))
        clauses.append(clause)
        for i in (2 * c, 2 * c + 1):
            for v, positive in clause:
                W1[i, v] += 1.0 if positive else -1.0
            b1[i] = 1.0 - sum(p for _, p in clause)
            W2[c * groups // C, i] = 1.0
    group_list = [[c for c in range(C) if c * groups // C == o] for o in range(groups)]
    return (W1, b1, W2, np.full(groups, -0.5, np.float32)), clauses, group_list


def gaussian(n: int, H: int, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(H, n)).astype(np.float32), rng.normal(size=H).astype(np.float32),
            rng.normal(size=(1, H)).astype(np.float32), np.zeros(1, np.float32))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, repeat: int):
    """(best wall seconds, CPU seconds of that run, result)."""
    best, cpu, out = math.inf, math.nan, None
    for _ in range(repeat):
        c0, t0 = _cpu(), time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, _cpu() - c0
    return best, cpu, out


def run(quick: bool, seed: int, repeat: int) -> list[dict]:
    n, H = (64, 32) if quick else (256, 128)
    C = H // 2
    nets = [("planted", *planted(n, H, C, 8, 0.02, seed)), ("gaussian", gaussian(n, H, seed), None, None)]
    rng = np.random.default_rng(seed + 1)
    x = (rng.random((8192, n)) < 0.5).astype(np.float32)
    rows = []
    for name, weights, clauses, groups in nets:
        y = network_predictions(weights, x)
        t_static, _, static = timed(lambda w=weights: decode(w), repeat)
        t_fun, cpu_fun, fun = timed(lambda w=weights: decode_function(w, seed=seed), repeat)
        row = {"network": name, "n": n, "H": H, "O": weights[2].shape[0], "static_s": t_static, "function_s": t_fun,
               "function_cpu_s": cpu_fun, "load": os.getloadavg()[0], "max_literals": fun.max_literals, "form": fun.form,
               "terms": len(fun.clauses),
               "function_agreement": circuit_agreement(fun, y, x), "static_agreement": circuit_agreement(static, y, x)}
        if clauses is not None:
            row.update(function_f1=clause_recovery(fun.clauses, clauses)["f1"],
                       static_f1=clause_recovery(static.clauses, clauses)["f1"],
                       reference=true_formula_agreement(clauses, y, x, groups))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="64 inputs x 32 neurons instead of 256 x 128")
    p.add_argument("--threads", type=int, default=None, help="limit BLAS threads (threadpoolctl)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="timing repeats (best is reported)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1, got {args.repeat}")
    cores = usable_cores()
    with blas_threads(args.threads):
        rows = run(args.quick, args.seed, args.repeat)
    print(f"fci decoding benchmark ({'quick' if args.quick else 'full'}), {cores} CPU cores"
          f"{f', {args.threads} BLAS threads' if args.threads else ''}, numpy {np.__version__}, "
          f"{platform.python_implementation()} {platform.python_version()}")
    for r in rows:
        print(f"\n{r['network']} network: n={r['n']} inputs, H={r['H']} neurons, O={r['O']} outputs")
        print(f"  decode_function {r['function_s']:8.2f} s wall, {r['function_cpu_s']:.2f} s CPU "
              f"({r['function_s'] / BUDGET_S:.1%} of the {BUDGET_S:.0f} s budget; load average {r['load']:.1f}); "
              f"read as a {r['form'].upper()} of terms of <= {r['max_literals']} literals, {r['terms']} terms")
        print(f"  decode          {r['static_s']:8.3f} s  ({r['function_s'] / max(r['static_s'], 1e-9):.0f}x faster than decode_function)")
        line = f"  agreement with the network (8192 uniform inputs): function {r['function_agreement']:.4f}, static {r['static_agreement']:.4f}"
        if "reference" in r:
            line += (f", true formula {r['reference']:.4f}; clause F1: function {r['function_f1']:.3f}, "
                     f"static {r['static_f1']:.3f}")
        print(line)


if __name__ == "__main__":
    main()
