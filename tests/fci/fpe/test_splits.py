"""The split registry: a split is one function and one line, and every consumer reads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fci.fpe.mlp import expand
from fci.fpe.splits import SPLITS, register_split, split_groups, split_info, unregister_split
from fci.models.mlp import MaskedMLP


def _halves(W, M, alpha, gen, **_):
    """Toy split: input j goes to child j * alpha // n (contiguous blocks), whatever the weights."""
    H, n = W.shape
    return np.tile(np.arange(n) * alpha // n, (H, 1))


@pytest.fixture
def toy_split():
    register_split("halves", _halves, color="#123456", description="contiguous input blocks")
    try:
        yield "halves"
    finally:
        unregister_split("halves")


def test_builtin_splits_are_registered_in_order():
    assert tuple(SPLITS)[:3] == ("clause", "random", "gram")
    assert split_info("clause").needs_clauses and not split_info("random").needs_clauses


def test_a_registered_split_reaches_expand_with_its_partition(toy_split):
    assert toy_split in SPLITS  # the live view sees it, though imported before
    torch.manual_seed(0)
    model = MaskedMLP(8, [3], 1)
    child = expand(model, 2, toy_split, seed=0)
    W = child.effective_weights()[0][0]  # (6, 8)
    # Child 0 of every parent reads only inputs 0..3, child 1 only 4..7 (pruning may drop some).
    assert (W[0::2, 4:] == 0).all() and (W[1::2, :4] == 0).all()
    assert child.nnz() == model.nnz()
    assert child.expansion_info["split"] == toy_split


def test_inactive_inputs_get_no_child_and_bad_ids_are_refused(toy_split):
    W = torch.ones(2, 8)
    M = torch.ones(2, 8)
    M[0, :3] = 0
    g = split_groups(W, M, 2, toy_split)
    assert (g[0, :3] == -1).all() and (g[0, 3:] >= 0).all() and (g[1] >= 0).all()
    register_split("bad", lambda W, M, alpha, gen, **_: np.full(W.shape, alpha))
    try:
        with pytest.raises(ValueError, match="outside"):
            split_groups(W, M, 2, "bad")
    finally:
        unregister_split("bad")


def test_duplicate_and_reserved_names_are_refused(toy_split):
    with pytest.raises(ValueError, match="already registered"):
        register_split(toy_split, _halves)
    with pytest.raises(ValueError, match="already registered"):
        register_split("random", _halves)
    with pytest.raises(ValueError, match="reserved"):
        register_split("dense", _halves)
    with pytest.raises(ValueError, match="unknown split 'nonesuch'; known: clause, random, gram"):
        expand(MaskedMLP(4, [2], 1), 2, "nonesuch")


def test_figures_colour_and_order_read_the_registry(toy_split):
    from analyses.rows import condition_order
    from analyses.style import COLORS

    assert COLORS[toy_split] == "#123456" and COLORS["random"] == split_info("random").color
    assert condition_order("dense") < condition_order("restart") < condition_order("clause") < condition_order(toy_split)


def test_python_m_fci_accepts_a_registered_split(toy_split):
    from fci.__main__ import build_parser, validate

    ap = build_parser()
    args = ap.parse_args(["--splits", f"random,{toy_split}", "--trials", "1", "--data", "/tmp/fci-split-registry"])
    splits, specs = validate(ap, args)
    assert splits == ["random", toy_split] and specs[0].expansions == (("random", 2), (toy_split, 2))
