"""Masked CNNs, their grouped-convolution stack, the stacked trainer and conv FPE
(fci.models.cnn, fci.train.cnn, fci.fpe.cnn)."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from fci.fpe.cnn import expand_cnn, expand_cnn_layers
from fci.fpe.splits import CONV_SPLITS, conv_split_groups, register_split, split_info
from fci.metrics import cosine_interference, feature_capacity
from fci.models.cnn import MaskedCNN, MaskedCNNStack, first_layer_filters
from fci.train import TrainConfig
from fci.train.cnn import evaluate_cnn, fit_cnn


def _random_masks(m: MaskedCNN, p: float, seed: int) -> MaskedCNN:
    g = torch.Generator().manual_seed(seed)
    for l in range(m.n_layers):
        m.set_masks(l, (torch.rand(m.weights[l].shape, generator=g) > p).float(), (torch.rand(m.biases[l].shape, generator=g) > p).float())
    return m


def _per_model_conv(m: MaskedCNN, x: torch.Tensor) -> torch.Tensor:
    """The forward pass written out with one plain F.conv2d per layer, masks applied by hand."""
    h = x
    for l in range(m.n_conv):
        h = F.max_pool2d(torch.relu(F.conv2d(h, m.weights[l] * m.weight_mask(l), m.biases[l] * m.bias_mask(l), padding=1)), 2)
    h = h.mean((2, 3)) if m.head == "gap" else h.flatten(1)
    return h @ (m.weights[-1] * m.weight_mask(m.n_conv)).T + m.biases[-1] * m.bias_mask(m.n_conv)


@pytest.mark.parametrize("head", ["flatten", "gap"])
def test_grouped_convolution_forward_equals_per_model_conv2d(head):
    models = [_random_masks(MaskedCNN((2, 8, 8), ch, 5, seed=i, head=head), 0.3, i) for i, ch in enumerate([[3, 4], [6, 2], [1, 5], [6, 5]])]
    stack = MaskedCNNStack.from_models(models)
    assert stack.weights[0].shape == (4, 6, 2, 3, 3) and stack.weights[-1].shape == (4, 5, 5 * (4 if head == "flatten" else 1))
    x = torch.randn(7, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    shared = stack(x)
    own = stack(torch.stack([x + i for i in range(4)]))  # one batch per model
    for i, m in enumerate(models):
        torch.testing.assert_close(shared[i], _per_model_conv(m, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(own[i], _per_model_conv(m, x + i), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m(x), _per_model_conv(m, x), rtol=1e-6, atol=1e-6)


def test_stack_round_trip_and_nnz():
    models = [_random_masks(MaskedCNN((1, 8, 8), [c], 3, seed=c), 0.4, c) for c in (2, 5)]
    stack = MaskedCNNStack.from_models(models)
    assert stack.nnz().tolist() == [m.nnz() for m in models]
    for a, b in zip(models, stack.to_models()):
        assert a.channels == b.channels
        for k, v in a.tensors().items():
            assert torch.equal(v, b.tensors()[k]), k


def test_nnz_by_hand():
    m = MaskedCNN((1, 4, 4), [2], 3, kernel_size=1, pool=False)
    # weights: conv 2x1x1x1 = 2, head 3 x (2*16) = 96; biases 2 + 3
    assert m.nnz_split() == {"weights": 98, "biases": 5, "total": 103}
    m.set_masks(0, torch.tensor([1.0, 0.0]).view(2, 1, 1, 1), torch.tensor([1.0, 0.0]))
    assert m.nnz() == 103 - 2
    assert m.effective_weights()[0][0].view(-1)[1] == 0 and m.weights[0].view(-1)[1] == 0


def test_stacked_cnn_trains_to_the_same_weights_as_each_model_alone():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(70, 1, 8, 8, generator=g), torch.randint(0, 4, (70,), generator=g)
    models = [_random_masks(MaskedCNN((1, 8, 8), ch, 4, seed=i), 0.2, i) for i, ch in enumerate([[2, 3], [4, 1], [3, 3]])]
    cfg = TrainConfig(lr=0.02, batch_size=16, weight_decay=0.01)
    stack = MaskedCNNStack.from_models([m.copy() for m in models])
    state, losses = fit_cnn(stack, x, y, cfg, range(3))
    state, more = fit_cnn(stack, x, y, cfg, range(3, 4), optimizer=state)  # a continued run
    together = stack.to_models()
    for i, m in enumerate(models):
        alone = MaskedCNNStack.from_models([m.copy()])
        s1, l1 = fit_cnn(alone, x, y, cfg, range(3))
        fit_cnn(alone, x, y, cfg, range(3, 4), optimizer=s1)
        torch.testing.assert_close(losses[i], l1[0], rtol=1e-5, atol=1e-6)
        for a, b in zip(together[i].tensors().values(), alone.to_models()[0].tensors().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert not torch.equal(together[i].weights[0], m.weights[0])  # it did train
    with pytest.raises(ValueError, match="other optimiser settings"):
        fit_cnn(stack, x, y, TrainConfig(lr=0.1), range(4, 5), optimizer=state)


def test_masked_weight_stays_exactly_zero_after_adam_with_weight_decay():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    m = _random_masks(MaskedCNN((1, 8, 8), [4, 3], 3, seed=0), 0.5, 3)
    before = [w.detach().clone() for w in m.weights]
    stack = MaskedCNNStack.from_models([m])
    with torch.no_grad():  # a stray raw value under a mask: the trainer must zero it, not let Adam move it
        stack.weights[0][stack.weight_mask(0) == 0] = 0.5
    fit_cnn(stack, x, y, TrainConfig(lr=0.05, batch_size=8, weight_decay=0.5), range(3))
    for l in range(stack.n_layers):
        hidden = stack.weight_mask(l) == 0
        assert (stack.weights[l][hidden] == 0).all()
        assert (stack.biases[l][stack.bias_mask(l) == 0] == 0).all()
    trained = stack.to_models()[0]
    live = m.weight_mask(0) == 1
    assert not torch.equal(trained.weights[0][live], before[0][live])


def test_evaluate_cnn_known_answer():
    m = MaskedCNN((1, 2, 2), [1], 2, kernel_size=1, pool=False)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.biases[-1].copy_(torch.tensor([1.0, 0.0]))  # always class 0
    x, y = torch.zeros(4, 1, 2, 2), torch.tensor([0, 0, 0, 1])
    out = evaluate_cnn(MaskedCNNStack.from_models([m]), x, y)
    assert out["accuracy"].item() == pytest.approx(0.75)
    ce0, ce1 = -np.log(np.exp(1) / (np.exp(1) + 1)), -np.log(1 / (np.exp(1) + 1))
    assert out["loss"].item() == pytest.approx((3 * ce0 + ce1) / 4, rel=1e-6)


def _check_children(parent: MaskedCNN, child: MaskedCNN, alpha: int, split: str, seed: int, layer: int):
    W, M = parent.weights[layer].detach(), parent.weight_mask(layer)
    groups = conv_split_groups(W, M, alpha, split, seed=seed)
    active = (M != 0) & (W != 0)
    assert torch.equal(groups >= 0, active)  # every active weight is placed, nothing else
    Wc, Mc = child.weights[layer].detach(), child.weight_mask(layer)
    Fn = W.shape[0]
    kept = 0
    for f in range(Fn):
        kids = Mc[f * alpha : (f + 1) * alpha]
        assert (kids.sum(0) <= 1).all()  # children share no input connection
        for a in range(alpha):
            u = f * alpha + a
            on = Mc[u] != 0
            assert not (on & (groups[f] != a)).any()  # a child holds only its own group
            assert torch.equal(Wc[u][on], W[f][on])  # with the parent's exact weights
            kept += int(on.sum())
            # replicated next-layer weights: the parent's own values wherever kept
            nxt, nm = child.weights[layer + 1].detach(), child.weight_mask(layer + 1)
            pn = parent.weights[layer + 1].detach()
            if layer + 1 < parent.n_conv:
                on2 = nm[:, u] != 0
                assert torch.equal(nxt[:, u][on2], pn[:, f][on2])
            else:
                P = parent.out_hw[0] * parent.out_hw[1]
                on2 = nm[:, u * P : (u + 1) * P] != 0
                assert torch.equal(nxt[:, u * P : (u + 1) * P][on2], pn[:, f * P : (f + 1) * P][on2])
    pruned_here = int(active.sum()) - kept
    assert 0 <= pruned_here <= child.expansion_info["pruned"]
    assert child.parent_index is None or child.parent_index.tolist() == [i // alpha for i in range(Fn * alpha)] or layer > 0


@pytest.mark.parametrize("split", sorted(CONV_SPLITS))
@pytest.mark.parametrize("alpha", [2, 3])
@pytest.mark.parametrize("layer, head", [(0, "flatten"), (1, "flatten"), (1, "gap")])
def test_children_partition_the_parent_filter_with_its_exact_weights(split, alpha, layer, head):
    parent = _random_masks(MaskedCNN((3, 8, 8), [5, 4], 6, seed=4, head=head), 0.2, 5)
    child = expand_cnn(parent, alpha, split, seed=7, layer=layer)
    assert child.channels[layer] == parent.channels[layer] * alpha
    assert child.nnz() == parent.nnz()
    _check_children(parent, child, alpha, split, 7, layer)


def test_channel_and_spatial_splits_deal_whole_units_and_random_is_balanced():
    parent = MaskedCNN((4, 6, 6), [6], 3, seed=1)
    W, M = parent.weights[0].detach(), parent.weight_mask(0)
    ch = conv_split_groups(W, M, 2, "channel", seed=0)
    sp = conv_split_groups(W, M, 3, "spatial", seed=0)
    rnd = conv_split_groups(W, M, 4, "random", seed=0)
    for f in range(6):
        for c in range(4):
            assert ch[f, c].unique().numel() == 1  # a channel's kernel positions go together
        assert sorted(np.bincount(ch[f, :, 0, 0].numpy(), minlength=2).tolist()) == [2, 2]  # 4 channels dealt 2 + 2
        for i in range(3):
            for j in range(3):
                assert sp[f, :, i, j].unique().numel() == 1  # a position's channels go together
        assert sorted(np.bincount(sp[f, 0].flatten().numpy(), minlength=3).tolist()) == [3, 3, 3]
        counts = np.bincount(rnd[f].flatten().numpy(), minlength=4)
        assert counts.max() - counts.min() <= 1 and counts.sum() == 36


def test_gram_split_deals_clusters_shared_by_the_layer():
    parent = MaskedCNN((2, 6, 6), [8], 3, seed=2)
    # two blocks of input positions used by disjoint filter sets: two clear clusters
    with torch.no_grad():
        parent.weights[0].zero_()
        parent.weights[0][:4, 0] = torch.rand(4, 3, 3) + 0.5
        parent.weights[0][4:, 1] = torch.rand(4, 3, 3) + 0.5
    g = conv_split_groups(parent.weights[0].detach(), parent.weight_mask(0), 2, "gram", seed=0)
    for f in range(8):
        used = 0 if f < 4 else 1
        assert g[f, used].unique().numel() == 1 and (g[f, 1 - used] == -1).all()


def test_one_channel_input_channel_split_keeps_filters_whole():
    parent = MaskedCNN((1, 8, 8), [4], 10, seed=0)
    child = expand_cnn(parent, 4, "channel", seed=0)
    assert child.expansion_info["pruned"] == 0 and child.nnz() == parent.nnz()
    assert (child.weight_mask(0).flatten(1).sum(1) > 0).sum() == 4  # one live child per filter
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(child(x), parent(x))  # inert siblings: the same function


def test_alpha_one_is_an_equal_copy_and_bad_inputs_fail():
    m = MaskedCNN((1, 8, 8), [3], 2, seed=0)
    c = expand_cnn(m, 1, "random")
    assert all(torch.equal(a, b) for a, b in zip(m.tensors().values(), c.tensors().values()))
    with pytest.raises(ValueError, match="split 'clause' does not apply to conv layers; conv splits: random, gram, channel, spatial"):
        expand_cnn(m, 2, "clause")
    with pytest.raises(ValueError, match="layer must index a conv layer"):
        expand_cnn(m, 2, "random", layer=1)
    with pytest.raises(ValueError, match="alpha must be an integer"):
        expand_cnn(m, 0)
    with pytest.raises(ValueError, match="already registered"):
        register_split("random", conv=split_info("random").conv)
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        MaskedCNN((1, 8, 8), [3], 2, kernel_size=2)
    with pytest.raises(ValueError, match="head must be one of"):
        MaskedCNN((1, 8, 8), [3], 2, head="avg")
    with pytest.raises(ValueError, match="shrink"):
        MaskedCNN((1, 2, 2), [3, 3], 2, pool=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.integers(1, 3), hw=st.integers(2, 7), ch=st.lists(st.integers(1, 5), min_size=1, max_size=2), k=st.sampled_from([1, 3]),
       pool=st.booleans(), alpha=st.integers(1, 4), split=st.sampled_from(sorted(CONV_SPLITS)), p=st.sampled_from([0.0, 0.3, 0.8]),
       seed=st.integers(0, 10), layer=st.integers(0, 1), out=st.integers(1, 4), head=st.sampled_from(["flatten", "gap"]))
def test_conv_fpe_budget_is_exact(c, hw, ch, k, pool, alpha, split, p, seed, layer, out, head):
    if pool and hw >> len(ch) < 1:
        return
    m = _random_masks(MaskedCNN((c, hw, hw), ch, out, kernel_size=k, pool=pool, seed=seed, head=head), p, seed)
    layer = min(layer, len(ch) - 1)
    try:
        child = expand_cnn(m, alpha, split, seed=seed, layer=layer)
    except ValueError as e:
        assert "cannot honour the budget" in str(e)
        return
    assert child.nnz() == m.nnz()
    assert child.channels[layer] == ch[layer] * alpha
    try:
        deep = expand_cnn_layers(m, alpha, split, seed=seed)
    except ValueError as e:
        assert "cannot honour the budget" in str(e)
        return
    assert deep.nnz() == m.nnz()


def test_first_layer_filter_metrics_known_answers():
    m = MaskedCNN((1, 3, 3), [2], 2, kernel_size=3, pool=False)
    with torch.no_grad():
        m.weights[0].zero_()
        m.weights[0][0, 0, 0, 0] = 1.0
        m.weights[0][1, 0, 2, 2] = 2.0
    W = first_layer_filters(m)
    assert W.shape == (2, 9)
    assert cosine_interference(W) == 0.0  # orthogonal filters
    cap = feature_capacity(W)
    assert cap[0] == 1.0 and cap[8] == 1.0 and cap[1:8].abs().sum() == 0
