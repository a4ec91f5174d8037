"""The decoding study's fidelity verdict (analyses.decoding.paper_claims) on hand-made results: each
cell's verdict follows from its non-inferiority test, and the summary says where the claim holds and
where the certified reading falls short."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses.decoding import MARGIN, fidelity, paper_claims
from fci import stats
from fci.stats import check_verdict


def _rows(trials: int = 6) -> pd.DataFrame:
    """Two cells at 4 clauses x 8 neurons: dense, whose certified reading is within 0.01 of the reference, and the
    clause split, whose reading is 0.3 below it; a restart control that the claim leaves out."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(trials):
        ref = 0.8 + 0.01 * t
        for cond, alpha, shift in (("dense", 1, 0.0), ("clause", 2, -0.3), ("restart", 1, 0.0)):
            rows.append({"n_clauses": 4, "clause_size": 3, "hidden": 8, "condition": cond, "alpha": alpha, "trial": t,
                         "accuracy_resolution": 1 / 512, "true_formula_agreement": ref,
                         "certified_agreement": ref + shift + rng.normal(0, 0.005), "certified_coverage": 0.5,
                         "certified_proved": 0.0, "certified_coverage_exact": 0.0, "function_agreement": ref,
                         "constant_agreement": 0.55, "certified_seconds": 1.0})
    return pd.DataFrame(rows)


def test_the_fidelity_verdict_follows_from_its_test_and_names_where_it_fails():
    df = _rows()
    claims = paper_claims(df)
    assert [(c["condition"], c["expansion_alpha"]) for c in claims] == [("clause", 2), ("dense", 1)]  # no restart
    for c in claims:
        assert check_verdict(c) is None, check_verdict(c)
        assert c["q"] is not None and c["family_size"] == 2 and "4 clauses of 3 literals" in c["claim"]
    clause, dense = claims
    g = df[df.condition == "dense"]
    t = stats.noninferiority_test(g.certified_agreement, g.true_formula_agreement, MARGIN, resolution=1 / 512)
    assert dense["p"] == pytest.approx(t.p) and dense["verdict"] == "agrees"
    assert "16 neurons" in clause["claim"]  # the child's width, 8 x 2
    assert clause["verdict"] == "inconclusive" and clause["measured"]["q_below_margin"] < 0.05
    assert clause["measured"]["gap"] == pytest.approx(-0.3, abs=0.01)
    f = fidelity(claims)
    assert (f["cells"], f["holds"], f["falls_short"], f["undecided"]) == (2, 1, 1, 0)
