import pytest
import torch

from fci.models.base import resolve_device
from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.train import TrainConfig, fit
from tests.helpers import random_masks as _random_masks


def test_forward_matches_manual_computation():
    m = MaskedMLP(5, [4, 3], 2, seed=0)
    _random_masks(m, 0)
    x = torch.rand(7, 5)
    h = x
    for l, (w, b) in enumerate(m.effective_weights()):
        h = h @ w.T + b
        if l < 2:
            h = torch.relu(h)
    assert torch.allclose(m(x), h)


def test_nnz_counts_effective_weights_and_biases():
    m = MaskedMLP(4, 3, 1, seed=0)
    assert m.nnz() == 4 * 3 + 3 + 3 + 1
    wm = torch.ones(3, 4)
    wm[0, :2] = 0
    m.set_masks(0, wm, torch.tensor([1.0, 0.0, 1.0]))
    with torch.no_grad():
        m.weights[1][0, 2] = 0.0  # an unmasked weight that is exactly zero is not counted
    split = m.nnz_split()
    assert split == {"weights": 10 + 2, "biases": 2 + 1, "total": 15}
    assert m.nnz() == 15


def test_masked_weight_stays_zero_after_adam_with_weight_decay():
    m = MaskedMLP(6, 5, 1, seed=2)
    _random_masks(m, 1)
    stack = MaskedMLPStack.from_models([m])
    x = torch.rand(1, 128, 6)
    y = (torch.rand(1, 128, 1) > 0.5).float()
    fit(stack, x, y, TrainConfig(lr=0.05, weight_decay=0.1, batch_size=16), range(30))
    (trained,) = stack.to_models()
    for l in range(trained.n_layers):
        off = trained.weight_mask(l) == 0
        assert torch.all(trained.weights[l][off] == 0)
        assert torch.all(trained.effective_weights()[l][0][off] == 0)
        assert torch.all(trained.biases[l][trained.bias_mask(l) == 0] == 0)
    assert trained.nnz() <= m.nnz()
    # and the unmasked weights did move
    assert not torch.equal(trained.weights[0], m.weights[0])


def test_stack_round_trip_is_lossless_with_mixed_widths():
    models = [MaskedMLP(7, h, 2, seed=h) for h in (3, 8, 5)]
    _random_masks(models[1], 4)
    models[1].parent_index = torch.arange(8) // 2
    stack = MaskedMLPStack.from_models(models)
    assert stack.weights[0].shape == (3, 8, 7)
    back = stack.to_models()
    for a, b in zip(models, back):
        ta, tb = a.tensors(), b.tensors()
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), k
    x = torch.rand(3, 10, 7)
    out = stack(x)
    for i, m in enumerate(models):
        assert torch.allclose(out[i], m(x[i]), atol=1e-6)
    assert stack.nnz().tolist() == [m.nnz() for m in models]


def test_stack_rejects_mismatched_models():
    with pytest.raises(ValueError, match="same n_in"):
        MaskedMLPStack.from_models([MaskedMLP(3, 2, 1), MaskedMLP(4, 2, 1)])
    with pytest.raises(ValueError, match="empty"):
        MaskedMLPStack.from_models([])


@pytest.mark.parametrize("bad", [0, -1, [], [3, 0]])
def test_bad_sizes_raise(bad):
    with pytest.raises(ValueError, match="hidden"):
        MaskedMLP(3, bad, 1)


def test_same_seed_same_init_and_tensor_round_trip():
    a, b = MaskedMLP(5, [4, 4], 3, seed=9), MaskedMLP(5, [4, 4], 3, seed=9)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    c = MaskedMLP.from_tensors(a.tensors())
    assert c.sizes == [5, 4, 4, 3]
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
    with pytest.raises(ValueError, match="lack"):
        MaskedMLP.from_tensors({k: v for k, v in a.tensors().items() if k != "M1"})


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
