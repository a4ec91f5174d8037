"""The statistics behind every verdict fci prints (SPEC §4, "Statistics over trials").

Every p-value a study reports comes from here, so one set of rules decides what
counts as evidence:

- **Tests that respect what was measured.** :func:`paired_test` compares paired
  trials (an FPE child against the dense baseline of the same trial). Its
  ``resolution`` is the smallest step the measurement can take (one test sample,
  ``1 / n_test``, for an accuracy). Where the differences do not vary beyond it,
  their variance is a rounding artefact, the t-test does not apply, and the exact
  sign-flip test answers instead: with ``n`` pairs it cannot give a p below
  ``2 / 2**n``, however constant the differences.
- **Families are corrected.** :func:`fdr` gives Benjamini–Hochberg q-values over
  the testable members of a family (untestable ones get ``None`` and are not
  counted in its size); :func:`add_fdr` does it per family for a table, and
  :func:`tally` counts significant cells by q.
- **Degenerate cells are named, not counted.** :func:`degenerate` says when a
  cell's models are all identical, all at the base rate or all at 1.0;
  :func:`mark_degenerate` marks them in a table.
- **Claims about order are tested with trials as the unit.** :func:`trend_test`
  runs Page's L test over a trials x levels table and reports where the trend
  breaks (a later level significantly below an earlier one).
- **Claims of closeness have a margin.** :func:`equivalence_test` (two
  one-sided tests) and :func:`noninferiority_test` state the margin they test.
- **Pooling keeps trials as the unit.** :func:`pooled_paired_test` averages each
  trial over its cells before testing across trials.
- **Verdicts are a pure function of the numbers.** :func:`verdict` turns a test
  result into the record a study's ``summary.json`` ``paper`` entry holds, and
  :func:`check_verdict` re-derives the verdict from the record.

Examples
--------
Three trials, each exactly one test sample (of 450) below dense, are not
evidence of a loss; a bare t-test reads their rounding noise as a variance and
calls it p = 0 (p ~ 1e-10 from float32 accuracies):

>>> from fci import stats
>>> dense = [437 / 450, 435 / 450, 435 / 450]
>>> fpe = [436 / 450, 434 / 450, 434 / 450]
>>> t = stats.paired_test(fpe, dense, resolution=1 / 450)
>>> t.test, t.p
('exact sign-flip test', 0.25)

A clear gain over five trials is:

>>> t = stats.paired_test([0.95, 0.96, 0.94, 0.97, 0.95], [0.90, 0.90, 0.90, 0.91, 0.89], resolution=1 / 2048)
>>> t.test, round(t.p, 5), round(t.mean_diff, 3)
('paired t-test', 0.00017, 0.054)

A family of cells, corrected, and a verdict that names its test and correction:

>>> c = stats.fdr([0.01, 0.04, None, 0.03])
>>> c.q, c.family_size
((0.03, 0.04, None, 0.04), 3)
>>> rec = stats.verdict("FPE beats dense", t, expect="greater", q=0.03, family_size=3, correction=c.correction)
>>> rec["verdict"], rec["correction"]
('agrees', 'benjamini-hochberg')

A trend over an ordered factor (trials as rows, levels as columns):

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> gains = np.array([0.0, 5.4, 15.9, 6.3]) + rng.normal(0, 0.5, (5, 4))
>>> tr = stats.trend_test(gains, levels=[4, 8, 16, 24], alternative="increasing")
>>> tr.peak, tr.first_break().earlier, tr.first_break().later
(16, 16, 24)
>>> stats.verdict("the gain grows with the number of clauses", tr, expect="increasing")["verdict"]
'disagrees'

A claim of closeness, with its margin, and a control that cannot differ:

>>> clause = [0.071, 0.065, 0.080, 0.069, 0.074]  # per-trial gains
>>> random = [0.070, 0.068, 0.077, 0.072, 0.071]
>>> e = stats.equivalence_test(random, clause, margin=0.01)
>>> e.test, e.p < 0.05
('paired TOST (t)', True)
>>> stats.not_applicable("the restart stays within 0.5% of dense",
...                      "plain SGD keeps no state: the restart is bit-identical to dense")["verdict"]
'not applicable'

For a table of grid cells (one row per cell and condition, raw ``p``) and the
per-model results it came from::

    st = stats.mark_degenerate(st, results, cell=["n_clauses", "optimizer"], compare=["condition", "alpha"],
                               baseline={"condition": "dense"}, base_rate="base_rate", resolution=1 / n_test)
    st = stats.add_fdr(st, p="p", family=["condition", "alpha"], exclude="degenerate")
    counts = stats.tally(st[st.condition == "random"], effect="rel_improvement_mean")
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "ALPHA",
    "VERDICTS",
    "Anova",
    "Comparison",
    "Correction",
    "Drop",
    "Equivalence",
    "TrendTest",
    "add_fdr",
    "anova",
    "bonferroni",
    "check_verdict",
    "degenerate",
    "equivalence_test",
    "fdr",
    "mark_degenerate",
    "noninferiority_test",
    "not_applicable",
    "paired_test",
    "pooled_paired_test",
    "tally",
    "trend_test",
    "trial_matrix",
    "unpaired_test",
    "verdict",
    "verdict_record",
]

ALPHA = 0.05
"""The significance level every verdict uses unless a study states another."""

VERDICTS = ("agrees", "disagrees", "inconclusive", "not applicable")
"""The verdicts a claim can get (see :func:`verdict_record` for the rule)."""

RELATIVE_TOLERANCE = 1e-6
"""Values closer than this fraction of their magnitude count as equal even without a
stated resolution: float32 models and float rounding leave differences this small
between numbers that are the same measurement."""

EXACT_MAX_PAIRS = 20
"""The sign-flip test enumerates all 2**n arrangements up to this many pairs; beyond
it, it draws RESAMPLES of them (seeded, so the p is reproducible)."""

EXACT_MAX_ARRANGEMENTS = 200_000
"""The two-sample permutation test enumerates every split of the pooled values up to
this many; beyond it, it draws RESAMPLES of them."""

RESAMPLES = 100_000
"""Random arrangements drawn where an exact permutation test would be too large."""

_CHUNK = 10_000

NCT_MAX = 1000.0
"""Effect-size intervals invert the noncentral t up to this |t|, and use the
large-sample normal approximation beyond it."""

Alternative = Literal["two-sided", "greater", "less"]
TrendAlternative = Literal["two-sided", "increasing", "decreasing"]
NanPolicy = Literal["raise", "omit"]

_ALTERNATIVES = ("two-sided", "greater", "less")


# --------------------------------------------------------------------------- results


def _jsonable(v: Any) -> Any:
    """Tuples to lists, NaN and numpy scalars to JSON values (NaN -> None)."""
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass(frozen=True)
class Comparison:
    """The result of a paired, one-sample or two-sample location test.

    Attributes:
        test: the test that gave ``p`` ("paired t-test", "exact sign-flip test", ...).
        n: pairs (paired and one-sample tests) or values in ``a`` (two-sample).
        mean_diff: mean of ``a - b`` (paired) or ``mean(a) - mean(b)`` (two-sample).
        ci: normal-theory confidence interval of ``mean_diff`` at ``level``;
            None where the variance is not measured (no spread beyond the resolution).
        effect_size: Cohen's d (d_z for pairs: mean difference over the standard
            deviation of the differences); None where that deviation is not measured.
        effect_size_ci: its confidence interval at ``level`` (noncentral t).
        statistic: t for the t-tests, the mean difference for permutation tests.
        p: the p-value; None where the data cannot give one (see ``reason``).
        alternative: "two-sided", "greater" (a > b) or "less".
        level: confidence level of the intervals.
        resolution: the smallest step the measurement can take (None: only float noise).
        min_p: the smallest p the test could have given on this design (permutation
            tests: 2 / 2**n two-sided); None for the t-test.
        reason: why no p was given, or why the t-test gave way to an exact test.
        n_b: values in ``b`` (two-sample tests); None otherwise.
    """

    test: str
    n: int
    mean_diff: float
    ci: tuple[float, float] | None
    effect_size: float | None
    effect_size_ci: tuple[float, float] | None
    statistic: float | None
    p: float | None
    alternative: str
    level: float
    resolution: float | None
    min_p: float | None
    reason: str | None
    n_b: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, NaN as None."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Correction:
    """p-values of one family of tests and their adjusted values.

    Attributes:
        correction: "benjamini-hochberg" or "bonferroni".
        p: the raw p-values, None where a member could not be tested.
        q: the adjusted values (BH q-values, or Bonferroni's min(1, m p)); None for
            members left out of the family.
        family_size: m, the number of members with a p-value.
    """

    correction: str
    p: tuple[float | None, ...]
    q: tuple[float | None, ...]
    family_size: int

    def significant(self, alpha: float = ALPHA) -> tuple[bool | None, ...]:
        """Per member: q < alpha, or None where it was not tested."""
        return tuple(None if q is None else q < alpha for q in self.q)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Drop:
    """A later level below an earlier one (for a decreasing trend: above it), tested
    with a one-sided paired test across trials.

    Attributes:
        earlier: the earlier level.
        later: the later level.
        mean_drop: mean over trials of (earlier - later), in the trend's direction.
        test: the paired test that gave ``p``.
        p: the one-sided paired test's p (None where it has none).
        q: its Benjamini–Hochberg q over every ordered pair of levels.
    """

    earlier: Any
    later: Any
    mean_drop: float
    test: str
    p: float | None
    q: float | None


@dataclass(frozen=True)
class TrendTest:
    """Page's L test of a monotone trend over an ordered factor, trials as blocks,
    and where the trend breaks.

    Attributes:
        test: "Page's L test (trials as blocks)".
        n: trials (complete rows) used.
        levels: the factor's levels, in order.
        means: mean over trials at each level.
        sems: standard error over trials at each level (None with one trial).
        statistic: Page's L for the increasing order.
        rho: the mean within-trial Spearman correlation of value with level order
            implied by L (1: every trial increases strictly; -1: every trial decreases).
        p: the p-value for ``alternative`` (two-sided: twice the smaller one-sided p).
        p_increasing: one-sided p for an increasing trend.
        p_decreasing: one-sided p for a decreasing trend.
        alternative: "two-sided", "increasing" or "decreasing".
        direction: "increasing" or "decreasing": the direction the peak and the drops
            are read in (for two-sided, the sign of ``rho``).
        peak: the level with the highest mean in ``direction`` (lowest for decreasing).
        stops_after: the first level after which the mean moves against
            ``direction`` (None when the means are monotone): descriptive only.
        drops: every ordered pair of levels, tested for a later level below an
            earlier one (in ``direction``), with BH q over the pairs.
        resolution: the measurement's smallest step; values within it tie.
        reason: why no p was given.
    """

    test: str
    n: int
    levels: tuple[Any, ...]
    means: tuple[float, ...]
    sems: tuple[float | None, ...]
    statistic: float | None
    rho: float | None
    p: float | None
    p_increasing: float | None
    p_decreasing: float | None
    alternative: str
    direction: str
    peak: Any
    stops_after: Any
    drops: tuple[Drop, ...]
    resolution: float | None
    reason: str | None

    def first_break(self, alpha: float = ALPHA) -> Drop | None:
        """Where the trend breaks: among the earliest level that some later level is
        significantly below (q < alpha), its most significant drop; None when no
        drop is significant (the trend is monotone as far as the data can tell)."""
        _check_alpha(alpha)
        sig = [d for d in self.drops if d.q is not None and d.q < alpha]
        if not sig:
            return None
        first = min(self.levels.index(d.earlier) for d in sig)
        return min((d for d in sig if self.levels.index(d.earlier) == first), key=lambda d: (d.q, -d.mean_drop))

    def monotone(self, alpha: float = ALPHA) -> bool:
        """True when no later level is significantly below an earlier one."""
        return self.first_break(alpha) is None

    def to_dict(self) -> dict[str, Any]:
        out = _jsonable(asdict(self))
        b = self.first_break()
        out["breaks_after"], out["breaks_to"] = (None, None) if b is None else (_jsonable(b.earlier), _jsonable(b.later))
        return out


@dataclass(frozen=True)
class Equivalence:
    """A paired equivalence (two one-sided tests) or non-inferiority test.

    Attributes:
        test: the test that gave ``p`` ("paired TOST (t)", "paired non-inferiority
            (exact sign-flip)", ...).
        kind: "equivalence" (|mean(a - b)| < margin) or "non-inferiority"
            (mean(a - b) > -margin).
        n: pairs.
        mean_diff: mean of ``a - b``.
        margin: the margin tested, in the units of ``a`` and ``b``.
        ci: the (1 - 2 alpha) confidence interval of ``mean_diff`` (equivalence
            holds at alpha exactly when it lies inside (-margin, margin)); None
            where the variance is not measured.
        p: evidence for the claim: the larger of the two one-sided p's (TOST), or
            the one-sided p against inferiority; None where the data cannot give one.
        p_beyond: evidence against it: the one-sided p that the mean difference is
            beyond the margin (for equivalence, on the side the estimate lies).
        alpha: the level the interval is built for.
        resolution: the measurement's smallest step.
        min_p: the smallest p the test could give (exact tests), else None.
        reason: why no p was given, or why the t-test gave way to an exact test.
    """

    test: str
    kind: str
    n: int
    mean_diff: float
    margin: float
    ci: tuple[float, float] | None
    p: float | None
    p_beyond: float | None
    alpha: float
    resolution: float | None
    min_p: float | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Anova:
    """A one-way analysis of variance across groups.

    Attributes:
        test: "one-way ANOVA".
        groups: the number of groups.
        n: values over every group.
        statistic: F; None where no p could be given.
        p: the p-value; None where the data cannot give one (see ``reason``).
        resolution: the measurement's smallest step.
        reason: why no p was given.
    """

    test: str
    groups: int
    n: int
    statistic: float | None
    p: float | None
    resolution: float | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


# --------------------------------------------------------------------------- input checks


def _vector(values: Any, name: str) -> np.ndarray:
    v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if v.dtype == object:
        try:
            v = v.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numeric") from None
    if not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
        raise ValueError(f"{name} must be numeric, got {v.dtype}")
    if v.ndim > 1:
        raise ValueError(f"{name} must be 1-D (one value per trial), got shape {v.shape}")
    return v.astype(np.float64).reshape(-1)


def _check_alternative(alternative: str, allowed: Sequence[str] = _ALTERNATIVES) -> None:
    if alternative not in allowed:
        raise ValueError(f"alternative must be one of {', '.join(allowed)}; got {alternative!r}")


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not (isinstance(alpha, (int, float, np.floating)) and not isinstance(alpha, bool) and 0 < alpha < 1):
        raise ValueError(f"{name} must be in (0, 1), got {alpha!r}")


def _check_resolution(resolution: float | None) -> None:
    if resolution is not None and not (isinstance(resolution, (int, float, np.floating)) and math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be a positive number (e.g. 1 / n_test for an accuracy) or None, got {resolution!r}")


def _check_nan_policy(nan_policy: str) -> None:
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")


def _paired(a: Any, b: Any, nan_policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as float vectors of equal length; b may be a scalar (a one-sample test
    against it). Non-finite pairs raise, or are dropped with nan_policy="omit"."""
    _check_nan_policy(nan_policy)
    x = _vector(a, "a")
    y = _vector(b, "b")
    if y.size == 1 and x.size != 1 and np.ndim(b) == 0:
        y = np.full_like(x, y[0])
    if x.shape != y.shape:
        raise ValueError(f"a and b must pair up, got {x.size} and {y.size} values")
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.all():
        if nan_policy == "raise":
            raise ValueError(f"{int((~ok).sum())} of {x.size} pairs hold NaN or inf (pairs {np.flatnonzero(~ok)[:5].tolist()}...); "
                             "drop them first or pass nan_policy='omit'")
        x, y = x[ok], y[ok]
    return x, y


def _finite(v: np.ndarray, name: str, nan_policy: str) -> np.ndarray:
    _check_nan_policy(nan_policy)
    ok = np.isfinite(v)
    if not ok.all():
        if nan_policy == "raise":
            raise ValueError(f"{name} holds {int((~ok).sum())} NaN or inf values; drop them first or pass nan_policy='omit'")
        v = v[ok]
    return v


def _tolerance(resolution: float | None, *scales: np.ndarray) -> float:
    """Half a resolution step, and never less than float noise on values this large."""
    scale = max((float(np.abs(s).max()) for s in scales if s.size), default=0.0)
    return max(0.5 * resolution if resolution else 0.0, RELATIVE_TOLERANCE * scale, 1e-300)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# --------------------------------------------------------------------------- permutation tests


def _count_p(null: np.ndarray, obs: float, alternative: str, tol: float) -> int:
    if alternative == "two-sided":
        return int((np.abs(null) >= abs(obs) - tol).sum())
    if alternative == "greater":
        return int((null >= obs - tol).sum())
    return int((null <= obs + tol).sum())


def _sign_flip(d: np.ndarray, alternative: str) -> tuple[float, float]:
    """Exact (n <= EXACT_MAX_PAIRS) or seeded Monte-Carlo sign-flip test of mean(d) = 0.

    Under the null the differences are symmetric about 0, so each of the 2**n sign
    patterns is as likely as the observed one. Returns (p, smallest attainable p)."""
    n = d.size
    obs = float(d.sum())
    tol = 1e-9 * max(float(np.abs(d).sum()), 1e-300)
    if n <= EXACT_MAX_PAIRS:
        sums = np.zeros(1)
        for x in d:  # every sign pattern's sum, built by doubling: 2**n values
            sums = np.concatenate([sums + x, sums - x])
        count = _count_p(sums, obs, alternative, tol)
        total = 2**n
        floor = (2 if alternative == "two-sided" else 1) / total
        return min(1.0, count / total), floor
    rng, count = np.random.default_rng(0), 0
    for start in range(0, RESAMPLES, _CHUNK):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(_CHUNK, RESAMPLES - start), n))  # (chunk, n)
        count += _count_p(signs @ d, obs, alternative, tol)
    return min(1.0, (count + 1) / (RESAMPLES + 1)), 1 / (RESAMPLES + 1)


def _label_permutation(x: np.ndarray, y: np.ndarray, alternative: str) -> tuple[float, float]:
    """Exact (or seeded Monte-Carlo) two-sample permutation test of mean(x) - mean(y) = 0.
    Returns (p, smallest attainable p)."""
    pooled = np.concatenate([x, y])
    N, k = pooled.size, x.size
    obs = float(x.mean() - y.mean())
    tol = 1e-9 * max(float(np.abs(pooled).max()), 1e-300)
    total = math.comb(N, k)
    if total <= EXACT_MAX_ARRANGEMENTS:
        idx = np.array(list(itertools.combinations(range(N), k)), dtype=np.int64)  # (total, k)
        s = pooled[idx].sum(axis=1)
        null = s / k - (pooled.sum() - s) / (N - k)
        count = _count_p(null, obs, alternative, tol)
        extreme = _count_p(null, float(np.abs(null).max()) if alternative == "two-sided" else
                           (float(null.max()) if alternative == "greater" else float(null.min())), alternative, tol)
        return min(1.0, count / total), extreme / total
    rng, count = np.random.default_rng(0), 0
    for start in range(0, RESAMPLES, _CHUNK):
        perm = np.argsort(rng.random((min(_CHUNK, RESAMPLES - start), N)), axis=1)[:, :k]  # (chunk, k): a random split
        s = pooled[perm].sum(axis=1)
        count += _count_p(s / k - (pooled.sum() - s) / (N - k), obs, alternative, tol)
    return min(1.0, (count + 1) / (RESAMPLES + 1)), 1 / (RESAMPLES + 1)


# --------------------------------------------------------------------------- intervals


def _t_p(t: float, df: float, alternative: str) -> float:
    from scipy import stats

    if alternative == "two-sided":
        return float(min(1.0, 2 * stats.t.sf(abs(t), df)))
    if alternative == "greater":
        return float(stats.t.sf(t, df))
    return float(stats.t.cdf(t, df))


def _t_interval(mean: float, se: float, df: float, level: float) -> tuple[float, float]:
    from scipy import stats

    h = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return (mean - h, mean + h)


def _nct_interval(t: float, df: float, level: float) -> tuple[float, float] | None:
    """Confidence interval of the noncentrality of a t statistic, by inverting the
    noncentral t's cdf. Beyond |t| = NCT_MAX (differences hundreds of times their
    spread, where that cdf is slow and imprecise) the large-sample normal
    approximation nc +- z sqrt(1 + nc**2 / (2 (df + 1))) is used instead."""
    from scipy import optimize, stats

    tail = (1 - level) / 2
    if abs(t) > NCT_MAX:
        h = float(stats.norm.ppf(1 - tail)) * math.sqrt(1 + t * t / (2 * (df + 1)))
        return (t - h, t + h)

    def root(target: float) -> float:
        f = lambda nc: float(stats.nct.cdf(t, df, nc)) - target  # decreasing in nc
        lo, hi, width = t - 1.0, t + 1.0, 1.0 + abs(t)
        for _ in range(40):
            if f(lo) > 0 > f(hi):
                return float(optimize.brentq(f, lo, hi, xtol=1e-10))
            lo, hi, width = lo - width, hi + width, 2 * width
        raise ValueError("not bracketed")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            lo, hi = root(1 - tail), root(tail)
        except (ValueError, RuntimeError, ArithmeticError):
            return None
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


# --------------------------------------------------------------------------- location tests


def _unresolved(d: np.ndarray, resolution: float | None, *scales: np.ndarray) -> tuple[bool, float]:
    tol = _tolerance(resolution, *scales)
    return bool(d.size and float(np.ptp(d)) < tol), tol


def _shift_p(d: np.ndarray, shift: float, alternative: str, unresolved: bool, method: str,
             tol: float = 0.0) -> tuple[str, float, float | None, float]:
    """(test, p, min_p, statistic) for mean(d) = shift, by the t-test or the sign-flip test.

    The sign-flip test reads a difference within ``tol`` of the shift (half a
    resolution step, or float noise) as exactly the shift: differences of 1e-16 are
    rounding, not five pairs that all point the same way."""
    if unresolved or method == "permutation":
        e = d - shift
        p, floor = _sign_flip(np.where(np.abs(e) < tol, 0.0, e), alternative)
        return "exact sign-flip test" if d.size <= EXACT_MAX_PAIRS else "sign-flip test (Monte Carlo)", p, floor, float(d.mean())
    n = d.size
    t = (float(d.mean()) - shift) / (float(d.std(ddof=1)) / math.sqrt(n))
    return "paired t-test", _t_p(t, n - 1, alternative), None, t


def _location(d: np.ndarray, scales: tuple[np.ndarray, ...], resolution: float | None, alternative: str, method: str,
              level: float, what: str) -> Comparison:
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    base: dict[str, Any] = dict(n=n, mean_diff=mean, alternative=alternative, level=level, resolution=resolution)
    if n < 2:
        return Comparison(test="none", ci=None, effect_size=None, effect_size_ci=None, statistic=None, p=None, min_p=None,
                          reason=f"{n} {what}: a test needs at least 2", **base)
    unresolved, tol = _unresolved(d, resolution, *scales)
    test, p, floor, stat = _shift_p(d, 0.0, alternative, unresolved, method, tol)
    if unresolved:
        spread = f"all {n} equal {_fmt(mean)}" if np.ptp(d) == 0 else f"spread {_fmt(float(np.ptp(d)))}"
        step = f"the resolution {_fmt(resolution)}" if resolution else "float precision"
        reason = (f"the differences do not vary beyond {step} ({spread}): their variance is not measured, so the t-test "
                  f"does not apply; {test} instead, whose smallest attainable p is {_fmt(floor or 0.0)}")
        return Comparison(test=test, ci=None, effect_size=None, effect_size_ci=None, statistic=stat, p=p, min_p=floor,
                          reason=reason, **base)
    s = float(d.std(ddof=1))
    t = mean / (s / math.sqrt(n))
    nct = _nct_interval(t, n - 1, level)
    return Comparison(test=test, ci=_t_interval(mean, s / math.sqrt(n), n - 1, level), effect_size=mean / s,
                      effect_size_ci=None if nct is None else (nct[0] / math.sqrt(n), nct[1] / math.sqrt(n)),
                      statistic=stat, p=p, min_p=floor, reason=None, **base)


def paired_test(a: Any, b: Any, resolution: float | None = None, alternative: Alternative = "two-sided",
                method: Literal["t", "permutation"] = "t", *, level: float = 0.95, nan_policy: NanPolicy = "raise") -> Comparison:
    """Paired test of ``a`` (e.g. FPE trials) against ``b`` (their paired baselines):
    the test behind every FPE-vs-baseline p.

    ``a`` and ``b`` hold one value per trial (``b`` may be a number: a one-sample
    test of ``a`` against it). ``resolution`` is the smallest step the measurement
    can take: ``1 / n_test`` for an accuracy on ``n_test`` samples.

    The default is the paired t-test: with the 3-5 trials a study runs, the exact
    sign-flip test cannot reach p < 0.05 two-sided (its smallest p is 2 / 2**n:
    0.25 at 3 pairs, 0.0625 at 5), while test accuracies, being averages over
    hundreds of samples, are close enough to normal for the t-test. The t-test's
    weakness is its variance estimate, so it is guarded: where the differences do
    not vary beyond the resolution (their spread, max - min, is under half a step:
    on a grid of that step, all equal) their variance is a rounding artefact, and
    the exact sign-flip test answers instead, with ``reason`` saying so. With fewer
    than 2 pairs there is no p. ``method="permutation"`` uses the sign-flip test
    throughout (exact up to 20 pairs).

    Three trials each one test sample below dense give p = 0.25, not 1e-10; a
    constant difference over 10 trials gives p = 2 / 1024.
    """
    _check_alternative(alternative)
    _check_resolution(resolution)
    _check_alpha(level, "level")
    if method not in ("t", "permutation"):
        raise ValueError(f"method must be 't' or 'permutation', got {method!r}")
    x, y = _paired(a, b, nan_policy)
    res = _location(x - y, (x, y), resolution, alternative, method, level, "pairs")
    return replace(res, test="one-sample t-test") if np.ndim(b) == 0 and res.test == "paired t-test" else res


def pooled_paired_test(a: Any, b: Any, unit: Any, resolution: float | None = None, alternative: Alternative = "two-sided",
                       method: Literal["t", "permutation"] = "t", *, level: float = 0.95,
                       nan_policy: NanPolicy = "raise") -> Comparison:
    """Paired test pooled over cells with trials as the unit: ``a[i]``, ``b[i]`` are a
    pair observed in trial ``unit[i]`` (e.g. child and dense at one depth of one
    trial). Each trial's pairs are averaged first, then :func:`paired_test` compares
    the per-trial means, so n is the number of trials, not of cells: cells of one
    trial share its task and seed and are not independent.

    The per-trial means of m cells move in steps of ``resolution / m``, so that is
    the resolution the test is guarded with (m the most cells any trial has)."""
    _check_resolution(resolution)
    _check_nan_policy(nan_policy)
    x, y, u = _vector(a, "a"), _vector(b, "b"), np.asarray(unit).reshape(-1)
    if not (x.size == y.size == u.size):
        raise ValueError(f"a, b and unit must have one entry per pair, got {x.size}, {y.size} and {u.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.all() and nan_policy == "raise":
        raise ValueError(f"{int((~ok).sum())} of {x.size} pairs hold NaN or inf; drop them first or pass nan_policy='omit'")
    frame = pd.DataFrame({"unit": u[ok], "a": x[ok], "b": y[ok]})
    g = frame.groupby("unit", sort=True)
    means, counts = g[["a", "b"]].mean(), g.size()
    m = int(counts.max()) if len(counts) else 1
    res = paired_test(means.a.to_numpy(), means.b.to_numpy(), None if resolution is None else resolution / m, alternative,
                      method, level=level)
    cells = f"{m} cell{'s' * (m != 1)}" if int(counts.min()) == m else f"up to {m} cells"
    return replace(res, test=f"{res.test} on per-trial means ({cells} per trial)")


def unpaired_test(a: Any, b: Any, resolution: float | None = None, alternative: Alternative = "two-sided", *,
                  equal_var: bool = True, level: float = 0.95, nan_policy: NanPolicy = "raise") -> Comparison:
    """Two-sample test of mean(a) = mean(b) for unpaired groups (Student's t, or
    Welch's with ``equal_var=False``).

    Guarded like :func:`paired_test`: where neither group varies beyond the
    resolution, the pooled variance is not measured and the exact two-sample
    permutation test answers instead (its smallest p is 2 / C(n_a + n_b, n_a) for
    equal groups). Each group needs 2 values. The effect size is Cohen's d with
    the pooled standard deviation."""
    from scipy import stats

    _check_alternative(alternative)
    _check_resolution(resolution)
    _check_alpha(level, "level")
    x = _finite(_vector(a, "a"), "a", nan_policy)
    y = _finite(_vector(b, "b"), "b", nan_policy)
    n1, n2 = int(x.size), int(y.size)
    mean = float(x.mean() - y.mean()) if n1 and n2 else math.nan
    base: dict[str, Any] = dict(n=n1, n_b=n2, mean_diff=mean, alternative=alternative, level=level, resolution=resolution)
    if n1 < 2 or n2 < 2:
        return Comparison(test="none", ci=None, effect_size=None, effect_size_ci=None, statistic=None, p=None, min_p=None,
                          reason=f"{n1} and {n2} values: each group needs at least 2", **base)
    tol = _tolerance(resolution, x, y)
    if float(np.ptp(x)) < tol and float(np.ptp(y)) < tol:
        p, floor = _label_permutation(x, y, alternative)
        test = "exact permutation test" if math.comb(n1 + n2, n1) <= EXACT_MAX_ARRANGEMENTS else "permutation test (Monte Carlo)"
        step = f"the resolution {_fmt(resolution)}" if resolution else "float precision"
        return Comparison(test=test, ci=None, effect_size=None, effect_size_ci=None, statistic=mean, p=p, min_p=floor,
                          reason=(f"neither group varies beyond {step}: the variance is not measured, so the t-test does not "
                                  f"apply; {test} instead, whose smallest attainable p is {_fmt(floor)}"),
                          **base)
    v1, v2 = float(x.var(ddof=1)), float(y.var(ddof=1))
    sp = math.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
    if equal_var:
        se, df, test = sp * math.sqrt(1 / n1 + 1 / n2), float(n1 + n2 - 2), "Student's t-test"
    else:
        se = math.sqrt(v1 / n1 + v2 / n2)
        df = se**4 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
        test = "Welch's t-test"
    r = stats.ttest_ind(x, y, equal_var=equal_var, alternative=alternative)
    scale = math.sqrt(1 / n1 + 1 / n2)
    nct = _nct_interval(mean / (sp * scale), n1 + n2 - 2, level)
    return Comparison(test=test, ci=_t_interval(mean, se, df, level), effect_size=mean / sp,
                      effect_size_ci=None if nct is None else (nct[0] * scale, nct[1] * scale), statistic=float(r.statistic),
                      p=float(r.pvalue), min_p=None, reason=None, **base)


def anova(groups: Iterable[Any], resolution: float | None = None, *, nan_policy: NanPolicy = "raise") -> Anova:
    """One-way ANOVA (scipy.stats.f_oneway) of whether the groups' means differ.

    Needs two groups and more values than groups. Where no group varies beyond the
    resolution, the within-group variance is not measured and no p is given."""
    from scipy import stats

    _check_resolution(resolution)
    gs = [_finite(_vector(g, f"group {i}"), f"group {i}", nan_policy) for i, g in enumerate(groups)]
    empty = [i for i, g in enumerate(gs) if not g.size]
    if empty and nan_policy == "raise":
        raise ValueError(f"groups {empty} have no values")
    gs = [g for g in gs if g.size]
    n = int(sum(g.size for g in gs))
    base: dict[str, Any] = dict(test="one-way ANOVA", groups=len(gs), n=n, resolution=resolution)
    if len(gs) < 2 or n <= len(gs):
        return Anova(statistic=None, p=None, reason=f"{len(gs)} groups, {n} values: needs 2 groups and more values than groups",
                     **base)
    tol = _tolerance(resolution, *gs)
    if all(float(np.ptp(g)) < tol for g in gs):
        return Anova(statistic=None, p=None, reason="no group varies beyond the resolution: the within-group variance is not measured",
                     **base)
    r = stats.f_oneway(*gs)
    return Anova(statistic=float(r.statistic), p=float(r.pvalue), reason=None, **base)


# --------------------------------------------------------------------------- equivalence


def _margin_tests(a: Any, b: Any, margin: float, resolution: float | None, alpha: float, nan_policy: str,
                  kind: str) -> Equivalence:
    _check_resolution(resolution)
    _check_alpha(alpha)
    if not (isinstance(margin, (int, float, np.floating)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a positive number in the units of a and b, got {margin!r}")
    x, y = _paired(a, b, nan_policy)
    d = x - y
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    base: dict[str, Any] = dict(kind=kind, n=n, mean_diff=mean, margin=float(margin), alpha=alpha, resolution=resolution)
    if n < 2:
        return Equivalence(test="none", ci=None, p=None, p_beyond=None, min_p=None, reason=f"{n} pairs: a test needs at least 2",
                           **base)
    unresolved, _ = _unresolved(d, resolution, x, y)
    # The margin is not on the measurement's grid: a difference a fraction of a step
    # from it is a real difference, so only float noise counts as "at the margin".
    tol = _tolerance(None, x, y)
    test, p_low, floor, _ = _shift_p(d, -margin, "greater", unresolved, "t", tol)  # mean > -margin
    if kind == "equivalence":
        _, p_high, _, _ = _shift_p(d, margin, "less", unresolved, "t", tol)  # mean < margin
        p = max(p_low, p_high)
        side = ("greater", margin) if mean >= 0 else ("less", -margin)
        _, p_beyond, _, _ = _shift_p(d, side[1], side[0], unresolved, "t", tol)
    else:
        p = p_low
        _, p_beyond, _, _ = _shift_p(d, -margin, "less", unresolved, "t", tol)
    name = "paired TOST" if kind == "equivalence" else "paired non-inferiority test"
    test = f"{name} ({'t' if test == 'paired t-test' else test.replace(' test', '')})"
    reason = None
    ci = None
    if unresolved:
        reason = (f"the differences do not vary beyond the resolution: their variance is not measured, so the t-test does "
                  f"not apply; exact sign-flip tests instead, whose smallest attainable p is {_fmt(floor or 0.0)}")
    else:
        ci = _t_interval(mean, float(d.std(ddof=1)) / math.sqrt(n), n - 1, 1 - 2 * alpha)
    return Equivalence(test=test, ci=ci, p=p, p_beyond=p_beyond, min_p=floor, reason=reason, **base)


def equivalence_test(a: Any, b: Any, margin: float, *, resolution: float | None = None, alpha: float = ALPHA,
                     nan_policy: NanPolicy = "raise") -> Equivalence:
    """Paired two one-sided tests (TOST): is |mean(a - b)| below ``margin``?

    For claims such as "random splits approximate the clause split's gains": ``a``
    and ``b`` are the two conditions' values per trial, ``margin`` the largest
    difference that still counts as "approximately equal", stated before looking.
    ``p`` < alpha means equivalent; ``p_beyond`` < alpha means the difference is
    beyond the margin. Guarded like :func:`paired_test`."""
    return _margin_tests(a, b, margin, resolution, alpha, nan_policy, "equivalence")


def noninferiority_test(a: Any, b: Any, margin: float, *, resolution: float | None = None, alpha: float = ALPHA,
                        nan_policy: NanPolicy = "raise") -> Equivalence:
    """Paired non-inferiority test: is mean(a - b) above ``-margin``?

    ``p`` < alpha means ``a`` is at worst ``margin`` below ``b``; ``p_beyond`` <
    alpha means it is more than ``margin`` below. A relative margin ("keeps at
    least half of b's gain") is a test of ``a - 0.5 * b`` against 0:
    ``paired_test(a, 0.5 * b, alternative="greater")``."""
    return _margin_tests(a, b, margin, resolution, alpha, nan_policy, "non-inferiority")


# --------------------------------------------------------------------------- corrections


def _pvector(pvalues: Iterable[Any]) -> tuple[list[float | None], np.ndarray]:
    ps: list[float | None] = []
    for i, p in enumerate(pvalues):
        if p is None or (isinstance(p, (float, np.floating)) and math.isnan(p)) or p is pd.NA:
            ps.append(None)
            continue
        v = float(p)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"p-value {i} is {v!r}, outside [0, 1]")
        ps.append(v)
    tested = np.array([p for p in ps if p is not None], dtype=np.float64)
    return ps, tested


def _spread(ps: list[float | None], adjusted: np.ndarray) -> tuple[float | None, ...]:
    it = iter(adjusted.tolist())
    return tuple(None if p is None else float(next(it)) for p in ps)


def fdr(pvalues: Iterable[Any]) -> Correction:
    """Benjamini–Hochberg q-values (scipy.stats.false_discovery_control) over one
    family of tests. None or NaN marks a member that could not be tested: it is
    left out of the family (not counted in its size) and gets q = None.

    q_(i) = min over j >= i of min(1, p_(j) m / j), p sorted ascending; a member is
    a discovery at false-discovery rate alpha when q < alpha."""
    from scipy import stats

    ps, tested = _pvector(pvalues)
    q = stats.false_discovery_control(tested, method="bh") if tested.size else tested
    return Correction(correction="benjamini-hochberg", p=tuple(ps), q=_spread(ps, np.minimum(np.asarray(q, float), 1.0)),
                      family_size=int(tested.size))


def bonferroni(pvalues: Iterable[Any]) -> Correction:
    """Bonferroni-adjusted p-values, min(1, m p), over the testable members (None or
    NaN are left out, as in :func:`fdr`). Controls the family-wise error rate:
    stricter than Benjamini–Hochberg, for comparison."""
    ps, tested = _pvector(pvalues)
    return Correction(correction="bonferroni", p=tuple(ps), q=_spread(ps, np.minimum(tested * tested.size, 1.0)),
                      family_size=int(tested.size))


# --------------------------------------------------------------------------- trends


def _trend_levels(levels: Sequence[Any] | None, k: int) -> tuple[Any, ...]:
    if levels is None:
        return tuple(range(k))
    lv = tuple(v.item() if isinstance(v, np.generic) else v for v in levels)
    if len(lv) != k:
        raise ValueError(f"levels has {len(lv)} entries for {k} columns")
    if len(set(lv)) != k:
        raise ValueError(f"levels must be distinct, got {list(lv)}")
    if all(isinstance(v, (int, float)) for v in lv) and any(b <= a for a, b in zip(lv, lv[1:])):
        raise ValueError(f"levels must be in increasing order (the order the trend is tested in), got {list(lv)}")
    return lv


def trend_test(values: Any, levels: Sequence[Any] | None = None, alternative: TrendAlternative = "two-sided", *,
               resolution: float | None = None, alpha: float = ALPHA, nan_policy: NanPolicy = "raise") -> TrendTest:
    """Is there a monotone trend over an ordered factor, with trials as the unit?

    ``values`` is (trials, levels): row t holds trial t's value at each level (e.g.
    the relative improvement at 4, 8, 16 and 24 clauses), columns in the factor's
    order, named by ``levels``. Page's L test ranks each trial's values across the
    levels and asks whether the ranks rise with the level (scipy.stats.page_trend_test,
    exact for small tables); it needs 2 trials and 3 levels, and values within
    ``resolution`` of each other tie.

    A significant L says the values tend to rise; it does not say they rise
    throughout. So every ordered pair of levels is also tested (one-sided paired
    test across trials, guarded as in :func:`paired_test`, BH over the pairs):
    :meth:`TrendTest.first_break` is the earliest level that some later level is
    significantly below, and ``peak`` the level with the highest mean. Gains of
    +0.0 / +5.4 / +15.9 / +6.3 over four levels rise in rank (L is significant)
    but break after the third level, the peak.

    ``alternative``: "increasing", "decreasing", or "two-sided" (twice the smaller
    one-sided p; the direction is then read from the sign of ``rho``)."""
    from scipy import stats

    _check_alternative(alternative, ("two-sided", "increasing", "decreasing"))
    _check_resolution(resolution)
    _check_alpha(alpha)
    _check_nan_policy(nan_policy)
    v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D (trials, levels), got shape {v.shape}")
    lv = _trend_levels(levels, v.shape[1])
    complete = np.isfinite(v).all(axis=1)
    if not complete.all():
        if nan_policy == "raise":
            raise ValueError(f"{int((~complete).sum())} of {v.shape[0]} trials lack a value at some level; "
                             "drop them first or pass nan_policy='omit'")
        v = v[complete]
    n, k = v.shape
    means = tuple(float(m) for m in v.mean(axis=0)) if n else tuple(math.nan for _ in lv)
    sems = tuple(float(s) / math.sqrt(n) for s in v.std(axis=0, ddof=1)) if n >= 2 else tuple(None for _ in lv)
    L = rho = p = p_inc = p_dec = None
    reason = None
    tol = _tolerance(resolution, v)
    if n < 2 or k < 3:
        reason = f"{n} trials and {k} levels: Page's test needs at least 2 trials and 3 levels"
    elif all(float(np.ptp(row)) < tol for row in v):
        reason = "within every trial the values do not vary beyond the resolution: there is no order to test"
    else:
        r = np.round(v / (2 * tol)) * (2 * tol)  # values within a resolution step (or float noise) tie
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inc = stats.page_trend_test(r)
            p_dec = float(stats.page_trend_test(r[:, ::-1]).pvalue)
        L, p_inc = float(inc.statistic), float(inc.pvalue)
        rho = 12 * L / (n * k * (k * k - 1)) - 3 * (k + 1) / (k - 1)
        p = {"increasing": p_inc, "decreasing": p_dec, "two-sided": min(1.0, 2 * min(p_inc, p_dec))}[alternative]
    up = alternative == "increasing" or (alternative == "two-sided" and (rho is None or rho >= 0))
    sign = 1.0 if up else -1.0
    m = np.asarray(means)
    peak = lv[int(np.nanargmax(sign * m))] if n else None
    falls = np.flatnonzero(sign * np.diff(m) < 0)
    stops_after = lv[int(falls[0])] if falls.size else None
    drops: tuple[Drop, ...] = ()
    if n >= 2 and k >= 2:
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        tests = [paired_test(sign * v[:, i], sign * v[:, j], resolution, "greater") for i, j in pairs]
        qs = fdr([t.p for t in tests]).q
        drops = tuple(Drop(earlier=lv[i], later=lv[j], mean_drop=t.mean_diff, test=t.test, p=t.p, q=q) for (i, j), t, q in zip(pairs, tests, qs))
    return TrendTest(test="Page's L test (trials as blocks)", n=n, levels=lv, means=means, sems=sems, statistic=L, rho=rho, p=p,
                     p_increasing=p_inc, p_decreasing=p_dec, alternative=alternative,
                     direction="increasing" if up else "decreasing", peak=peak, stops_after=stops_after, drops=drops,
                     resolution=resolution, reason=reason)


def trial_matrix(frame: pd.DataFrame, level: str, value: str, unit: str = "trial") -> tuple[np.ndarray, list[Any]]:
    """A long table (one row per trial and level) as :func:`trend_test`'s input:
    (values (trials, levels), levels in ascending order). Missing cells are NaN; two
    rows for one (trial, level) are an error."""
    for c in (level, value, unit):
        if c not in frame.columns:
            raise ValueError(f"frame has no column {c!r}")
    dup = frame.duplicated([unit, level])
    if dup.any():
        r = frame[dup].iloc[0]
        raise ValueError(f"{int(dup.sum())} rows repeat a ({unit}, {level}) pair, e.g. ({r[unit]}, {r[level]})")
    wide = frame.pivot(index=unit, columns=level, values=value).sort_index(axis=1)
    return wide.to_numpy(dtype=np.float64), [v.item() if isinstance(v, np.generic) else v for v in wide.columns]


# --------------------------------------------------------------------------- degenerate cells


def degenerate(values: Any, *, base_rate: float | Sequence[float] | np.ndarray | None = None, ceiling: float | None = 1.0,
               resolution: float | None = None) -> str | None:
    """Why a cell's per-model values (every model of every condition in it) cannot
    tell its conditions apart, or None when they can.

    A cell is degenerate when every model is at ``ceiling`` (1.0: the task is solved
    by all), every model is at ``base_rate`` (nothing learned), or every model has
    the same value; values within half a ``resolution`` step count as equal.
    ``base_rate`` is one number, or one per value (each model's own test set, where
    trials draw their own). Tables report such cells as degenerate and leave them
    out of families and counts."""
    _check_resolution(resolution)
    v = _vector(values, "values")
    if not np.isfinite(v).all():
        raise ValueError(f"values hold {int((~np.isfinite(v)).sum())} NaN or inf entries")
    if v.size == 0:
        return "no models"
    tol = _tolerance(resolution, v)
    if ceiling is not None and float(np.abs(v - ceiling).max()) < tol:
        return f"every model at {ceiling:g}"
    if base_rate is not None:
        br = _vector(base_rate, "base_rate")
        if br.size not in (1, v.size):
            raise ValueError(f"base_rate must be one number or one per value ({v.size}), got {br.size}")
        if np.isfinite(br).all() and float(np.abs(v - br).max()) < tol:
            at = f"{br[0]:.4g}" if float(np.ptp(br)) < tol else f"of its test set ({br.min():.4g}-{br.max():.4g})"
            return f"every model at the base rate {at} (nothing learned)"
    if float(np.ptp(v)) < tol:
        return f"every model identical ({v[0]:.4g})"
    return None


def _per_cell(g: pd.DataFrame, spec: float | str | None, name: str) -> float | None:
    if spec is None or not isinstance(spec, str):
        return spec
    vals = g[spec].unique()
    if len(vals) != 1:
        raise ValueError(f"{name} column {spec!r} varies within a cell: {sorted(vals.tolist())[:4]}")
    return float(vals[0])


def _per_model(g: pd.DataFrame, spec: float | str | None) -> float | np.ndarray | None:
    """A base rate for :func:`degenerate`: the number, or the column's value per model."""
    if spec is None or not isinstance(spec, str):
        return spec
    return g[spec].to_numpy(dtype=np.float64)


def mark_degenerate(table: pd.DataFrame, results: pd.DataFrame, cell: Sequence[str], *, compare: Sequence[str] = (),
                    baseline: Mapping[str, Any] | None = None, value: str = "test_accuracy", base_rate: float | str | None = None,
                    resolution: float | str | None = None, ceiling: float | None = 1.0, column: str = "degenerate") -> pd.DataFrame:
    """``table`` with a ``column`` saying why each of its rows is degenerate
    (:func:`degenerate` over the models it compares) or None.

    ``cell`` names the columns of a cell (shared by a child and its baseline).
    Without ``compare``, a row's models are every model of its cell in ``results``.
    With ``compare`` (e.g. ``["condition", "alpha"]``, the columns that tell a
    table's rows within a cell apart), they are the models of that condition plus
    the cell's ``baseline`` models (e.g. ``{"condition": "dense"}``): a child and
    dense all at 1.0 cannot differ, whatever another child of the cell does.
    ``base_rate`` and ``resolution`` are numbers or columns of ``results``; a
    base-rate column may vary within a cell (each model is held to its own trial's
    test set), a resolution column may not."""
    cell, compare = list(cell), list(compare)
    for c in cell + compare:
        if c not in table.columns or c not in results.columns:
            raise ValueError(f"column {c!r} must be in both table and results")
    if value not in results.columns:
        raise ValueError(f"results has no column {value!r}")
    def match(cols: Mapping[str, Any]) -> np.ndarray:
        return np.logical_and.reduce([results[c].to_numpy() == v for c, v in cols.items()], initial=True)  # (len(results),)

    for c in baseline or {}:
        if c not in results.columns:
            raise ValueError(f"results has no baseline column {c!r}")
    base = match(baseline) if baseline else np.zeros(len(results), dtype=bool)
    if baseline and not base.any():
        raise ValueError(f"no baseline models in results match {dict(baseline)}")
    keys = cell + compare
    rows = []
    for _, row in table[keys].drop_duplicates().iterrows():
        in_cell = match({c: row[c] for c in cell})
        own = in_cell & match({c: row[c] for c in compare})
        if not own.any():
            raise ValueError(f"a table row has no models in results: {dict((c, row[c]) for c in keys)}")
        models = results[own | (in_cell & base)] if compare else results[in_cell]
        rows.append({**{c: row[c] for c in keys}, column: degenerate(
            models[value].to_numpy(float), base_rate=_per_model(models, base_rate), ceiling=ceiling,
            resolution=_per_cell(models, resolution, "resolution"))})
    marks = pd.DataFrame(rows, columns=[*keys, column])
    out = table.drop(columns=[column], errors="ignore").merge(marks, on=keys, how="left")
    out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def _excluded(table: pd.DataFrame, exclude: str | Sequence[bool] | np.ndarray | pd.Series | None) -> np.ndarray:
    if exclude is None:
        return np.zeros(len(table), dtype=bool)
    if isinstance(exclude, str):
        if exclude not in table.columns:
            raise ValueError(f"table has no column {exclude!r} to exclude by")
        col = table[exclude]
        return np.array([not (x is None or x is False or x == "" or (isinstance(x, float) and math.isnan(x))) for x in col], dtype=bool)
    mask = np.asarray(exclude, dtype=bool)
    if mask.shape != (len(table),):
        raise ValueError(f"exclude must have one entry per row ({len(table)}), got shape {mask.shape}")
    return mask


def add_fdr(table: pd.DataFrame, p: str = "p", *, family: Sequence[str] = (), exclude: str | Sequence[bool] | None = None,
            q: str = "q", size: str = "family_size", correction: Literal["benjamini-hochberg", "bonferroni"] = "benjamini-hochberg",
            ) -> pd.DataFrame:
    """A copy of ``table`` with the adjusted p of each row (column ``q``) and the size
    of its family (column ``size``).

    Rows sharing the values of the columns ``family`` form one family (no columns:
    the whole table is one). Rows whose ``p`` is NaN, and rows marked by ``exclude``
    (a column such as "degenerate", whose non-empty entries exclude, or a boolean
    mask), are left out of their family: they get q = NaN and no family size."""
    if p not in table.columns:
        raise ValueError(f"table has no column {p!r}")
    for c in family:
        if c not in table.columns:
            raise ValueError(f"table has no family column {c!r}")
    adjusters: dict[str, Callable[[Iterable[Any]], Correction]] = {"benjamini-hochberg": fdr, "bonferroni": bonferroni}
    adjust = adjusters.get(correction)
    if adjust is None:
        raise ValueError(f"correction must be 'benjamini-hochberg' or 'bonferroni', got {correction!r}")
    out = table.copy()
    pv = pd.to_numeric(out[p], errors="raise").to_numpy(dtype=np.float64)
    pv = np.where(_excluded(out, exclude), np.nan, pv)
    qv = np.full(len(out), np.nan)
    sizes = pd.array([pd.NA] * len(out), dtype="Int64")
    groups = [np.arange(len(out))] if not family else [np.asarray(ix) for ix in out.groupby(list(family), sort=False, dropna=False).indices.values()]
    for ix in groups:
        adjusted = adjust(pv[ix])
        qv[ix] = [math.nan if x is None else x for x in adjusted.q]
        sizes[ix[np.isfinite(pv[ix])]] = adjusted.family_size
    out[q] = qv
    out[size] = sizes
    return out


def tally(table: pd.DataFrame, effect: str, *, q: str = "q", alpha: float = ALPHA, degenerate: str | None = "degenerate") -> dict[str, Any]:
    """Counts over one family of cells: ``higher`` / ``lower`` (q < alpha with a
    positive / negative ``effect``), ``not_significant``, ``degenerate`` (cells
    marked in the column ``degenerate``) and ``untested`` (no q otherwise);
    ``family_size`` is the number of cells with a q."""
    _check_alpha(alpha)
    for c in (effect, q):
        if c not in table.columns:
            raise ValueError(f"table has no column {c!r}")
    deg = _excluded(table, degenerate) if degenerate is not None and degenerate in table.columns else np.zeros(len(table), bool)
    qv = pd.to_numeric(table[q]).to_numpy(dtype=np.float64)
    e = pd.to_numeric(table[effect]).to_numpy(dtype=np.float64)
    tested = np.isfinite(qv) & ~deg
    sig = tested & (qv < alpha)
    return {"alpha": alpha, "family_size": int(tested.sum()), "higher": int((sig & (e > 0)).sum()),
            "lower": int((sig & (e < 0)).sum()), "not_significant": int((tested & ~(sig & (e != 0))).sum()),
            "degenerate": int(deg.sum()), "untested": int((~tested & ~deg).sum())}


# --------------------------------------------------------------------------- verdicts


def _decide(decisive: float | None, alpha: float, supports: bool | None, applicable: bool) -> str:
    """The verdict rule: not applicable if so marked; inconclusive without a p or
    at p (or q) >= alpha; otherwise agrees or disagrees as the result supports the claim."""
    if not applicable:
        return "not applicable"
    if decisive is None or not decisive < alpha:
        return "inconclusive"
    return "agrees" if supports else "disagrees"


def _prob(x: Any, name: str) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    v = float(x)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] or None, got {x!r}")
    return v


def verdict_record(claim: str, test: str, *, p: float | None, q: float | None = None, alpha: float = ALPHA,
                   correction: str = "none", family_size: int = 1, supports: bool | None = None, reason: str | None = None,
                   applicable: bool = True) -> dict[str, Any]:
    """The record of one claim's verdict, a pure function of the numbers in it.

    The deciding value is ``q`` when the claim's test belongs to a corrected family,
    else ``p``. The verdict is "not applicable" when the test cannot apply (a
    control identical to its baseline by construction; ``reason`` says why),
    "inconclusive" when there is no p (``reason`` says why) or it is not below
    ``alpha``, and otherwise "agrees" or "disagrees" as ``supports`` says whether the
    significant result lies in the claim's direction.

    Returns {"claim", "test", "p", "q", "alpha", "correction", "family_size",
    "supports", "verdict", "reason"}; a study adds its own "measured" and "note"."""
    if not claim or not isinstance(claim, str):
        raise ValueError("claim must be a non-empty string")
    if not test or not isinstance(test, str):
        raise ValueError("test must name the test that decides the claim")
    _check_alpha(alpha)
    pv, qv = _prob(p, "p"), _prob(q, "q")
    if qv is not None:
        if pv is None:
            raise ValueError("q is given without its raw p")
        if qv < pv - 1e-12:
            raise ValueError(f"q ({qv:g}) is below its p ({pv:g}): an adjusted p is never smaller")
        if correction == "none":
            raise ValueError("q is given: name its correction (e.g. 'benjamini-hochberg')")
        if not (isinstance(family_size, (int, np.integer)) and family_size >= 1):
            raise ValueError(f"family_size must be a positive integer, got {family_size!r}")
    else:
        if correction != "none":
            raise ValueError(f"correction {correction!r} is named but no q is given")
        family_size = 1
    decisive = qv if qv is not None else pv
    if not applicable and not reason:
        raise ValueError("a claim that is not applicable needs a reason")
    if applicable and decisive is None and not reason:
        raise ValueError("no p or q: give the reason the test could not be run")
    if applicable and decisive is not None and decisive < alpha and supports is None:
        raise ValueError("a significant result needs supports=True or False (its direction against the claim)")
    return {"claim": claim, "test": test, "p": pv, "q": qv, "alpha": alpha, "correction": correction,
            "family_size": int(family_size), "supports": None if supports is None else bool(supports),
            "verdict": _decide(decisive, alpha, supports, applicable), "reason": reason}


def not_applicable(claim: str, reason: str, test: str = "none") -> dict[str, Any]:
    """The record of a claim no test can decide on this design (e.g. a restart control
    that is bit-identical to its baseline under an optimiser without state)."""
    return verdict_record(claim, test, p=None, reason=reason, applicable=False)


Expect = Literal["greater", "less", "different", "increasing", "decreasing"]


def verdict(claim: str, result: Comparison | TrendTest | Equivalence | Anova, expect: Expect | None = None, *,
            q: float | None = None, correction: str | None = None, family_size: int | None = None,
            alpha: float = ALPHA) -> dict[str, Any]:
    """The verdict record (:func:`verdict_record`) of ``claim`` from a test result.

    ``expect`` is what the claim predicts: "greater" or "less" (``a`` against ``b``)
    or "different" for a :class:`Comparison`; "increasing" or "decreasing" for a
    :class:`TrendTest`; "different" (or None) for an :class:`Anova`; nothing for an
    :class:`Equivalence` (its kind is the claim). ``q``, ``correction`` and
    ``family_size`` apply when the result's p belongs to a corrected family.

    A trend claim agrees when L is significant in the expected direction and no
    later level is significantly below an earlier one; where one is, it disagrees
    on that pair's test (its q over the level pairs). An equivalence claim agrees on
    the TOST p and disagrees on ``p_beyond``; with a family ``q`` (for the TOST p)
    it can only agree or be inconclusive."""
    fam: dict[str, Any] = dict(q=q, correction=correction or ("none" if q is None else "benjamini-hochberg"),
                               family_size=1 if family_size is None else family_size, alpha=alpha)
    if isinstance(result, Comparison):
        if expect not in ("greater", "less", "different"):
            raise ValueError(f"expect must be 'greater', 'less' or 'different' for a comparison, got {expect!r}")
        supports = {"greater": result.mean_diff > 0, "less": result.mean_diff < 0, "different": True}[expect]
        return verdict_record(claim, result.test, p=result.p, supports=supports, reason=result.reason, **fam)
    if isinstance(result, Anova):
        if expect not in (None, "different"):
            raise ValueError(f"an ANOVA can only test that groups differ (expect='different'), got {expect!r}")
        return verdict_record(claim, result.test, p=result.p, supports=True, reason=result.reason, **fam)
    if isinstance(result, Equivalence):
        if expect is not None:
            raise ValueError("an equivalence or non-inferiority result states its own claim; leave expect out")
        if result.p is not None and q is None and result.p >= alpha and result.p_beyond is not None and result.p_beyond < alpha:
            side = "beyond the margin" if result.kind == "equivalence" else "below -margin"
            return verdict_record(claim, f"{result.test}: one-sided test of a difference {side} ({_fmt(result.margin)})",
                                  p=result.p_beyond, supports=False, reason=result.reason, alpha=alpha)
        return verdict_record(claim, f"{result.test}, margin {_fmt(result.margin)}", p=result.p, supports=True,
                              reason=result.reason, **fam)
    if isinstance(result, TrendTest):
        if expect not in ("increasing", "decreasing"):
            raise ValueError(f"expect must be 'increasing' or 'decreasing' for a trend, got {expect!r}")
        against = result.direction != expect
        b = None if against else result.first_break(alpha)
        if b is not None:
            pairs = len(result.drops)
            return verdict_record(
                claim, f"{b.test}, one-sided, across trials: {b.later} below {b.earlier} (BH over {pairs} level pairs)",
                p=b.p, q=b.q, correction="benjamini-hochberg", family_size=pairs, supports=False, alpha=alpha,
                reason=f"the trend breaks after {b.earlier} (peak {result.peak}): {b.later} is lower by {_fmt(b.mean_drop)} on average")
        rho = result.rho if result.rho is not None else 0.0
        supports = (rho > 0) if expect == "increasing" else (rho < 0)
        return verdict_record(claim, f"{result.test}, {result.alternative}", p=result.p, supports=supports, reason=result.reason, **fam)
    raise TypeError(f"no verdict rule for {type(result).__name__}")


_RECORD_KEYS = ("claim", "test", "p", "q", "alpha", "correction", "family_size", "supports", "verdict", "reason")


def check_verdict(record: dict[str, Any]) -> str | None:
    """None when ``record`` (a study's ``paper`` entry) names its test and its verdict
    follows from its numbers by :func:`verdict_record`'s rule; otherwise a one-line
    description of what is wrong."""
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    if record["verdict"] not in VERDICTS:
        return f"verdict {record['verdict']!r} is not one of {', '.join(VERDICTS)}"
    try:
        expected = verdict_record(record["claim"], record["test"], p=record["p"], q=record["q"], alpha=record["alpha"],
                                  correction=record["correction"], family_size=record["family_size"],
                                  supports=record["supports"], reason=record["reason"],
                                  applicable=record["verdict"] != "not applicable")
    except (TypeError, ValueError) as e:
        return str(e)
    if expected["verdict"] != record["verdict"]:
        decisive = "q" if record["q"] is not None else "p"
        return (f"verdict {record['verdict']!r} does not follow from {decisive} = {record[decisive]} at alpha {record['alpha']} "
                f"(supports={record['supports']}): expected {expected['verdict']!r}")
    return None
