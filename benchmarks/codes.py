"""Timing of the vectorised code analysis and interference metrics.

    python -m benchmarks.codes [--quick] [--threads N] [--seed S]

Builds a first layer ``W1`` of shape ``(H, n)`` (4096 x 4096; 1024 x 1024 with
``--quick``) holding ``C`` planted clauses (1,000; 250 with ``--quick``) of ``k = 3``
literals, each with a channel of 8 random neurons, on top of Gaussian noise (part
of which crosses the sign threshold), and times every analysis beside a
straightforward Python-loop reference. The loop references are too slow to run in
full, so each is timed on a subset (rows, clauses, features or pairs, stated in the
table) and extrapolated linearly to the full problem; on that subset its result is
checked against the vectorised one. The loop references use the per-neuron numeric
rule (``threshold=0.1``: ``tau_i = 0.1 * max|W1[i]|``); the default data-driven rule
(``threshold="auto"``, a two-cluster split per neuron) is timed on its own row.
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import time
from typing import Callable

import numpy as np

from benchmarks._threads import blas_threads, usable_cores
from fci.codes import (
    clause_channels,
    clause_recovery,
    collision_graph,
    collision_matrix,
    decode,
    polysemanticity,
    readout_votes,
    sign_codes,
)
from fci.metrics import cosine_interference_stats, feature_capacity

# --------------------------------------------------------------------------- problem


def build_problem(H: int, n: int, C: int, k: int = 3, channel_size: int = 8, seed: int = 0):
    """Planted network: W1 (H, n), b1 (H,), W2 (1, H), b2 (1,), clauses."""
    if C * k > n:
        raise ValueError(f"need n >= C*k for disjoint clauses, got n={n}, C*k={C * k}")
    rng = np.random.default_rng(seed)
    W1 = rng.normal(0.0, 0.03, size=(H, n)).astype(np.float32)
    variables = rng.permutation(n)[: C * k].reshape(C, k)
    b1 = np.full(H, -1.0, dtype=np.float32)  # neurons in no channel stay silent
    clauses = []
    for c in range(C):
        clause = tuple((int(v), bool(rng.random() < 0.5)) for v in variables[c])
        clauses.append(clause)
        channel = rng.choice(H, size=channel_size, replace=False)
        for v, positive in clause:
            W1[channel, v] = (1.0 if positive else -1.0) * rng.uniform(0.5, 1.0, size=channel_size)
        # AND threshold: positive weights are >= 0.5, so the clause alone passes it
        n_pos = sum(p for _, p in clause)
        b1[channel] = np.maximum(b1[channel], 0.25 - 0.5 * n_pos)
    W2 = np.abs(rng.normal(1.0, 0.2, size=(1, H))).astype(np.float32)
    b2 = np.full(1, -0.5, dtype=np.float32)
    return W1, b1, W2, b2, clauses


# --------------------------------------------------------------------------- loop references


def loop_sign_codes(W: list[list[float]], fraction: float) -> list[list[int]]:
    out = []
    for row in W:
        tau = fraction * max(abs(w) for w in row)
        out.append([1 if w > tau else (-1 if w < -tau else 0) for w in row])
    return out


def loop_channels(codes: list[list[int]], clauses) -> list[list[int]]:
    out = []
    for clause in clauses:
        channel = []
        for i, row in enumerate(codes):
            if all((row[v] if positive else -row[v]) == 1 for v, positive in clause):
                channel.append(i)
        out.append(channel)
    return out


def loop_collisions(channels: list[list[int]], rows: range) -> list[list[int]]:
    sets = [set(ch) for ch in channels]
    return [[len(sets[a] & sets[b]) for b in range(len(sets))] for a in rows]


def loop_polysemanticity(channels: list[list[int]], neurons: range) -> list[int]:
    sets = [set(ch) for ch in channels]
    return [sum(1 for s in sets if i in s) for i in neurons]


def loop_capacity(W: np.ndarray, features: range) -> list[float]:
    out = []
    for j in features:
        g = W.T @ W[:, j]  # one Gram column per feature
        out.append(float(g[j] ** 2 / (g @ g)) if g[j] > 0 else 0.0)
    return out


def loop_cosine(W: np.ndarray, n_pairs: int) -> tuple[float, int]:
    rows = [r / np.linalg.norm(r) for r in W if np.linalg.norm(r) > 0]
    total, count = 0.0, 0
    for a, b in itertools.islice(itertools.combinations(range(len(rows)), 2), n_pairs):
        total += abs(float(rows[a] @ rows[b]))
        count += 1
    return total, count


def loop_votes(W2: np.ndarray, channels: list[list[int]], tau: float) -> list[list[int]]:
    return [[sum(1 for i in ch if W2[o, i] > tau) for o in range(W2.shape[0])] for ch in channels]


# --------------------------------------------------------------------------- timing


def timed(fn: Callable, repeat: int = 1):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(quick: bool, seed: int) -> list[tuple[str, float, float | None, str]]:
    H = n = 1024 if quick else 4096
    C = 250 if quick else 1000
    W1, b1, W2, b2, clauses = build_problem(H, n, C, seed=seed)
    rows: list[tuple[str, float, float | None, str]] = []
    thr = 0.1  # the loop references' rule: a fraction of each neuron's max|w|

    t, S = timed(lambda: sign_codes(W1, threshold=thr), repeat=3)
    sub = 32
    tl, ref = timed(lambda: loop_sign_codes(W1[:sub].astype(np.float64).tolist(), float(np.float32(thr))))
    assert np.array_equal(np.asarray(ref), S[:sub])
    rows.append((f"sign_codes ({H}x{n}, threshold 0.1)", t, tl * H / sub, f"loop on {sub} rows, x{H // sub}"))
    t, _ = timed(lambda: sign_codes(W1), repeat=1)
    rows.append((f"sign_codes ({H}x{n}, 'auto')", t, None, "two-cluster split per neuron; no loop reference"))

    t, channels = timed(lambda: clause_channels(W1, clauses, threshold=thr), repeat=3)
    codes = S.tolist()
    sub = max(C // 50, 5)
    tl, ref = timed(lambda: loop_channels(codes, clauses[:sub]))
    assert ref == channels[:sub]
    loop_channels_s = tl * C / sub
    rows.append((f"clause_channels ({C} clauses)", t, loop_channels_s, f"loop on {sub} clauses, x{C / sub:g}"))

    t, M = timed(lambda: collision_matrix(W1, clauses, threshold=thr), repeat=3)
    sub = max(C // 10, 5)
    tl, ref = timed(lambda: loop_collisions(channels, range(sub)))
    assert np.array_equal(np.asarray(ref), M[:sub])
    rows.append((f"collision_matrix ({C}x{C})", t, loop_channels_s + tl * C / sub,
                 f"loop channels (above) + set intersections on {sub} rows, x{C / sub:g}"))

    t, poly = timed(lambda: polysemanticity(W1, clauses, threshold=thr), repeat=3)
    sub = max(H // 16, 16)
    tl, ref = timed(lambda: loop_polysemanticity(channels, range(sub)))
    assert ref == poly[:sub].tolist()
    rows.append((f"polysemanticity ({H} neurons)", t, loop_channels_s + tl * H / sub,
                 f"loop channels (above) + membership counts on {sub} neurons, x{H / sub:g}"))

    t, g = timed(lambda: collision_graph(W1, clauses, threshold=thr))
    rows.append((f"collision_graph ({g.number_of_edges()} edges)", t, None, "networkx build included"))

    t, votes = timed(lambda: readout_votes(W2, channels, threshold=thr), repeat=3)
    tau2 = float(np.float32(thr) * np.abs(W2).max())  # W2 has one output row
    tl, ref = timed(lambda: loop_votes(W2, channels, tau2))
    assert np.array_equal(np.asarray(ref), votes)
    rows.append((f"readout_votes ({C} channels)", t, tl, "loop in full (channels given to both)"))

    t, cap = timed(lambda: feature_capacity(W1))
    sub = 64
    tl, ref = timed(lambda: loop_capacity(W1, range(sub)))
    np.testing.assert_allclose(ref, cap[:sub], rtol=1e-3)
    rows.append((f"feature_capacity ({H}x{n})", t, tl * n / sub, f"numpy per-feature loop on {sub} features, x{n // sub}"))

    t, cs = timed(lambda: cosine_interference_stats(W1))
    n_pairs = H * (H - 1) // 2
    sub = 50_000
    tl, (total, count) = timed(lambda: loop_cosine(W1, sub))
    rows.append((f"cosine_interference ({n_pairs} pairs)", t, tl * n_pairs / count,
                 f"numpy per-pair loop on {count} pairs, x{n_pairs / count:.0f}"))

    for sim in (1.0, 0.3):
        t, circuit = timed(lambda: decode((W1, b1, W2, b2), similarity=sim))
        rec = clause_recovery(circuit.clauses, clauses)
        rows.append((f"decode, similarity={sim}", t, None,
                     f"no loop reference; {len(circuit.clauses)} found, {rec['n_exact']}/{C} planted exact, "
                     f"F1 {rec['f1']:.2f}"))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1024 x 1024 and 250 clauses instead of 4096 x 4096 and 1000")
    p.add_argument("--threads", type=int, default=None, help="limit BLAS threads (threadpoolctl)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cores = usable_cores()
    with blas_threads(args.threads):
        t0 = time.perf_counter()
        rows = run(args.quick, args.seed)
        total = time.perf_counter() - t0
    print(f"fci code-analysis benchmark ({'quick' if args.quick else 'full'}), {cores} CPU cores, "
          f"numpy {np.__version__}, {platform.python_implementation()} {platform.python_version()}")
    print("Loop references run on a subset and are extrapolated linearly (see 'reference').")
    w = max(len(r[0]) for r in rows)
    print(f"{'operation':<{w}}  {'vectorised':>10}  {'loop (est.)':>11}  {'speedup':>8}  reference")
    for name, t, tl, note in rows:
        loop = f"{tl:10.2f}s" if tl is not None else f"{'-':>11}"
        speed = (f"{tl / t:7.0f}x" if tl / t >= 10 else f"{tl / t:7.1f}x") if tl is not None else f"{'-':>8}"
        print(f"{name:<{w}}  {t:9.3f}s  {loop}  {speed}  {note}")
    print(f"total wall time (including references): {total:.1f}s")


if __name__ == "__main__":
    main()
