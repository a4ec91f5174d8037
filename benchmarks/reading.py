"""How faithfully ``decode_function`` reads networks of many kinds, beside the reference.

    python -m benchmarks.reading [--trials T] [--cases a,b,...] [--threads N]

Each case trains ``--trials`` networks (seeds 0..T-1), reads each at
``decode_function``'s defaults (term length "auto", both forms; uniform inputs unless
the case says otherwise) and prints, per condition, the mean over trials of the
reading's agreement with the network on the task's test inputs, the reference (the
true formula's agreement with the network on the same inputs: for one-output tasks
the network's test accuracy), the gap (mean and worst trial; a reading may exceed
the reference), the form and term length chosen, and seconds per network (wall and
CPU, with the machine's load average beside them):

- ``k4``: 8 clauses of 4 literals, 8 hidden neurons, dense / clause-split / random-split
  FPE children (α = 2) from ``run_fpe``;
- ``heavy``: 24 clauses on 16 neurons (α = 2), read on the task's own unlabeled
  training inputs (``inputs=``), where the network is used;
- ``shared``: 8 clauses of 3 literals over 20 variables in the shared layout;
- ``cnf``: an AND of 4 ORs of 3 literals over 12 variables, a MaskedMLP(12, 8, 1)
  trained by ``fci.train.fitting.fit`` on every input labelled by the formula, read
  and measured on every input;
- ``deep``: 2 hidden layers (8, 8) from ``run_fpe`` (dense and random α = 2);
- ``torch``: plain ``nn.Sequential`` networks trained with Adam on the 8 × 3 task: two
  ReLU hidden layers (8, 8), one sigmoid hidden layer (8), one GELU hidden layer (8),
  each passed as the module itself.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import platform
import resource
import time
from typing import Any, Callable

import numpy as np
import torch

from benchmarks._threads import blas_threads, usable_cores

from fci.codes import circuit_agreement, decode_function, network_predictions, true_formula_agreement
from fci.seeding import derive_seed
from fci.tasks import DNFTask, TaskConfig

CASES = ("k4", "heavy", "shared", "cnf", "deep", "torch")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read(model: Any, x_test: np.ndarray, reference: Callable[[np.ndarray], float], inputs: Any = None) -> dict[str, Any]:
    """One network read at the defaults and measured on x_test (N, n)."""
    y = network_predictions(model, x_test)
    c0, t0 = _cpu(), time.perf_counter()
    circuit = decode_function(model, inputs=inputs)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"agreement": circuit_agreement(circuit, y, x_test), "reference": reference(y), "wall": wall, "cpu": cpu,
            "form": circuit.form, "k": circuit.max_literals}


def fpe_case(task: TaskConfig, hidden: Any, expansions: tuple, trials: int, own_inputs: bool = False) -> dict[str, list]:
    """Readings of run_fpe's dense network and children, per condition."""
    from fci.train import FPESpec, run_fpe

    runs = run_fpe([FPESpec(task=task, hidden=hidden, seed=t, expansions=expansions) for t in range(trials)], device="cpu")
    rows: dict[str, list] = {}
    for r in runs:
        t = r.boolean_task
        x = t.test_data()[0].numpy()
        inputs = t.train_data()[0].numpy() if own_inputs else None  # unlabeled: inputs only
        for name, m in [("dense", r.dense)] + [(f"{s} α={a}", m) for (s, a), m in r.children.items()]:
            rows.setdefault(name, []).append(read(m.model, x, lambda y: true_formula_agreement(t.clauses, y, x, t.groups),
                                                  inputs))
    return rows


def cnf_case(trials: int) -> dict[str, list]:
    from fci.models.mlp import MaskedMLP, MaskedMLPStack
    from fci.train import TrainConfig
    from fci.train.fitting import fit

    x = np.array(list(itertools.product([0.0, 1.0], repeat=12)), dtype=np.float32)
    formulas = []
    for t in range(trials):
        rng = np.random.default_rng(derive_seed(t, "cnf"))
        formulas.append([tuple(sorted((int(v), bool(rng.random() < 0.5)) for v in row))
                         for row in rng.permutation(12).reshape(4, 3)])
    labels = [np.all([np.any([x[:, v] == p for v, p in c], axis=0) for c in f], axis=0) for f in formulas]
    stack = MaskedMLPStack.from_models([MaskedMLP(12, 8, 1, seed=t) for t in range(trials)])
    fit(stack, torch.tensor(x).expand(trials, -1, -1).contiguous(),
        torch.tensor(np.stack(labels), dtype=torch.float32)[:, :, None], TrainConfig(lr=0.02, batch_size=128), range(400))
    rows = []
    for model, formula in zip(stack.to_models(), formulas):
        reference = functools.partial(true_formula_agreement, formula, x=x, form="cnf")
        rows.append(read(model, x, lambda y: reference(network_output=y)))
    return {"dense": rows}


def torch_case(trials: int, epochs: int = 100) -> dict[str, list]:
    nn = torch.nn
    kinds: dict[str, Callable[[int], torch.nn.Module]] = {
        "ReLU (8, 8)": lambda n: nn.Sequential(nn.Linear(n, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)),
        "sigmoid (8)": lambda n: nn.Sequential(nn.Linear(n, 8), nn.Sigmoid(), nn.Linear(8, 1)),
        "GELU (8)": lambda n: nn.Sequential(nn.Linear(n, 8), nn.GELU(), nn.Linear(8, 1)),
    }
    rows: dict[str, list] = {}
    for t in range(trials):
        task = DNFTask.from_config(TaskConfig(n_clauses=8, clause_size=3), seed=derive_seed(t, "task"))
        x, y = task.train_data()
        x_test = task.test_data()[0].numpy()
        for name, build in kinds.items():
            torch.manual_seed(t)
            model = build(x.shape[1])
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            g = torch.Generator().manual_seed(t)
            for _ in range(epochs):
                order = torch.randperm(len(x), generator=g)
                for s in range(0, len(x), 256):
                    i = order[s: s + 256]
                    loss = nn.functional.binary_cross_entropy_with_logits(model(x[i]), y[i])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            rows.setdefault(name, []).append(
                read(model, x_test, lambda yn: true_formula_agreement(task.clauses, yn, x_test, task.groups)))
    return rows


def run(case: str, trials: int) -> dict[str, list]:
    both = (("clause", 2), ("random", 2))
    if case == "k4":
        return fpe_case(TaskConfig(n_clauses=8, clause_size=4), 8, both, trials)
    if case == "heavy":
        return fpe_case(TaskConfig(n_clauses=24, clause_size=3), 16, both, trials, own_inputs=True)
    if case == "shared":
        return fpe_case(TaskConfig(n_clauses=8, clause_size=3, layout="shared", n_vars=20), 8, both, trials)
    if case == "deep":
        return fpe_case(TaskConfig(n_clauses=8, clause_size=3), (8, 8), (("random", 2),), trials)
    if case == "cnf":
        return cnf_case(trials)
    return torch_case(trials)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=5, help="networks per condition (seeds 0..T-1)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {','.join(CASES)}")
    p.add_argument("--threads", type=int, default=None, help="limit BLAS threads (threadpoolctl)")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if args.trials < 1:
        p.error(f"--trials must be >= 1, got {args.trials}")
    if not cases or any(c not in CASES for c in cases):
        p.error(f"--cases must name cases from {','.join(CASES)}, got {args.cases!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"fci reading benchmark: {args.trials} trials, {usable_cores()} CPU cores, numpy {np.__version__}, "
          f"torch {torch.__version__}, {platform.python_implementation()} {platform.python_version()}")
    print(f"{'case':<8}{'condition':<14}{'agreement':>10}{'reference':>10}{'gap':>8}{'worst':>8}  "
          f"{'form, length':<22}{'s/network (wall, CPU)':>22}{'load':>6}")
    with blas_threads(args.threads):
        for case in cases:
            for cond, rs in run(case, args.trials).items():
                a = np.array([r["agreement"] for r in rs])
                ref = np.array([r["reference"] for r in rs])
                ks = [r["k"] for r in rs]
                forms = "/".join(sorted({r["form"].upper() for r in rs})) + f", {min(ks)}-{max(ks)} literals"
                print(f"{case:<8}{cond:<14}{a.mean():>10.3f}{ref.mean():>10.3f}{a.mean() - ref.mean():>+8.3f}"
                      f"{(a - ref).min():>+8.3f}  {forms:<22}{np.mean([r['wall'] for r in rs]):>12.2f}"
                      f"{np.mean([r['cpu'] for r in rs]):>10.2f}{os.getloadavg()[0]:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
