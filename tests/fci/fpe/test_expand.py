import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fci.fpe.mlp import expand
from fci.fpe.splits import gram_clusters, split_groups
from fci.models.mlp import MaskedMLP
from fci.tasks import DNFTask


def _trained_like(n_in: int, hidden: int, n_out: int, seed: int, zero_frac: float = 0.0) -> MaskedMLP:
    m = MaskedMLP(n_in, hidden, n_out, seed=seed)
    if zero_frac:
        g = torch.Generator().manual_seed(seed)
        m.set_masks(0, (torch.rand(hidden, n_in, generator=g) >= zero_frac).float())
    return m


@settings(max_examples=40, deadline=None)
@given(
    n_clauses=st.integers(1, 5),
    k=st.integers(1, 3),
    extra=st.integers(0, 4),
    hidden=st.integers(1, 9),
    alpha=st.integers(1, 5),
    split=st.sampled_from(["clause", "random", "gram"]),
    zero_frac=st.sampled_from([0.0, 0.3, 0.9]),
    seed=st.integers(0, 10_000),
)
def test_budget_is_exact(n_clauses, k, extra, hidden, alpha, split, zero_frac, seed):
    task = DNFTask.generate(n_clauses=n_clauses, clause_size=k, n_vars=n_clauses * k + extra, seed=seed)
    parent = _trained_like(task.n_vars, hidden, 1, seed, zero_frac)
    child = expand(parent, alpha, split, clauses=task.clauses, seed=seed)
    assert child.nnz() == parent.nnz()
    assert child.hidden == [hidden * alpha]
    assert child.parent_index.tolist() == [i // alpha for i in range(hidden * alpha)]


def test_children_partition_parent_inputs_with_exact_weights(task, model):
    child = expand(model, 3, "random", seed=0)
    W, Wc = model.effective_weights()[0][0], child.weights[0].detach()
    Mc = child.weight_mask(0)
    H = model.hidden[0]
    for i in range(H):
        rows = Mc[3 * i : 3 * i + 3]
        # disjoint: every input in at most one child
        assert torch.all(rows.sum(0) <= 1)
        for a in range(3):
            on = rows[a].bool()
            # a child's weights are the parent's weights on its group
            assert torch.equal(Wc[3 * i + a][on], W[i][on])
    # replicated outgoing weights and copied biases where not pruned
    W2, W2c = model.effective_weights()[1][0], child.effective_weights()[1][0]
    b1, b1c = model.effective_weights()[0][1], child.effective_weights()[0][1]
    for j in range(Wc.shape[0]):
        kept = child.weight_mask(1)[:, j].bool()
        assert torch.equal(W2c[kept, j], W2[kept, j // 3])
        assert b1c[j] in (b1[j // 3], 0.0)


def test_random_split_is_balanced(model):
    child = expand(model, 4, "random", seed=5)
    # before pruning: count each parent's group sizes via split_groups
    W, M = model.weights[0].detach(), model.weight_mask(0)
    groups = split_groups(W, M, 4, "random", seed=5)
    for i in range(W.shape[0]):
        sizes = torch.bincount(groups[i][groups[i] >= 0], minlength=4)
        assert sizes.max() - sizes.min() <= 1
    assert child.nnz() == model.nnz()


def test_clause_split_never_splits_a_clause(task, model):
    W, M = model.weights[0].detach(), model.weight_mask(0)
    for seed in range(10):
        groups = split_groups(W, M, 2, "clause", clauses=task.clauses, seed=seed)
        for i in range(W.shape[0]):
            for clause in task.clauses:
                owners = {int(groups[i, v]) for v, _ in clause}
                assert len(owners) == 1, (seed, i, clause)
            # clauses dealt round-robin: per neuron, clause counts per child differ by at most one
            per_child = [sum(1 for c in task.clauses if int(groups[i, c[0][0]]) == a) for a in range(2)]
            assert abs(per_child[0] - per_child[1]) <= 1


def test_empty_group_child_is_inert():
    m = MaskedMLP(6, 2, 1, seed=0)
    mask = torch.zeros(2, 6)
    mask[0, 0] = 1  # neuron 0 has one active input; with alpha 3, two children are empty
    mask[1, :] = 1
    m.set_masks(0, mask)
    child = expand(m, 3, "random", seed=1)
    empty = [j for j in range(3) if child.weight_mask(0)[j].sum() == 0]
    assert len(empty) == 2
    for j in empty:
        assert child.bias_mask(0)[j] == 0 and child.biases[0][j] == 0
        assert torch.all(child.weight_mask(1)[:, j] == 0)
    assert child.nnz() == m.nnz()


def test_alpha_one_is_an_equal_copy(model):
    c = expand(model, 1, "random")
    assert c is not model
    for (w, b), (w2, b2) in zip(model.effective_weights(), c.effective_weights()):
        assert torch.equal(w, w2) and torch.equal(b, b2)
    x = torch.rand(4, model.n_in)
    assert torch.equal(model(x), c(x))


def test_expansion_is_deterministic(task, model):
    a = expand(model, 2, "clause", clauses=task.clauses, seed=4)
    b = expand(model, 2, "clause", clauses=task.clauses, seed=4)
    c = expand(model, 2, "clause", clauses=task.clauses, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors().values(), b.tensors().values()))
    assert not torch.equal(a.weight_mask(0), c.weight_mask(0))


def test_gram_clusters_find_planted_groups():
    # 3 groups of 4 variables; each neuron reads one group with equal weights
    W = torch.zeros(6, 12)
    for i in range(6):
        g = i % 3
        W[i, 4 * g : 4 * g + 4] = 1.0 + 0.1 * i
    labels = gram_clusters(W, n_clusters=None, seed=0)
    groups = {tuple(sorted(int(v) for v in (labels == k).nonzero()[0])) for k in set(labels.tolist())}
    assert groups == {(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11)}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=0, split="random"), "alpha"),
        (dict(alpha=2.0, split="random"), "integer"),
        (dict(alpha=1.5, split="random"), "alpha"),
        (dict(alpha=2, split="clause"), "clauses"),
        (dict(alpha=2, split="banana"), "split"),
        (dict(alpha=2, split="random", layer=1), "layer"),
    ],
)
def test_bad_expansions_raise(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        expand(model, **kwargs)


def test_clause_out_of_range_raises(model):
    with pytest.raises(ValueError, match="outside"):
        expand(model, 2, "clause", clauses=[((99, True),)])


def test_deeper_layer_expansion_keeps_budget():
    m = MaskedMLP(5, [4, 3], 2, seed=0)
    c = expand(m, 2, "random", layer=1, seed=0)
    assert c.hidden == [4, 6]
    assert c.nnz() == m.nnz()


@pytest.mark.parametrize("alpha", [2, 3])
def test_clause_split_of_a_cnf_task_keeps_each_clause_whole(alpha):
    # the split reads a clause's variables only: a CNF clause is dealt exactly as a DNF one
    task = DNFTask.generate(n_clauses=5, clause_size=3, n_vars=18, form="cnf", seed=4)
    model = MaskedMLP(task.n_vars, 6, task.n_outputs, seed=2)
    W, M = model.weights[0].detach(), model.weight_mask(0)
    negated = [tuple((v, not s) for v, s in clause) for clause in task.clauses]
    for seed in range(5):
        groups = split_groups(W, M, alpha, "clause", clauses=task.clauses, seed=seed)
        assert torch.equal(groups, split_groups(W, M, alpha, "clause", clauses=negated, seed=seed))  # polarity-blind
        child = expand(model, alpha, "clause", clauses=task.clauses, seed=seed)
        mask = child.weight_mask(0)  # (H * alpha, n), parent i owns rows i*alpha .. i*alpha + alpha - 1
        for i in range(W.shape[0]):
            for clause in task.clauses:
                vars_ = [v for v, _ in clause]
                holders = {a for a in range(alpha) if mask[i * alpha + a, vars_].any()}
                assert len({int(groups[i, v]) for v in vars_}) == 1
                assert len(holders) <= 1, (seed, i, clause)  # one child or none (pruned) holds the clause
        assert child.nnz() == model.nnz()
