"""Tests for fci/tasks.py and fci/seeding.py (SPEC §1)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.seeding import derive_seed, generator
from fci.tasks import DNFTask, TaskConfig, format_clause

LAYOUTS = ["disjoint", "shared"]
OUTPUTS = ["dnf", "clauses", [[0, 2], [1], [3, 1, 0]]]


def brute_force_labels(task: DNFTask, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Python evaluation of the formula, independent of the library code."""
    rows = []
    for sample in x.tolist():
        clause_true = [all((sample[v] == 1.0) == positive for v, positive in clause) for clause in task.clauses]
        rows.append([float(any(clause_true[c] for c in group)) for group in task.groups])
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
    p = draw(st.one_of(st.just("balanced"), st.floats(0.0, 1.0)))
    negation_prob = draw(st.floats(0.0, 1.0))
    return TaskConfig(n_clauses=C, clause_size=k, n_vars=n, layout=layout, outputs=outputs, p=p, negation_prob=negation_prob)


@settings(max_examples=60, deadline=None)
@given(cfg=small_configs(), seed=st.integers(0, 2**31), data_seed=st.integers(0, 2**31))
def test_property_labels_equal_formula(cfg, seed, data_seed):
    task = DNFTask.from_config(cfg, seed)
    x, y = task.sample(64, data_seed)
    assert bool(((x == 0) | (x == 1)).all())
    assert torch.equal(y, brute_force_labels(task, x))
    truth = task.clause_truth(x)
    if cfg.layout == "disjoint" and task.p in (0.0, 1.0):
        assert bool((truth == bool(task.p)).all())  # planting is exact in the disjoint layout


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
