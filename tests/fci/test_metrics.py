"""Tests for fci.metrics: interference metrics, computational capacity and trial statistics (SPEC §4)."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from fci.metrics import (
    CAPACITY_EPS,
    accuracy_per_parameter,
    accuracy_resolution,
    clause_capacity,
    clause_mean_capacity,
    computational_capacity,
    cosine_interference,
    cosine_interference_stats,
    feature_capacity,
    fold_change,
    gram,
    majority_accuracy,
    relative_improvement,
    trial_stats,
)

# --------------------------------------------------------------------------- builders


def _orthogonal_columns(H: int, n: int, seed: int = 0) -> np.ndarray:
    """(H, n) with orthogonal (not unit) columns, H >= n."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(H, H)))
    return q[:, :n] * np.arange(1, n + 1)


# --------------------------------------------------------------------------- gram / capacity


def test_gram_matches_direct_and_keeps_kind():
    W = np.random.default_rng(0).normal(size=(5, 3))
    G = gram(W)
    assert isinstance(G, np.ndarray) and G.shape == (3, 3)
    np.testing.assert_allclose(G, W.T @ W)
    Gt = gram(torch.from_numpy(W).float())
    assert isinstance(Gt, torch.Tensor) and Gt.dtype == torch.float32
    np.testing.assert_allclose(Gt.numpy(), W.T @ W, rtol=1e-5)


def test_capacity_is_one_for_orthogonal_features():
    np.testing.assert_allclose(feature_capacity(np.eye(4)), np.ones(4))
    np.testing.assert_allclose(feature_capacity(_orthogonal_columns(6, 4)), np.ones(4), atol=1e-12)


def test_capacity_is_half_for_antipodal_pair():
    W = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 2.0]])  # x0, x1 antipodal; x2 orthogonal
    np.testing.assert_allclose(feature_capacity(W), [0.5, 0.5, 1.0])


def test_capacity_known_angle_and_dead_feature():
    theta = 0.3
    W = np.array([[1.0, math.cos(theta), 0.0], [0.0, math.sin(theta), 0.0]])
    c2 = math.cos(theta) ** 2
    cap = feature_capacity(torch.tensor(W))
    assert isinstance(cap, torch.Tensor)
    np.testing.assert_allclose(cap.numpy(), [1 / (1 + c2), 1 / (1 + c2), 0.0])


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 8)),
              elements=st.one_of(st.just(0.0), st.floats(-3, 3).filter(lambda v: abs(v) > 1e-3))))
def test_capacities_sum_to_at_most_the_rank(W):
    cap = feature_capacity(W)
    assert cap.shape == (W.shape[1],)
    assert (cap >= 0).all() and (cap <= 1 + 1e-9).all()
    rank = np.linalg.matrix_rank(W) if W.any() else 0
    assert cap.sum() <= rank + 1e-6
    assert cap.sum() <= W.shape[0] + 1e-6


def test_clause_capacity_and_mean():
    cap = np.array([1.0, 0.5, 0.25, 0.0, 0.75])
    clauses = [((0, True), (1, False)), ((1, True), (2, True), (3, False))]
    np.testing.assert_allclose(clause_capacity(cap, clauses), [0.75, 0.25])
    # union {0, 1, 2, 3}: variable 1 counted once, distractor 4 excluded
    assert clause_mean_capacity(cap, clauses) == pytest.approx(1.75 / 4)
    out = clause_capacity(torch.tensor(cap), clauses)
    assert isinstance(out, torch.Tensor)
    assert math.isnan(clause_mean_capacity(cap, []))


@pytest.mark.parametrize(
    "clauses, match",
    [
        ([((5, True),)], "out of range"),
        ([()], "empty"),
        ([((0, True), (0, False))], "twice"),
        ([((0, 1),)], "bool"),
        ([((0.5, True),)], "integer"),
        ([(0, True)], "pair"),
    ],
)
def test_clause_capacity_rejects_bad_clauses(clauses, match):
    with pytest.raises(ValueError, match=match):
        clause_capacity(np.ones(5), clauses)


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="2-D"):
        feature_capacity(np.ones(4))
    with pytest.raises(ValueError, match="2-D"):
        gram(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="finite"):
        feature_capacity(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="1-D"):
        clause_capacity(np.ones((2, 2)), [((0, True),)])


# --------------------------------------------------------------------------- cosine interference


def _direct_cosine(W: np.ndarray) -> tuple[float, float, int]:
    rows = [r for r in W if np.linalg.norm(r) > 0]
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in itertools.combinations(rows, 2)]
    return float(np.mean(np.abs(cos))), float(np.mean(cos)), len(cos)


def test_cosine_interference_matches_direct_computation():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(7, 5))
    W[2] = 0.0  # dead neuron: excluded from the pairs
    W[4] = -W[0]  # antipodal pair: |cos| = 1, cos = -1
    abs_mean, signed_mean, n_pairs = _direct_cosine(W)
    s = cosine_interference_stats(W)
    assert s["n_pairs"] == n_pairs == 15
    assert s["abs_mean"] == pytest.approx(abs_mean)
    assert s["signed_mean"] == pytest.approx(signed_mean)
    assert cosine_interference(torch.tensor(W, dtype=torch.float32)) == pytest.approx(abs_mean, rel=1e-5)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 6), st.integers(1, 5)), elements=st.floats(-2, 2)))
def test_cosine_interference_property(W):
    W = np.where(np.abs(W) < 1e-3, 0.0, W)
    s = cosine_interference_stats(W)
    if (np.linalg.norm(W, axis=1) > 0).sum() < 2:
        assert s["n_pairs"] == 0 and math.isnan(s["abs_mean"])
        return
    abs_mean, signed_mean, n_pairs = _direct_cosine(W)
    assert s["n_pairs"] == n_pairs
    assert s["abs_mean"] == pytest.approx(abs_mean, abs=1e-9)
    assert s["signed_mean"] == pytest.approx(signed_mean, abs=1e-9)


def test_cosine_interference_orthogonal_and_degenerate():
    assert cosine_interference(np.eye(3)) == 0.0
    assert math.isnan(cosine_interference(np.array([[1.0, 0.0], [0.0, 0.0]])))


# --------------------------------------------------------------------------- comparisons


def test_fold_change_relative_improvement_accuracy_per_parameter():
    assert fold_change(0.5, 1.0) == 0.5
    assert relative_improvement(0.9, 0.75) == pytest.approx(0.2)
    assert accuracy_per_parameter(0.9, 300) == pytest.approx(0.003)
    a = np.array([1.0, 2.0])
    out = fold_change(a, np.array([2.0, 4.0]))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.5, 0.5])
    t = relative_improvement(torch.tensor([0.8, 0.9]), torch.tensor([0.8, 0.6]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), [0.0, 0.5], rtol=1e-6)
    assert math.isinf(fold_change(1.0, 0.0))
    with pytest.raises(ValueError, match="nnz"):
        accuracy_per_parameter(0.9, 0)


# --------------------------------------------------------------------------- statistics


def test_trial_stats():
    s = trial_stats([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == 2.5
    assert s["sem"] == pytest.approx(stats.sem([1.0, 2.0, 3.0, 4.0]))
    one = trial_stats(torch.tensor([0.7]))
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.7) and math.isnan(one["sem"])
    none = trial_stats([])
    assert none["n"] == 0 and math.isnan(none["mean"])
    with pytest.raises(ValueError, match="1-D"):
        trial_stats(np.ones((2, 2)))


def test_majority_accuracy_is_the_base_rate_of_a_hand_made_test_set():
    # one output, 3 ones of 4: always predicting 1 is right 3/4 of the time
    assert majority_accuracy(np.array([[1.0], [1.0], [0.0], [1.0]])) == 0.75
    # two outputs: 3/4 ones, and 1/4 ones (predict 0: right 3/4); a balanced third output is right 1/2
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]], dtype=float)
    assert majority_accuracy(y) == pytest.approx((0.75 + 0.75 + 0.5) / 3)
    assert majority_accuracy(torch.tensor([2, 2, 1, 0, 2]), loss="ce") == 0.6  # the most common class's share
    assert accuracy_resolution(y) == 1 / 12 and accuracy_resolution(np.zeros(450), loss="ce") == 1 / 450
    with pytest.raises(ValueError, match="empty"):
        majority_accuracy(np.zeros((0, 1)))
    with pytest.raises(ValueError, match="loss"):
        majority_accuracy(y, loss="mse")


# --------------------------------------------------------------------------- computational capacity


def _balanced_labels(N: int, F: int, seed: int = 0) -> np.ndarray:
    """(N, F) 0/1 labels, each column exactly half ones (a constant scores 1/2)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(np.arange(N) % 2) for _ in range(F)], axis=1)


@pytest.mark.parametrize("m", [0, 1, 5, 8])
def test_capacity_counts_the_features_a_network_computes(m):
    N, F = 400, 8
    y = _balanced_labels(N, F)
    rng = np.random.default_rng(1)
    pred = y.copy()
    wrong = rng.permutation(F)[: F - m]  # these features the "network" does not compute
    pred[:, wrong[: len(wrong) // 2]] = 1 - y[:, wrong[: len(wrong) // 2]]  # inverted: accuracy 0
    pred[:, wrong[len(wrong) // 2:]] = rng.integers(0, 2, (N, len(wrong) - len(wrong) // 2))  # guessed: ~1/2
    res = computational_capacity(pred, y)
    assert res.count == m and res.share == m / F and res.eps == CAPACITY_EPS == 0.02
    assert res.n_features == F and res.n_samples == N and res.trivial == 0
    assert sorted(np.flatnonzero(res.computed)) == sorted(set(range(F)) - set(wrong.tolist()))
    assert np.all(res.per_feature_accuracy[res.computed] == 1.0)
    assert np.all(res.per_feature_accuracy[~res.computed] < 0.7)
    np.testing.assert_allclose(res.constant_accuracy, 0.5)


def test_capacity_error_exactly_eps_counts_and_one_more_does_not():
    N = 50  # eps = 0.02 allows exactly one error in 50
    y = _balanced_labels(N, 3)
    pred = y.copy()
    pred[0, 1] = 1 - pred[0, 1]  # feature 1: one error (error 0.02 = eps)
    pred[:2, 2] = 1 - pred[:2, 2]  # feature 2: two errors (0.04)
    res = computational_capacity(pred, y, eps=0.02)
    assert res.computed.tolist() == [True, True, False] and res.count == 2
    np.testing.assert_allclose(res.per_feature_accuracy, [1.0, 0.98, 0.96])
    # a decimal eps whose float is just below it (0.3 < 3/10 in binary) still admits 3 errors in 10
    y10 = _balanced_labels(10, 1)
    p10 = y10.copy()
    p10[:3, 0] = 1 - p10[:3, 0]
    assert computational_capacity(p10, y10, eps=0.3).count == 1
    p10[3, 0] = 1 - p10[3, 0]
    assert computational_capacity(p10, y10, eps=0.3).count == 0


def test_capacity_accepts_bool_float_and_torch():
    y = _balanced_labels(100, 4)
    pred = y.copy()
    pred[:, 0] = 1 - pred[:, 0]
    ref = computational_capacity(pred, y)
    for a, b in [(pred.astype(bool), y.astype(bool)), (pred.astype(np.float32), y.astype(np.float64)),
                 (torch.from_numpy(pred).float(), torch.from_numpy(y))]:
        res = computational_capacity(a, b)
        assert res.count == ref.count == 3
        np.testing.assert_array_equal(res.per_feature_accuracy, ref.per_feature_accuracy)
    assert json.loads(json.dumps(ref.to_dict()))["count"] == 3


@pytest.mark.parametrize("eps", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.1", None])
def test_capacity_refuses_eps_outside_open_unit_interval_in_one_line(eps):
    y = _balanced_labels(10, 2)
    with pytest.raises(ValueError, match=r"^eps must be a number in \(0, 1\)") as e:
        computational_capacity(y, y, eps=eps)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("pred, y, match", [
    (np.zeros((10, 3)), np.zeros((10, 4)), "same shape"),
    (np.zeros((10, 3)), np.zeros((9, 3)), "same shape"),
    (np.zeros(10), np.zeros(10), "2-D"),
    (np.full((4, 2), 0.7), np.zeros((4, 2)), "0/1"),
    (np.zeros((4, 2)), np.full((4, 2), 2), "0/1"),
    (np.zeros((0, 2)), np.zeros((0, 2)), "at least one sample"),
    (np.zeros((3, 0)), np.zeros((3, 0)), "at least one sample"),
    (np.array([["a"]]), np.zeros((1, 1)), "numeric"),
])
def test_capacity_refuses_bad_arrays_in_one_line(pred, y, match):
    with pytest.raises(ValueError, match=match) as e:
        computational_capacity(pred, y)
    assert "\n" not in str(e.value)


def test_capacity_warns_when_a_constant_output_passes_a_feature():
    N = 200
    y = _balanced_labels(N, 3)
    y[:, 2] = 0
    y[:3, 2] = 1  # feature 2 is 1.5% positive: "always 0" has error 0.015 <= 0.02
    pred = y.copy()
    pred[:, 2] = 0
    with pytest.warns(UserWarning, match="1 of 3 features"):
        res = computational_capacity(pred, y)
    assert res.trivial == 1 and res.count == 3
    assert res.constant_accuracy[2] == pytest.approx(1 - 3 / N)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 40), F=st.integers(1, 6), eps=st.floats(0.01, 0.99), seed=st.integers(0, 10_000))
def test_capacity_grows_with_eps_and_falls_with_each_new_error(N, F, eps, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (N, F))
    pred = rng.integers(0, 2, (N, F))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = computational_capacity(pred, y, eps=eps)
        assert computational_capacity(pred, y, eps=min(0.999, eps * 1.5)).count >= a.count
        assert computational_capacity(y, y, eps=eps).count == F  # a perfect network computes everything
        right = np.argwhere(pred == y)
        if len(right):
            i, f = right[0]
            worse = pred.copy()
            worse[i, f] = 1 - worse[i, f]
            assert computational_capacity(worse, y, eps=eps).count <= a.count
    assert a.share == a.count / F and 0 <= a.count <= F
