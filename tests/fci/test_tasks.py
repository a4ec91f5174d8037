"""Tests for fci/tasks.py and fci/seeding.py (SPEC §1): DNF and CNF tasks."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fci
from fci.data import DatasetSpec, task_name
from fci.seeding import derive_seed, generator
from fci.store import config_key
from fci.tasks import BooleanTask, DNFTask, TaskConfig, falsifying_terms, format_clause
from fci.train import FPESpec, TrainConfig
from fci.train.persistence import entry_configs

LAYOUTS = ["disjoint", "shared"]
OUTPUTS = ["dnf", "clauses", [[0, 2], [1], [3, 1, 0]]]


def brute_force_labels(task: DNFTask, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Python evaluation of the formula, independent of the library code:
    a DNF's clauses are ANDs and its outputs ORs; a CNF's clauses ORs, its outputs ANDs."""
    rows = []
    for sample in x.tolist():
        if task.config.form == "dnf":
            clause_true = [all((sample[v] == 1.0) == positive for v, positive in clause) for clause in task.clauses]
            rows.append([float(any(clause_true[c] for c in group)) for group in task.groups])
        else:
            clause_true = [any((sample[v] == 1.0) == positive for v, positive in clause) for clause in task.clauses]
            rows.append([float(all(clause_true[c] for c in group)) for group in task.groups])
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), task.n_outputs)


# --------------------------------------------------------------------------- seeding


def test_derive_seed_is_deterministic_63_bit_and_tag_sensitive():
    s = derive_seed(0, "train")
    assert s == derive_seed(0, "train")
    assert 0 <= s < 2**63
    assert len({derive_seed(0, "train"), derive_seed(0, "test"), derive_seed(1, "train"), derive_seed(0, "train", 1)}) == 4


def test_generator_reproducible():
    a = torch.rand(5, generator=generator(3, "x"))
    b = torch.rand(5, generator=generator(3, "x"))
    c = torch.rand(5, generator=generator(3, "y"))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("outputs", OUTPUTS, ids=["dnf", "clauses", "groups"])
def test_labels_match_brute_force(layout, outputs):
    task = DNFTask.generate(n_clauses=5, clause_size=3, n_vars=18, layout=layout, outputs=outputs, seed=7)
    x, y = task.sample(600, seed=1)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert x.shape == (600, 18) and y.shape == (600, task.n_outputs)
    assert torch.equal(y, brute_force_labels(task, x))
    # evaluate is also right on uniform inputs, not only on planted ones
    u = torch.randint(0, 2, (300, 18), generator=generator(0, "u")).float()
    assert torch.equal(task.evaluate(u), brute_force_labels(task, u))


def test_n_outputs_per_mode():
    assert DNFTask.generate(n_clauses=4, outputs="dnf").n_outputs == 1
    assert DNFTask.generate(n_clauses=4, outputs="clauses").n_outputs == 4
    task = DNFTask.generate(n_clauses=4, outputs=[[0, 1], [3]])
    assert task.n_outputs == 2 and task.groups == [(0, 1), (3,)]


def test_evaluate_numpy_in_numpy_out():
    task = DNFTask.generate(n_clauses=4, clause_size=2, seed=1, outputs="clauses")
    x, y = task.sample(100, seed=0)
    y_np = task.evaluate(x.numpy())
    assert isinstance(y_np, np.ndarray) and y_np.dtype == np.float32
    np.testing.assert_array_equal(y_np, y.numpy())
    truth = task.clause_truth(x.numpy().astype(bool))
    assert isinstance(truth, np.ndarray) and truth.dtype == bool and truth.shape == (100, 4)
    np.testing.assert_array_equal(truth.astype(np.float32), y.numpy())  # outputs == clauses here


def test_evaluate_rejects_bad_input():
    task = DNFTask.generate(n_clauses=2, clause_size=2)
    with pytest.raises(ValueError, match="shape"):
        task.evaluate(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="0/1"):
        task.evaluate(torch.full((3, 4), 0.5))


# --------------------------------------------------------------------------- clauses


@pytest.mark.parametrize("layout", LAYOUTS)
def test_clauses_have_k_distinct_sorted_vars(layout):
    task = DNFTask.generate(n_clauses=10, clause_size=4, n_vars=50, layout=layout, seed=3)
    assert len(task.clauses) == 10
    for clause in task.clauses:
        vars_ = [v for v, _ in clause]
        assert len(vars_) == 4 and len(set(vars_)) == 4
        assert vars_ == sorted(vars_)
        assert all(0 <= v < 50 and isinstance(positive, bool) for v, positive in clause)
    assert len(set(task.clauses)) == 10  # no duplicate clauses


def test_disjoint_never_reuses_a_variable_and_leaves_distractors():
    task = DNFTask.generate(n_clauses=6, clause_size=3, n_vars=25, seed=11)
    used = [v for clause in task.clauses for v, _ in clause]
    assert len(used) == len(set(used)) == 18
    distractors = sorted(set(range(25)) - set(used))
    assert task.distractors() == distractors and len(distractors) == 7
    owner = task.clause_of_var()
    assert owner.shape == (25,)
    assert sorted(np.flatnonzero(owner == -1).tolist()) == distractors
    for c, clause in enumerate(task.clauses):
        assert all(owner[v] == c for v, _ in clause)
    # distractors do not change labels
    x, y = task.sample(200, seed=0)
    x_flipped = x.clone()
    x_flipped[:, distractors] = 1 - x_flipped[:, distractors]
    assert torch.equal(task.evaluate(x_flipped), y)


def test_disjoint_variables_are_scattered():
    task = DNFTask.generate(n_clauses=8, clause_size=3, seed=0)
    assert [v for clause in task.clauses for v, _ in clause] != list(range(24))


def test_negation_prob_extremes():
    assert all(s for c in DNFTask.generate(negation_prob=0.0).clauses for _, s in c)
    assert not any(s for c in DNFTask.generate(negation_prob=1.0).clauses for _, s in c)
    signs = [s for c in DNFTask.generate(n_clauses=50, clause_size=4).clauses for _, s in c]
    assert 0.35 < np.mean(signs) < 0.65


def test_variable_order():
    task = DNFTask.generate(n_clauses=3, clause_size=2, n_vars=9, seed=2)
    order = task.variable_order()
    assert sorted(order) == list(range(9))
    assert order[:6] == [v for clause in task.clauses for v, _ in clause]
    shared = DNFTask.generate(n_clauses=12, clause_size=3, n_vars=8, layout="shared", seed=2)
    order = shared.variable_order()
    assert sorted(order) == list(range(8))
    first_clause = {}
    for c, clause in enumerate(shared.clauses):
        for v, _ in clause:
            first_clause.setdefault(v, c)
    keys = [first_clause.get(v, math.inf) for v in order]
    assert keys == sorted(keys)
    with pytest.raises(ValueError, match="disjoint"):
        shared.clause_of_var()


def test_repr_and_format_clause():
    task = DNFTask.generate(n_clauses=8, clause_size=3, seed=0)
    assert repr(task) == "DNFTask(C=8, k=3, n=24, disjoint, dnf, p=0.083, seed=0)"
    assert format_clause(((3, True), (7, False), (12, True))) == "x3 ∧ ¬x7 ∧ x12"


# --------------------------------------------------------------------------- sampler statistics


def _within(observed: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_balanced_disjoint_or_rate_is_half_and_clause_rates_are_p():
    task = DNFTask.generate(n_clauses=8, clause_size=3, n_vars=30, seed=5)
    n = 20_000
    x, y = task.sample(n, seed=9)
    assert task.p == pytest.approx(1 - 2 ** (-1 / 8))
    assert _within(y.mean().item(), 0.5, n)
    truth = task.clause_truth(x).float()
    for c in range(8):
        assert _within(truth[:, c].mean().item(), task.p, n)
    # clauses independent: pairwise joint rate p**2
    joint = (truth[:, 0] * truth[:, 1]).mean().item()
    assert _within(joint, task.p**2, n)
    # distractors are fair coins
    for v in task.distractors():
        assert _within(x[:, v].mean().item(), 0.5, n)


def test_explicit_p_clause_rate():
    task = DNFTask.generate(n_clauses=3, clause_size=2, p=0.3, seed=1)
    n = 20_000
    truth = task.clause_truth(task.sample(n, seed=0)[0]).float()
    for c in range(3):
        assert _within(truth[:, c].mean().item(), 0.3, n)


def test_unplanted_clause_takes_falsifying_assignments_uniformly():
    task = DNFTask.generate(n_clauses=1, clause_size=2, p=0.0, seed=4)
    n = 12_000
    x, y = task.sample(n, seed=0)
    assert y.sum() == 0
    (a, _), (b, _) = task.clauses[0]
    codes = (x[:, a] * 2 + x[:, b]).long()
    counts = torch.bincount(codes, minlength=4).float() / n
    assert (counts > 0).sum() == 3  # the satisfying assignment never appears
    for share in counts[counts > 0]:
        assert _within(share.item(), 1 / 3, n)


def test_p_one_plants_everything():
    task = DNFTask.generate(n_clauses=4, clause_size=3, p=1.0, seed=0, outputs="clauses")
    _, y = task.sample(100, seed=0)
    assert bool((y == 1).all())


@pytest.mark.parametrize("seed", [0, 1])
def test_balanced_shared_or_rate_is_roughly_half(seed):
    task = DNFTask.generate(n_clauses=8, clause_size=3, layout="shared", seed=seed)
    _, y = task.sample(20_000, seed=3)
    assert 0.4 < y.mean().item() < 0.62


def test_shared_planting_and_falsifying_without_negations():
    # all-positive clauses cannot conflict, and falsifying (setting a var to 0) cannot
    # satisfy another clause, so p=1 makes every clause true and p=0 every clause false
    kwargs = dict(n_clauses=12, clause_size=3, n_vars=10, layout="shared", negation_prob=0.0, seed=0)
    for p in (0.0, 1.0):
        task = DNFTask.generate(p=p, **kwargs)
        assert len({v for c in task.clauses for v, _ in c}) < 36  # clauses do overlap
        truth = task.clause_truth(task.sample(2_000, seed=1)[0])
        assert bool((truth == bool(p)).all())


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_seed_same_task_and_data(layout):
    a = DNFTask.generate(layout=layout, seed=3)
    b = DNFTask.generate(layout=layout, seed=3)
    assert a.clauses == b.clauses
    xa, ya = a.sample(500, seed=1)
    xb, yb = b.sample(500, seed=1)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(a.train_data()[0], b.train_data()[0])
    assert torch.equal(a.test_data()[1], b.test_data()[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_different_seed_different_task_and_data(layout):
    a = DNFTask.generate(layout=layout, seed=3)
    b = DNFTask.generate(layout=layout, seed=4)
    assert a.clauses != b.clauses
    assert not torch.equal(a.sample(500, seed=1)[0], a.sample(500, seed=2)[0])
    assert not torch.equal(a.train_data()[0][:500], a.test_data()[0][:500])


def test_train_test_sizes_and_derivation():
    task = DNFTask.generate(n_clauses=4, clause_size=2, n_train=100, n_test=50, seed=2)
    x_train, y_train = task.train_data()
    x_test, _ = task.test_data()
    assert x_train.shape == (100, 8) and y_train.shape == (100, 1) and x_test.shape == (50, 8)
    assert torch.equal(x_train, task.sample(100, derive_seed(2, "train"))[0])


def test_from_config_equals_generate():
    cfg = TaskConfig(n_clauses=5, clause_size=2, layout="shared", n_vars=7)
    assert DNFTask.from_config(cfg, 9).clauses == DNFTask.generate(5, 2, seed=9, layout="shared", n_vars=7).clauses


# --------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_clauses": 0}, "n_clauses"),
        ({"n_clauses": -2}, "n_clauses"),
        ({"clause_size": 0}, "clause_size"),
        ({"n_vars": 0}, "n_vars"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": -1}, "n_test"),
        ({"n_clauses": 1.5}, "n_clauses"),
        ({"n_clauses": 1, "clause_size": 5, "n_vars": 4, "layout": "shared"}, "clause_size"),
        ({"n_clauses": 2, "clause_size": 3, "n_vars": 5}, "n_vars"),
        ({"p": 1.5}, "p"),
        ({"p": -0.1}, "p"),
        ({"p": float("nan")}, "p"),
        ({"p": "half"}, "p"),
        ({"negation_prob": 1.2}, "negation_prob"),
        ({"negation_prob": -0.5}, "negation_prob"),
        ({"layout": "overlapping"}, "layout"),
        ({"outputs": "or"}, "outputs"),
        ({"outputs": []}, "outputs"),
        ({"n_clauses": 3, "outputs": [[0], []]}, "outputs"),
        ({"n_clauses": 3, "outputs": [[0, 3]]}, "outputs"),
        ({"n_clauses": 3, "outputs": [[-1]]}, "outputs"),
        ({"n_clauses": 11, "clause_size": 2, "n_vars": 5, "layout": "shared"}, "n_vars"),
    ],
)
def test_bad_config_raises_naming_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TaskConfig(**kwargs)


def test_shared_layout_at_capacity_is_feasible():
    task = DNFTask.generate(n_clauses=10, clause_size=2, n_vars=5, layout="shared", negation_prob=0.0, seed=0)
    assert len(set(task.clauses)) == 10


def test_config_is_hashable_and_groups_are_tuples():
    cfg = TaskConfig(n_clauses=3, outputs=[[0, 1], [2]])
    assert cfg.outputs == ((0, 1), (2,))
    assert hash(cfg) == hash(TaskConfig(n_clauses=3, outputs=((0, 1), (2,))))


def test_resolved_fields():
    cfg = TaskConfig(n_clauses=4, clause_size=2)
    assert cfg.resolved_n_vars == 8 and cfg.n_vars is None
    assert cfg.resolved_p == pytest.approx(1 - 2 ** (-1 / 4))
    assert TaskConfig(p=0.25).resolved_p == 0.25
    assert TaskConfig(layout="shared").resolved_n_vars == 24


@pytest.mark.parametrize(
    "cfg",
    [TaskConfig(), TaskConfig(n_clauses=3, clause_size=2, n_vars=10, layout="shared", outputs=[[0, 1], [2]], p=0.2)],
)
def test_config_dict_round_trip(cfg):
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TaskConfig.from_dict(d) == cfg


def test_config_from_dict_warns_on_unknown_keys():
    d = TaskConfig(n_clauses=4).to_dict() | {"temperature": 3}
    with pytest.warns(UserWarning, match="temperature"):
        cfg = TaskConfig.from_dict(d)
    assert cfg == TaskConfig(n_clauses=4)


def test_task_dict_round_trip_and_drift_detection():
    task = DNFTask.generate(n_clauses=3, clause_size=2, seed=5)
    d = json.loads(json.dumps(task.to_dict()))
    assert DNFTask.from_dict(d).clauses == task.clauses
    d["clauses"][0][0][1] = not d["clauses"][0][0][1]
    with pytest.raises(ValueError, match="clauses"):
        DNFTask.from_dict(d)


# --------------------------------------------------------------------------- property test


@st.composite
def small_configs(draw):
    C = draw(st.integers(1, 5))
    k = draw(st.integers(1, 4))
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "disjoint":
        n = C * k + draw(st.integers(0, 3))
    else:
        n = draw(st.integers(k, C * k + 3))
        while math.comb(n, k) < C:
            n += 1
    mode = draw(st.sampled_from(["dnf", "clauses", "groups"]))
    if mode == "groups":
        outputs = draw(st.lists(st.lists(st.integers(0, C - 1), min_size=1, max_size=C), min_size=1, max_size=4))
    else:
        outputs = mode
    p = draw(st.one_of(st.just("balanced"), st.just("uniform"), st.floats(0.0, 1.0)))
    negation_prob = draw(st.floats(0.0, 1.0))
    form = draw(st.sampled_from(["dnf", "cnf"]))
    return TaskConfig(n_clauses=C, clause_size=k, n_vars=n, layout=layout, outputs=outputs, p=p,
                      negation_prob=negation_prob, form=form)


@settings(max_examples=60, deadline=None)
@given(cfg=small_configs(), seed=st.integers(0, 2**31), data_seed=st.integers(0, 2**31))
def test_property_labels_equal_formula(cfg, seed, data_seed):
    task = DNFTask.from_config(cfg, seed)
    x, y = task.sample(64, data_seed)
    assert bool(((x == 0) | (x == 1)).all())
    assert torch.equal(y, brute_force_labels(task, x))
    truth = task.clause_truth(x)
    if cfg.layout == "disjoint" and cfg.p in (0.0, 1.0):
        # planting is exact in the disjoint layout: a DNF clause is true, a CNF clause false
        assert bool((truth == (bool(cfg.p) == (cfg.form == "dnf"))).all())


@pytest.mark.parametrize("outputs, expected", [("dnf", 1), ("clauses", 5), ([[0, 1], [2], [3, 4]], 3)])
def test_config_knows_its_output_count(outputs, expected):
    config = TaskConfig(n_clauses=5, outputs=outputs)
    assert config.n_outputs == expected == DNFTask.from_config(config, seed=0).n_outputs


# --------------------------------------------------------------------------- p = "uniform"


def _formula(task, x: torch.Tensor) -> torch.Tensor:
    """The formula written out literal by literal (independent of the task's matrices): (N, O)."""
    truth = torch.ones(x.shape[0], task.n_clauses, dtype=torch.bool)
    for c, clause in enumerate(task.clauses):
        for v, positive in clause:
            truth[:, c] &= (x[:, v] == 1) if positive else (x[:, v] == 0)
    return torch.stack([truth[:, list(g)].any(1) for g in task.groups], 1).float()


@pytest.mark.parametrize("C,k", [(8, 3), (4, 2), (16, 3)])
def test_uniform_disjoint_positive_rate_is_exact(C, k):
    task = DNFTask.generate(n_clauses=C, clause_size=k, n_vars=C * k + 4, p="uniform", seed=2)
    n = 40_000
    x, y = task.sample(n, seed=1)
    assert task.p == pytest.approx(2.0 ** -k)
    assert _within(y.mean().item(), 1 - (1 - 2.0 ** -k) ** C, n)
    # every variable, clause or distractor, is a fair coin, and independent of its neighbour
    assert all(_within(m, 0.5, n) for m in x.mean(0).tolist())
    assert _within((x[:, 0] * x[:, 1]).mean().item(), 0.25, n)


@pytest.mark.parametrize("layout,outputs", [("disjoint", "dnf"), ("disjoint", "clauses"), ("shared", "dnf"),
                                            ("shared", "clauses"), ("shared", [[0, 2], [1]])])
def test_uniform_labels_are_the_formula_in_both_layouts(layout, outputs):
    n_vars = 9 if layout == "disjoint" else 6
    task = DNFTask.generate(n_clauses=3, clause_size=3, n_vars=n_vars, layout=layout, outputs=outputs, p="uniform", seed=3)
    x, y = task.sample(4096, seed=0)
    assert torch.equal(y, _formula(task, x))
    # fair coins: all 2^n inputs appear about equally often
    codes = (x * (2 ** torch.arange(n_vars)).float()).sum(1).long()
    counts = torch.bincount(codes, minlength=2 ** n_vars)
    assert (counts > 0).float().mean() > 0.95


def test_uniform_is_a_config_value_that_round_trips():
    cfg = TaskConfig(p="uniform")
    assert TaskConfig.from_dict(cfg.to_dict()) == cfg and cfg.resolved_p == 2.0 ** -3
    with pytest.raises(ValueError, match="'balanced' or 'uniform'"):
        TaskConfig(p="often")


# --------------------------------------------------------------------------- form = "cnf"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("outputs", OUTPUTS, ids=["formula", "clauses", "groups"])
@pytest.mark.parametrize("p", ["balanced", 0.3, "uniform"])
def test_cnf_labels_match_brute_force(layout, outputs, p):
    task = BooleanTask.generate(n_clauses=5, clause_size=3, n_vars=18, layout=layout, outputs=outputs, p=p,
                                form="cnf", seed=7)
    signs = [s for c in task.clauses for _, s in c]
    assert any(signs) and not all(signs)  # the formula has negated and positive literals
    x, y = task.sample(600, seed=1)
    assert torch.equal(y, brute_force_labels(task, x))
    assert 0 < y.mean().item() < 1  # both labels occur, so the comparison can fail
    u = torch.randint(0, 2, (300, 18), generator=generator(0, "u")).float()
    assert torch.equal(task.evaluate(u), brute_force_labels(task, u))


def test_cnf_clauses_are_ors_and_groups_are_ands():
    # no negations: c0 = xa ∨ xb and c1 = xc ∨ xd, worked by hand on four inputs
    task = BooleanTask.generate(n_clauses=2, clause_size=2, negation_prob=0.0, outputs=[[0, 1], [1]],
                                form="cnf", seed=0)
    (a, _), (b, _) = task.clauses[0]
    (c, _), (d, _) = task.clauses[1]
    x = torch.zeros(4, 4)
    x[1, a] = 1                    # c0 true, c1 false
    x[2, [a, c]] = 1               # both true
    x[3, [b, d]] = 1               # both true
    expected = torch.tensor([[0, 0], [0, 0], [1, 1], [1, 1]], dtype=torch.float32)
    assert torch.equal(task.evaluate(x), expected)
    assert torch.equal(task.clause_truth(x), torch.tensor([[False, False], [True, False], [True, True], [True, True]]))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("outputs", ["dnf", "clauses", [[0, 2], [1, 2, 3]]], ids=["formula", "clauses", "groups"])
@pytest.mark.parametrize("p", ["balanced", 0.4, "uniform"])
def test_cnf_is_the_negated_dnf_of_its_falsifying_terms(layout, outputs, p):
    # With no negations the CNF's falsifying terms are all-negated, exactly the clauses the
    # same seed draws for a DNF with every literal negated: same sampler, negated labels.
    kw = dict(n_clauses=4, clause_size=3, n_vars=14, layout=layout, outputs=outputs, p=p, seed=5)
    cnf = BooleanTask.generate(form="cnf", negation_prob=0.0, **kw)
    dnf = BooleanTask.generate(form="dnf", negation_prob=1.0, **kw)
    assert dnf.clauses == falsifying_terms(cnf.clauses)
    assert cnf.p == dnf.p
    x_c, y_c = cnf.sample(2000, seed=3)
    x_d, y_d = dnf.sample(2000, seed=3)
    assert torch.equal(x_c, x_d)
    assert torch.equal(y_c, 1 - y_d)
    assert 0 < y_c.mean().item() < 1


def test_balanced_cnf_disjoint_rate_is_half_and_clauses_are_falsified_with_p():
    # n = 20,000 samples: sigma of a rate near 1/2 is sqrt(0.25 / n) = 0.0035, 4 sigma = 0.014
    task = BooleanTask.generate(n_clauses=8, clause_size=3, n_vars=30, form="cnf", seed=5)
    n = 20_000
    x, y = task.sample(n, seed=9)
    q = 1 - 2 ** (-1 / 8)
    assert task.p == pytest.approx(q) and task.config.resolved_p == pytest.approx(q)
    assert task.config.clause_true_rate == pytest.approx(1 - q)
    assert _within(y.mean().item(), 0.5, n)
    false = ~task.clause_truth(x)
    for c in range(8):
        assert _within(false[:, c].float().mean().item(), q, n)
        # a falsified clause has every literal false: exactly the falsifying term holds
        (term,) = falsifying_terms([task.clauses[c]])
        holds = torch.stack([(x[:, v] == 1) == positive for v, positive in term], 1).all(1)
        assert torch.equal(holds, false[:, c])
    # clauses falsified independently: pairwise joint rate q**2
    assert _within((false[:, 0] & false[:, 1]).float().mean().item(), q**2, n)
    for v in task.distractors():
        assert _within(x[:, v].mean().item(), 0.5, n)


def test_cnf_unfalsified_clause_takes_satisfying_assignments_uniformly():
    task = BooleanTask.generate(n_clauses=1, clause_size=2, p=0.0, form="cnf", seed=4)
    n = 12_000
    x, y = task.sample(n, seed=0)
    assert bool((y == 1).all())
    (a, pa), (b, pb) = task.clauses[0]
    codes = (x[:, a] * 2 + x[:, b]).long()
    counts = torch.bincount(codes, minlength=4).float() / n
    falsifying = int(not pa) * 2 + int(not pb)  # both literals false
    assert counts[falsifying] == 0
    for code in set(range(4)) - {falsifying}:  # the 2**k - 1 = 3 satisfying assignments, 1/3 each
        assert _within(counts[code].item(), 1 / 3, n)


def test_cnf_p_one_falsifies_every_clause():
    task = BooleanTask.generate(n_clauses=4, clause_size=3, p=1.0, form="cnf", outputs="clauses", seed=0)
    _, y = task.sample(100, seed=0)
    assert bool((y == 0).all())


def test_cnf_per_clause_outputs_are_balanced_at_p_half():
    task = BooleanTask.generate(n_clauses=6, clause_size=3, p=0.5, form="cnf", outputs="clauses", seed=2)
    n = 20_000
    _, y = task.sample(n, seed=1)
    assert task.config.clause_true_rate == 0.5
    for c in range(6):
        assert _within(y[:, c].mean().item(), 0.5, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_cnf_shared_rate_is_roughly_half(seed):
    task = BooleanTask.generate(n_clauses=8, clause_size=3, layout="shared", form="cnf", seed=seed)
    _, y = task.sample(20_000, seed=3)
    assert 0.38 < y.mean().item() < 0.62


@pytest.mark.parametrize("C,k", [(8, 3), (4, 2), (16, 3)])
def test_uniform_cnf_disjoint_positive_rate_is_exact(C, k):
    # n = 40,000: 4 sigma of the rate r is 4 sqrt(r (1 - r) / n) <= 0.01
    task = BooleanTask.generate(n_clauses=C, clause_size=k, n_vars=C * k + 4, p="uniform", form="cnf", seed=2)
    n = 40_000
    x, y = task.sample(n, seed=1)
    assert task.p == pytest.approx(2.0 ** -k)
    assert task.config.clause_true_rate == pytest.approx(1 - 2.0 ** -k)
    assert _within(y.mean().item(), (1 - 2.0 ** -k) ** C, n)
    assert all(_within(m, 0.5, n) for m in x.mean(0).tolist())


def test_same_seed_same_clauses_in_both_forms():
    for layout in LAYOUTS:
        assert (BooleanTask.generate(layout=layout, form="cnf", seed=3).clauses
                == BooleanTask.generate(layout=layout, seed=3).clauses)


def test_form_is_validated_in_one_line():
    with pytest.raises(ValueError, match=r"^form must be one of \('dnf', 'cnf'\), got 'xyz'$"):
        TaskConfig(form="xyz")
    with pytest.raises(ValueError, match="form"):
        format_clause(((0, True),), form="or")


def test_form_round_trips_and_is_stored_only_when_cnf():
    cnf = TaskConfig(n_clauses=3, form="cnf", outputs=[[0, 1], [2]])
    d = json.loads(json.dumps(cnf.to_dict()))
    assert d["form"] == "cnf" and TaskConfig.from_dict(d) == cnf
    assert "form" not in TaskConfig().to_dict()
    assert TaskConfig.from_dict(TaskConfig().to_dict()).form == "dnf"
    task = BooleanTask.generate(n_clauses=3, clause_size=2, form="cnf", seed=5)
    again = BooleanTask.from_dict(json.loads(json.dumps(task.to_dict())))
    assert again.form == "cnf" and again.clauses == task.clauses


def _canonical_key(config: dict) -> str:
    """SPEC §8: the first 20 hex digits of the sha256 of the canonical JSON (sorted
    keys, no spaces) of {"format": 1, **config}."""
    text = json.dumps({"format": 1, **config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


#: TaskConfig().to_dict() as stored before CNF tasks existed (every key of a default
#: DNF task written since then must be built from exactly this dict).
_DNF_TASK_DICT = {"n_clauses": 8, "clause_size": 3, "n_vars": None, "layout": "disjoint", "negation_prob": 0.5,
                  "outputs": "dnf", "p": "balanced", "n_train": 4096, "n_test": 2048}


def test_dnf_store_keys_are_unchanged_and_cnf_keys_differ():
    train = TrainConfig()
    spec = FPESpec(task=TaskConfig(), hidden=8, seed=0, expansions=(("clause", 2),), train=train)
    configs = entry_configs(spec)
    base = {"kind": "boolean-fpe", "task": _DNF_TASK_DICT, "hidden": 8, "seed": 0, "train": train.to_dict()}
    assert config_key(configs[("dense", 1)]) == _canonical_key({**base, "condition": "dense", "alpha": 1})
    assert config_key(configs[("clause", 2)]) == _canonical_key({**base, "condition": "clause", "alpha": 2})
    # data named by a DatasetSpec: the key of a fixed DNF task is unchanged too
    data = DatasetSpec.boolean(TaskConfig(), seed=3)
    assert data.key() == {"kind": "boolean", "options": _DNF_TASK_DICT, "seed": 3}
    # the CNF task with the same fields is another task, with other keys
    cnf = FPESpec(task=TaskConfig(form="cnf"), hidden=8, seed=0, expansions=(("clause", 2),), train=train)
    cnf_configs = entry_configs(cnf)
    assert cnf_configs[("dense", 1)]["task"] == {**_DNF_TASK_DICT, "form": "cnf"}
    assert config_key(cnf_configs[("dense", 1)]) != config_key(configs[("dense", 1)])
    assert DatasetSpec.boolean(TaskConfig(form="cnf"), seed=3).key() != data.key()


def test_cnf_names_and_text():
    task = BooleanTask.generate(n_clauses=3, clause_size=2, form="cnf", outputs=[[0, 1], [2]], seed=0)
    dnf = BooleanTask.generate(n_clauses=3, clause_size=2, outputs=[[0, 1], [2]], seed=0)
    assert repr(task).startswith("CNFTask(C=3, k=2, n=6, disjoint, groups[2]")
    assert "  y0 = AND[0, 1]" in str(task) and "  y0 = OR[0, 1]" in str(dnf)
    assert format_clause(((3, True), (7, False)), form="cnf") == "x3 ∨ ¬x7"
    assert task_name(task) == "boolean-cnf-C3k2-s0" and task_name(dnf) == "boolean-C3k2-s0"
    assert fci.DNFTask is DNFTask is BooleanTask and fci.BooleanTask is BooleanTask
    assert task.form == "cnf" and dnf.form == "dnf"
