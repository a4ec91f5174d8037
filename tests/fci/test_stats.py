"""Tests for fci.stats: the tests behind every verdict (SPEC §4, "Statistics over trials").

Known answers are worked by hand in the tests (enumerations, BH by hand, closed
forms); scipy is the reference only where it computes the same textbook formula.
"""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

import fci.stats
from fci.stats import (
    add_fdr,
    anova,
    bonferroni,
    check_verdict,
    degenerate,
    equivalence_test,
    fdr,
    mark_degenerate,
    noninferiority_test,
    not_applicable,
    paired_test,
    pooled_paired_test,
    tally,
    trend_test,
    trial_matrix,
    unpaired_test,
    verdict,
    verdict_record,
)

# The digits test split holds 450 samples; accuracies as a float32 model reports them.
N_TEST = 450


def _acc32(correct: list[int]) -> np.ndarray:
    return (np.array(correct, dtype=np.float32) / np.float32(N_TEST)).astype(np.float64)


def test_module_examples_hold():
    res = doctest.testmod(fci.stats, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 10 and res.failed == 0


# --------------------------------------------------------------------------- paired_test: the guard


def test_one_quantum_below_dense_in_every_trial_is_not_significant():
    # real_data --quick, width 16, random alpha=2: each of 3 trials exactly one test sample below dense
    dense, fpe = _acc32([437, 435, 435]), _acc32([436, 434, 434])
    d = fpe - dense
    assert np.ptp(d) > 0  # float32 rounding: the differences are not bit-identical ...
    assert sps.ttest_rel(fpe, dense).pvalue < 1e-9  # ... so the bare t-test calls it p ~ 8e-11
    for resolution in (1 / N_TEST, None):
        t = paired_test(fpe, dense, resolution=resolution)
        assert t.test == "exact sign-flip test"
        assert t.p == 0.25 and t.min_p == 0.25  # 2 of the 2**3 sign patterns are as extreme
        assert "do not vary beyond" in t.reason and "t-test does not apply" in t.reason
        assert t.ci is None and t.effect_size is None
        assert t.mean_diff == pytest.approx(-1 / N_TEST, rel=1e-4)  # float32 accuracies


def test_a_clear_effect_is_significant():
    rng = np.random.default_rng(1)
    dense = np.round(rng.uniform(0.85, 0.9, 5) * 2048) / 2048
    gain = np.array([0.04, 0.05, 0.06, 0.05, 0.05])  # 0.05 +- 0.01 (sd 0.0071)
    t = paired_test(dense + gain, dense, resolution=1 / 2048)
    assert t.test == "paired t-test" and t.reason is None
    # by hand: t = mean / (s / sqrt(n)) with s the sample sd of the gains
    s = gain.std(ddof=1)
    t_hand = 0.05 / (s / math.sqrt(5))
    assert t.statistic == pytest.approx(t_hand)
    assert t.p == pytest.approx(2 * sps.t.sf(t_hand, 4))
    assert t.p < 0.001
    h = sps.t.ppf(0.975, 4) * s / math.sqrt(5)
    assert t.ci == pytest.approx((0.05 - h, 0.05 + h))
    assert t.effect_size == pytest.approx(0.05 / s)
    lo, hi = t.effect_size_ci
    assert 0 < lo < t.effect_size < hi


def test_float_noise_is_no_difference():
    """Five pairs that differ by 1e-16 (the rounding of a subtraction) all 'point the same
    way', but the exact test must read them as no difference at all, not as p = 1/32."""
    a = np.array([0.9, 0.8, 0.7, 0.95, 0.85])
    t = paired_test(a + 1e-16, a, alternative="greater")
    assert t.test == "exact sign-flip test" and t.p == 1.0
    assert paired_test(a + 1e-16, a).p == 1.0
    down = trend_test(np.column_stack([a, a + 1e-16, a + 2e-16]), levels=[1, 2, 3], alternative="decreasing")
    assert down.first_break() is None  # a rise of 1e-16 does not break a falling trend


def test_t_test_agrees_with_scipy_where_it_applies():
    a = np.array([0.91, 0.88, 0.93, 0.90, 0.95])
    b = np.array([0.85, 0.86, 0.90, 0.84, 0.91])
    for alt in ("two-sided", "greater", "less"):
        ref = sps.ttest_rel(a, b, alternative=alt)
        t = paired_test(a, b, resolution=0.01, alternative=alt)
        assert t.p == pytest.approx(ref.pvalue) and t.statistic == pytest.approx(ref.statistic)


def test_constant_difference_over_ten_trials_is_exactly_two_in_1024():
    b = np.arange(10) / N_TEST + 0.5
    t = paired_test(b + 1 / N_TEST, b, resolution=1 / N_TEST)
    assert t.p == 2 / 1024 and t.test == "exact sign-flip test"
    assert paired_test(b + 1 / N_TEST, b, resolution=1 / N_TEST, alternative="greater").p == 1 / 1024
    assert paired_test(b + 1 / N_TEST, b, resolution=1 / N_TEST, alternative="less").p == 1.0
    assert paired_test(b, b).p == 1.0  # no difference at all


def test_two_adjacent_grid_values_are_resolved():
    # differences of 1 and 2 samples vary by a whole step: the t-test applies
    b = np.full(5, 0.9)
    t = paired_test(b + np.array([1, 2, 1, 2, 1]) / N_TEST, b, resolution=1 / N_TEST)
    assert t.test == "paired t-test" and t.reason is None


def test_too_few_pairs_give_no_p():
    for a, b in (([0.9], [0.8]), ([], [])):
        t = paired_test(a, b)
        assert t.p is None and t.n == len(a) and "at least 2" in t.reason
    assert verdict("x", paired_test([0.9], [0.8]), expect="greater")["verdict"] == "inconclusive"


def test_sign_flip_p_matches_enumeration_by_hand():
    # d = (1, 2, 3): the 8 sums of +-1 +-2 +-3 are 6, 4, 2, 0, 0, -2, -4, -6; observed 6
    t = paired_test([1.0, 2.0, 3.0], [0, 0, 0], method="permutation")
    assert t.p == 2 / 8 and t.test == "exact sign-flip test"  # |sum| >= 6: twice
    # d = (1, -2, 3): the same 8 sums; observed 2
    d = [1.0, -2.0, 3.0]
    assert paired_test(d, [0, 0, 0], method="permutation").p == 6 / 8  # |sum| >= 2: 6, 4, 2, -2, -4, -6
    assert paired_test(d, [0, 0, 0], method="permutation", alternative="greater").p == 3 / 8  # 6, 4, 2
    assert paired_test(d, [0, 0, 0], method="permutation", alternative="less").p == 6 / 8  # 2, 0, 0, -2, -4, -6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-6, 6), min_size=2, max_size=9), st.sampled_from(["two-sided", "greater", "less"]))
def test_sign_flip_matches_brute_force_and_never_beats_its_floor(ks, alt):
    d = np.array(ks, dtype=float) / 7.0
    n = d.size
    sums = np.array([np.dot(s, d) for s in itertools.product((1.0, -1.0), repeat=n)])
    obs, eps = d.sum(), 1e-9
    count = {"two-sided": np.abs(sums) >= abs(obs) - eps, "greater": sums >= obs - eps, "less": sums <= obs + eps}[alt].sum()
    t = paired_test(d, np.zeros(n), method="permutation", alternative=alt)
    assert t.p == pytest.approx(count / 2**n)
    assert t.p >= t.min_p == (2 if alt == "two-sided" else 1) / 2**n


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(-3, 3), st.lists(st.integers(300, 449), min_size=12, max_size=12))
def test_constant_differences_never_get_a_p_below_two_over_2_to_the_n(n, k, correct):
    b = _acc32(correct[:n])
    a = _acc32([c + k for c in correct[:n]])
    t = paired_test(a, b, resolution=1 / N_TEST)
    assert t.p is not None and t.p >= 2 / 2**n
    assert t.p == (1.0 if k == 0 else 2 / 2**n)


def test_one_sample_against_a_number():
    a = [0.30, 0.28, 0.35, 0.31, 0.29]
    t = paired_test(a, 0.16)
    assert t.test == "one-sample t-test"
    assert t.p == pytest.approx(sps.ttest_1samp(a, 0.16).pvalue)
    assert paired_test(a, [0.16] * 5).p == pytest.approx(t.p)


def test_effect_size_interval_is_symmetric_at_zero_and_near_the_large_sample_formula():
    t0 = paired_test([1.0, -1.0, 2.0, -2.0], [0, 0, 0, 0])
    lo, hi = t0.effect_size_ci
    assert t0.effect_size == 0 and lo == pytest.approx(-hi, abs=1e-6)
    rng = np.random.default_rng(0)
    d = rng.normal(0.5, 1.0, 400)
    t = paired_test(d, np.zeros(400))
    se = math.sqrt(1 / 400 + t.effect_size**2 / 800)  # Hedges & Olkin's large-sample s.e. of d_z
    assert t.effect_size_ci == pytest.approx((t.effect_size - 1.96 * se, t.effect_size + 1.96 * se), abs=0.01)


def test_non_finite_pairs_are_refused_or_dropped_when_asked():
    with pytest.raises(ValueError, match="NaN or inf.*nan_policy='omit'"):
        paired_test([0.9, math.nan, 0.8], [0.8, 0.7, 0.6])
    t = paired_test([0.9, math.nan, 0.85, 0.8], [0.8, 0.7, 0.7, 0.6], nan_policy="omit")
    assert t.n == 3 and t.p == pytest.approx(sps.ttest_rel([0.9, 0.85, 0.8], [0.8, 0.7, 0.6]).pvalue)


@pytest.mark.parametrize("kw, match", [
    (dict(a=[1, 2], b=[1]), "pair up"),
    (dict(a=[1, 2], b=[1, 2], alternative="bigger"), "alternative"),
    (dict(a=[1, 2], b=[1, 2], resolution=0), "resolution"),
    (dict(a=[1, 2], b=[1, 2], method="z"), "method"),
    (dict(a=[[1, 2]], b=[[1, 2]]), "1-D"),
    (dict(a=["x", "y"], b=[1, 2]), "numeric"),
])
def test_bad_input_is_refused_in_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        paired_test(**kw)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- pooled, unpaired, ANOVA


def test_pooled_test_keeps_trials_as_the_unit():
    # 3 trials x 4 depths; each trial's cells share a trial effect
    unit = np.repeat([0, 1, 2], 4)
    b = np.tile([0.80, 0.82, 0.84, 0.86], 3)
    gain = np.repeat([0.01, 0.03, 0.02], 4) + np.tile([0.0, 0.004, -0.004, 0.0], 3)
    t = pooled_paired_test(b + gain, b, unit, resolution=1 / N_TEST)
    assert t.n == 3 and "per-trial means (4 cells per trial)" in t.test
    per_trial = np.array([0.01, 0.03, 0.02])
    assert t.p == pytest.approx(sps.ttest_1samp(per_trial, 0).pvalue)
    assert t.p > paired_test(b + gain, b).p  # 12 "independent" pairs would overstate the evidence


def test_pooled_test_guard_uses_the_resolution_of_a_mean():
    # every cell one sample better: per-trial means all 1/450 better, steps of 1/(4*450)
    unit = np.repeat([0, 1, 2], 4)
    b = np.tile([0.80, 0.82, 0.84, 0.86], 3)
    t = pooled_paired_test(b + 1 / N_TEST, b, unit, resolution=1 / N_TEST)
    assert t.p == 0.25 and "sign-flip" in t.test


def test_unpaired_matches_student_and_welch():
    a, b = [0.5, 0.55, 0.52, 0.58], [0.45, 0.47, 0.44, 0.50, 0.41]
    for eq in (True, False):
        t = unpaired_test(a, b, equal_var=eq)
        assert t.p == pytest.approx(sps.ttest_ind(a, b, equal_var=eq).pvalue) and t.n == 4 and t.n_b == 5


def test_unpaired_constant_groups_get_the_exact_permutation_p():
    # 3 vs 3 constant groups: of the C(6, 3) = 20 splits, 2 are as extreme
    t = unpaired_test([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert t.p == pytest.approx(2 / 20) and t.min_p == pytest.approx(2 / 20) and "permutation" in t.test


def test_anova_matches_f_oneway_and_needs_variance():
    g = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [5.0, 6.0, 7.0]]
    r = anova(g)
    assert r.p == pytest.approx(sps.f_oneway(*g).pvalue) and r.statistic == pytest.approx(13.0)  # MSB 13 / MSW 1
    flat = anova([[1.0, 1.0], [2.0, 2.0]], resolution=1.0)
    assert flat.p is None and "within-group variance" in flat.reason


# --------------------------------------------------------------------------- corrections


def test_benjamini_hochberg_worked_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, 0.20, 0.045, None, math.nan]
    # sorted: 0.005 (1), 0.01 (2), 0.03 (3), 0.04 (4), 0.045 (5), 0.20 (6); m = 6
    # p m / i:  0.03, 0.03, 0.06, 0.06, 0.054, 0.20; running minimum from the top:
    # q:        0.03, 0.03, 0.054, 0.054, 0.054, 0.20
    c = fdr(p)
    assert c.family_size == 6 and c.correction == "benjamini-hochberg"
    assert c.q[:6] == pytest.approx((0.03, 0.054, 0.054, 0.03, 0.20, 0.054))
    assert c.q[6] is None and c.q[7] is None
    assert c.significant(0.05) == (True, False, False, True, False, False, None, None)
    b = bonferroni(p)
    assert b.q[:6] == pytest.approx((0.06, 0.24, 0.18, 0.03, 1.0, 0.27)) and b.family_size == 6


def test_empty_family_and_bad_p():
    assert fdr([None, math.nan]).family_size == 0
    with pytest.raises(ValueError, match="p-value 1 is 1.5"):
        fdr([0.1, 1.5])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=1, max_size=30))
def test_fdr_properties(ps):
    c = fdr(ps)
    tested = [(p, q) for p, q in zip(ps, c.q) if p is not None]
    assert c.family_size == len(tested)
    assert all((q is None) == (p is None) for p, q in zip(ps, c.q))
    for p, q in tested:
        assert p - 1e-12 <= q <= 1.0  # q >= p
        assert q <= bonferroni(ps).q[ps.index(p)] + 1e-12  # BH is never stricter than Bonferroni
    for (p1, q1), (p2, q2) in itertools.combinations(tested, 2):
        if p1 <= p2:
            assert q1 <= q2 + 1e-12  # monotone in p's rank
    assert sorted(q for _, q in tested) == pytest.approx(sorted(q for q in fdr(list(reversed(ps))).q if q is not None))


# --------------------------------------------------------------------------- trends


LEVELS = [4, 8, 16, 24]


def _noisy(means: list[float], sd: float, trials: int = 5, seed: int = 0) -> np.ndarray:
    return np.asarray(means) + np.random.default_rng(seed).normal(0, sd, (trials, len(means)))


def test_monotone_data_give_a_significant_increasing_trend():
    v = _noisy([0.0, 1.0, 2.0, 3.0], 0.1)
    assert all((np.diff(row) > 0).all() for row in v)  # every trial increases strictly
    t = trend_test(v, LEVELS, alternative="increasing")
    # every trial ranked 1 < 2 < 3 < 4: under no trend each trial has 1 of 4! = 24 orders, so p = 24**-5
    assert t.p == pytest.approx(24.0**-5) and t.rho == pytest.approx(1.0)
    assert t.peak == 24 and t.stops_after is None and t.first_break() is None and t.monotone()
    rec = verdict("the gain grows with the number of clauses", t, expect="increasing")
    assert rec["verdict"] == "agrees" and check_verdict(rec) is None


def test_peaked_data_are_not_monotone_and_the_peak_is_reported():
    v = _noisy([0.0, 5.4, 15.9, 6.3], 0.5)
    t = trend_test(v, LEVELS)
    assert t.p < 0.01 and t.direction == "increasing"  # the ranks do tend to rise ...
    assert t.peak == 16 and t.stops_after == 16  # ... up to 16 clauses
    b = t.first_break()
    assert (b.earlier, b.later) == (16, 24) and b.q < 0.05 and not t.monotone()
    assert b.mean_drop == pytest.approx(np.mean(v[:, 2] - v[:, 3]))
    rec = verdict("the gain grows with the number of clauses", t, expect="increasing")
    assert rec["verdict"] == "disagrees" and rec["family_size"] == 6 and "breaks after 16" in rec["reason"]
    assert check_verdict(rec) is None


def test_decreasing_trends_mirror_increasing_ones():
    v = _noisy([3.0, 2.0, 1.0, 0.0], 0.1)
    up = trend_test(v[:, ::-1], LEVELS, alternative="increasing")
    down = trend_test(v, LEVELS, alternative="decreasing")
    assert down.p == pytest.approx(up.p) and down.rho == pytest.approx(-1.0) and down.peak == 24
    assert trend_test(v, LEVELS).direction == "decreasing"
    assert verdict("falls", down, expect="decreasing")["verdict"] == "agrees"
    assert verdict("grows", trend_test(v, LEVELS), expect="increasing")["verdict"] == "disagrees"


def test_flat_or_small_designs_give_no_trend_p():
    flat = trend_test(np.full((5, 4), 0.5) + np.arange(5)[:, None] / N_TEST, LEVELS, resolution=1 / N_TEST)
    assert flat.p is None and "no order" in flat.reason
    assert verdict("grows", flat, expect="increasing")["verdict"] == "inconclusive"
    two = trend_test(_noisy([0.0, 1.0], 0.1), [4, 8])
    assert two.p is None and "3 levels" in two.reason and len(two.drops) == 1


def test_trend_input_checks():
    with pytest.raises(ValueError, match="increasing order"):
        trend_test(np.zeros((3, 3)), [8, 4, 16])
    with pytest.raises(ValueError, match="2-D"):
        trend_test(np.zeros(3))
    with pytest.raises(ValueError, match="lack a value"):
        trend_test(np.array([[1.0, 2.0, math.nan], [1.0, 2.0, 3.0]]))


def test_trial_matrix_pivots_long_tables():
    df = pd.DataFrame({"trial": [0, 0, 1, 1], "n_clauses": [8, 4, 4, 8], "gain": [2.0, 1.0, 3.0, 4.0]})
    m, levels = trial_matrix(df, "n_clauses", "gain")
    assert levels == [4, 8] and m.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match="repeat"):
        trial_matrix(pd.concat([df, df.iloc[:1]]), "n_clauses", "gain")


# --------------------------------------------------------------------------- equivalence


def test_tost_inside_the_margin_is_equivalent():
    rng = np.random.default_rng(3)
    b = rng.uniform(0.05, 0.10, 6)
    a = b + np.array([0.002, -0.003, 0.001, 0.0, -0.001, 0.002])
    e = equivalence_test(a, b, margin=0.02)
    d = a - b
    se = d.std(ddof=1) / math.sqrt(6)
    p_hand = max(sps.t.sf((d.mean() + 0.02) / se, 5), sps.t.cdf((d.mean() - 0.02) / se, 5))
    assert e.p == pytest.approx(p_hand) and e.p < 0.05 and e.kind == "equivalence"
    assert -0.02 < e.ci[0] < e.ci[1] < 0.02
    rec = verdict("random splits approximate the clause split", e)
    assert rec["verdict"] == "agrees" and "margin 0.02" in rec["test"] and check_verdict(rec) is None


def test_tost_outside_the_margin_disagrees():
    b = np.array([0.05, 0.06, 0.07, 0.08, 0.09])
    a = b - 0.05 + np.array([0.002, -0.001, 0.0, 0.001, -0.002])
    e = equivalence_test(a, b, margin=0.02)
    assert e.p > 0.5 and e.p_beyond < 0.05 and e.ci[1] < -0.02
    rec = verdict("random splits approximate the clause split", e)
    assert rec["verdict"] == "disagrees" and rec["p"] == e.p_beyond and check_verdict(rec) is None


def test_noninferiority_one_sided():
    b = np.array([0.05, 0.06, 0.07, 0.08, 0.09])
    slightly_worse = b - 0.005 + np.array([0.001, -0.001, 0.0, 0.001, -0.001])
    assert noninferiority_test(slightly_worse, b, margin=0.02).p < 0.05
    much_worse = b - 0.05 + np.array([0.001, -0.001, 0.0, 0.001, -0.001])
    r = noninferiority_test(much_worse, b, margin=0.02)
    assert r.p > 0.5 and r.p_beyond < 0.05


def test_tost_on_constant_differences_uses_the_exact_floor():
    b = np.array([0.5, 0.6, 0.7])
    assert equivalence_test(b, b, margin=0.01).p == 1 / 8  # 3 pairs: each one-sided sign-flip p is 1/8
    b5 = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    assert equivalence_test(b5, b5, margin=0.01).p == 1 / 32


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=3, max_size=8), st.floats(0.05, 1.0))
def test_tost_is_significant_exactly_when_its_interval_is_inside_the_margin(d, margin):
    d = np.asarray(d)
    assume(np.ptp(d) > 1e-3)
    e = equivalence_test(d, np.zeros(d.size), margin=margin)
    inside = -margin < e.ci[0] and e.ci[1] < margin
    assume(min(abs(e.ci[0] + margin), abs(e.ci[1] - margin)) > 1e-9)  # not on the boundary
    assert (e.p < 0.05) == inside


def test_margin_must_be_positive():
    with pytest.raises(ValueError, match="margin"):
        equivalence_test([1, 2], [1, 2], margin=0)


# --------------------------------------------------------------------------- degenerate cells


def test_degenerate_cells_are_named():
    assert degenerate([1.0, 1.0, 1.0]) == "every model at 1"
    assert "base rate 0.5" in degenerate([0.5, 0.5, 0.5], base_rate=0.5)
    assert "identical" in degenerate([0.7, 0.7 + 1e-9, 0.7], resolution=1 / 256)
    assert degenerate([0.7, 0.7 + 1 / 256, 0.7], resolution=1 / 256) is None
    assert degenerate([0.5, 0.6], base_rate=0.5) is None
    assert degenerate([]) == "no models"
    with pytest.raises(ValueError, match="NaN"):
        degenerate([0.5, math.nan])


def test_a_base_rate_per_model_holds_each_to_its_own_test_set():
    # three trials, each with its own test set: every model sits at its trial's majority share
    rates = [0.52, 0.55, 0.50]
    assert "base rate of its test set (0.5-0.55)" in degenerate(rates, base_rate=rates, resolution=0.01)
    assert degenerate([0.52, 0.55, 0.60], base_rate=rates, resolution=0.01) is None  # the third learned something
    assert "base rate 0.5" in degenerate([0.5, 0.5], base_rate=[0.5, 0.5])
    with pytest.raises(ValueError, match="one per value"):
        degenerate([0.5, 0.5, 0.5], base_rate=[0.5, 0.5])
    table = pd.DataFrame({"cell": [0], "condition": ["random"], "p": [0.5]})
    results = pd.DataFrame({"cell": 0, "condition": ["dense"] * 3 + ["random"] * 3, "test_accuracy": rates * 2,
                            "base_rate": rates * 2})
    marked = mark_degenerate(table, results, cell=["cell"], compare=["condition"], baseline={"condition": "dense"},
                             base_rate="base_rate", resolution=0.01)
    assert "nothing learned" in marked.degenerate.iloc[0]


def _grid() -> tuple[pd.DataFrame, pd.DataFrame]:
    """4 cells x (dense, random, clause) x 3 trials. In cell 3 every model is at 1.0;
    in cell 2 dense and random are, but one clause-split model is not."""
    rows = []
    accs = {0: ([0.80, 0.82, 0.81], [0.86, 0.88, 0.87], [0.90, 0.92, 0.91]),
            1: ([0.70, 0.72, 0.69], [0.70, 0.71, 0.70], [0.75, 0.76, 0.74]),
            2: ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.99, 1.0]),
            3: ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])}
    for cell, per in accs.items():
        for cond, vals in zip(("dense", "random", "clause"), per):
            rows += [{"cell": cell, "condition": cond, "trial": t, "test_accuracy": v, "base_rate": 0.5} for t, v in enumerate(vals)]
    results = pd.DataFrame(rows)
    st_rows = []
    for (cell, cond), g in results[results.condition != "dense"].groupby(["cell", "condition"]):
        b = results[(results.cell == cell) & (results.condition == "dense")].test_accuracy.to_numpy()
        t = paired_test(g.test_accuracy.to_numpy(), b, resolution=0.01)
        st_rows.append({"cell": cell, "condition": cond, "diff_mean": t.mean_diff, "p": t.p})
    return pd.DataFrame(st_rows), results


def test_degenerate_cells_leave_the_family_and_the_counts():
    table, results = _grid()
    random = table[table.condition == "random"].reset_index(drop=True)
    assert random.p.iloc[2] == 1.0 and random.p.iloc[3] == 1.0  # sign-flip p of no difference: once "not significant"
    whole = mark_degenerate(table, results, cell=["cell"], resolution=0.01)
    assert whole[whole.condition == "random"].degenerate.tolist() == [None, None, None, "every model at 1"]
    marked = mark_degenerate(table, results, cell=["cell"], compare=["condition"], baseline={"condition": "dense"},
                             base_rate="base_rate", resolution=0.01)
    # random vs dense in cell 2 cannot differ (both all at 1.0), whatever the clause split does there
    assert marked[marked.condition == "random"].degenerate.tolist() == [None, None, "every model at 1", "every model at 1"]
    assert marked[marked.condition == "clause"].degenerate.tolist() == [None, None, None, "every model at 1"]
    out = add_fdr(marked, family=["condition"], exclude="degenerate")
    r = out[out.condition == "random"]
    assert np.isnan(r.q.iloc[2:]).all() and r.family_size.iloc[2] is pd.NA and r.family_size.iloc[:2].tolist() == [2, 2]
    assert r.q.iloc[:2].tolist() == pytest.approx(fdr(random.p.iloc[:2]).q)
    counts = tally(r, "diff_mean")
    assert counts["family_size"] == 2 and counts["degenerate"] == 2 and counts["untested"] == 0
    assert counts["higher"] + counts["lower"] + counts["not_significant"] == 2


def test_add_fdr_corrects_each_family_separately():
    t = pd.DataFrame({"fam": ["a", "a", "b", "b", "b"], "p": [0.01, 0.04, 0.01, 0.02, math.nan]})
    out = add_fdr(t, family=["fam"])
    assert out.q.tolist()[:4] == pytest.approx([0.02, 0.04, 0.02, 0.02])
    assert math.isnan(out.q.iloc[4]) and out.family_size.tolist()[:4] == [2, 2, 2, 2]
    bon = add_fdr(t, family=["fam"], correction="bonferroni", q="q_bonferroni")
    assert bon.q_bonferroni.tolist()[:4] == pytest.approx([0.02, 0.08, 0.02, 0.04])


def test_mark_degenerate_refuses_cells_without_models():
    table, results = _grid()
    with pytest.raises(ValueError, match="no models"):
        mark_degenerate(table, results[results.cell != 2], cell=["cell"])
    with pytest.raises(ValueError, match="no baseline models"):
        mark_degenerate(table, results, cell=["cell"], compare=["condition"], baseline={"condition": "dense-1"})


# --------------------------------------------------------------------------- verdicts


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.sampled_from([0.01, 0.05, 0.1]), st.booleans(), st.booleans())
def test_verdict_is_a_pure_function_of_the_numbers(p, extra, alpha, supports, corrected):
    q = min(1.0, p + extra) if corrected else None
    rec = verdict_record("claim", "paired t-test", p=p, q=q, alpha=alpha, supports=supports,
                         correction="benjamini-hochberg" if corrected else "none", family_size=7 if corrected else 1)
    decisive = q if corrected else p
    if decisive >= alpha:
        assert rec["verdict"] == "inconclusive"  # a q above alpha never agrees or disagrees
    else:
        assert rec["verdict"] == ("agrees" if supports else "disagrees")
    assert check_verdict(rec) is None
    flipped = {**rec, "verdict": "agrees" if rec["verdict"] != "agrees" else "disagrees"}
    assert check_verdict(flipped) is not None


def test_verdict_from_a_paired_test_reads_its_direction():
    better = paired_test([0.95, 0.96, 0.94, 0.97, 0.95], [0.90, 0.90, 0.90, 0.91, 0.89])
    assert verdict("FPE beats dense", better, expect="greater")["verdict"] == "agrees"
    assert verdict("FPE is below dense", better, expect="less")["verdict"] == "disagrees"
    rec = verdict("FPE beats dense", better, expect="greater", q=0.2, family_size=48)
    assert rec["verdict"] == "inconclusive" and rec["correction"] == "benjamini-hochberg" and rec["family_size"] == 48


def test_records_that_do_not_add_up_are_caught():
    ok = verdict_record("c", "paired t-test", p=0.01, supports=True)
    assert check_verdict(ok) is None
    assert "missing" in check_verdict({k: v for k, v in ok.items() if k != "test"})
    assert "does not follow" in check_verdict({**ok, "p": 0.2})
    assert "below its p" in check_verdict({**ok, "q": 0.001, "correction": "benjamini-hochberg", "family_size": 3})
    assert "name its correction" in check_verdict({**ok, "q": 0.02})
    with pytest.raises(ValueError, match="reason"):
        verdict_record("c", "paired t-test", p=None)


def test_a_control_that_cannot_differ_is_not_applicable():
    rec = not_applicable("the restart stays within 0.5% of dense",
                         "plain SGD keeps no optimiser state: the alpha = 1 restart is bit-identical to dense")
    assert rec["verdict"] == "not applicable" and rec["p"] is None and check_verdict(rec) is None
    with pytest.raises(ValueError, match="reason"):
        not_applicable("c", "")


def test_results_serialise_to_json_values():
    import json

    t = paired_test([0.9], [0.8])
    d = t.to_dict()
    assert d["p"] is None and json.loads(json.dumps(d)) == d
    tr = trend_test(_noisy([0.0, 5.4, 15.9, 6.3], 0.5), LEVELS).to_dict()
    assert tr["breaks_after"] == 16 and json.dumps(tr)


def test_a_margin_off_the_grid_is_not_read_as_zero():
    # counts on a grid of one: 5 trials exactly at the prediction of 4, margin 0.4 (90% of 4)
    # lie 0.4 above the margin, less than half a step, and still above it in every trial
    t = noninferiority_test([4.0] * 5, 4.0, margin=0.4, resolution=1.0)
    assert t.p == pytest.approx(1 / 32) and t.p_beyond == 1.0
    # one step below the prediction is beyond the margin in every trial
    low = noninferiority_test([3.0] * 5, 4.0, margin=0.4, resolution=1.0)
    assert low.p == 1.0 and low.p_beyond == pytest.approx(1 / 32)
