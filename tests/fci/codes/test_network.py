"""What the readers accept (`fci.codes.network.read_network`): the same network from a
module, a MaskedMLP and a weight list reads the same; everything else is refused in one line."""

import numpy as np
import pytest
import torch
from torch import nn

from fci.codes.network import read_network
from fci.models.mlp import MaskedMLP


def _seq(act: nn.Module, sizes=(6, 5, 4, 2), seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(act)
    return nn.Sequential(*mods)


def _weights(seq: nn.Sequential) -> list[torch.Tensor]:
    return [t for m in seq if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]


@pytest.mark.parametrize("act,name", [(nn.ReLU(), "relu"), (nn.Tanh(), "tanh"), (nn.Sigmoid(), "sigmoid"),
                                      (nn.GELU(), "gelu"), (nn.LeakyReLU(0.1), "leaky_relu:0.1")])
@pytest.mark.parametrize("sizes", [(6, 5, 2), (6, 5, 4, 2), (6, 3, 4, 5, 1)])
def test_a_module_and_its_weight_list_compute_what_the_module_computes(act, name, sizes):
    seq = _seq(act, sizes)
    x = torch.randint(0, 2, (64, sizes[0])).float()
    want = seq(x).detach().double().numpy()
    from_module = read_network(seq)
    from_list = read_network(_weights(seq), activation=name)
    assert from_module.activations == (name,) * (len(sizes) - 2) == from_list.activations
    assert from_module.depth == len(sizes) - 2
    np.testing.assert_allclose(from_module.logits(x.numpy()), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_list.logits(x.numpy()), want, rtol=1e-5, atol=1e-6)


def test_a_masked_mlp_of_any_depth_reads_as_relu_with_its_masks():
    model = MaskedMLP(7, [5, 4], 2, seed=1)
    model.set_masks(0, (torch.rand(5, 7) < 0.5).float(), torch.ones(5))
    net = read_network(model)
    x = torch.randint(0, 2, (32, 7)).float()
    assert net.activations == ("relu", "relu") and net.hidden == (5, 4)
    np.testing.assert_allclose(net.logits(x.numpy()), model(x).detach().double().numpy(), rtol=1e-5, atol=1e-6)


def test_stating_an_activation_that_disagrees_with_the_module_is_refused():
    with pytest.raises(ValueError, match="activation='tanh' was given, but nn.Sequential uses relu"):
        read_network(_seq(nn.ReLU()), activation="tanh")


@pytest.mark.parametrize("obj,match", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 1)), "Conv2d, which fci cannot read"),
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1), nn.Sigmoid()), "ends with an activation"),
    (nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1)), "two nn.Linear layers with no activation"),
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(5, 1)), "the shapes do not chain"),
    (nn.Sequential(nn.Linear(4, 3), nn.MultiheadAttention(3, 1), nn.Linear(3, 1)), "MultiheadAttention"),
    (nn.Linear(4, 1), "no hidden layer"),
    (nn.TransformerEncoderLayer(d_model=4, nhead=1), "TransformerEncoderLayer holds MultiheadAttention"),
    ((np.ones((3, 4)), np.ones(3)), "at least two layers"),
    ((np.ones((3, 4)), np.ones(3), np.ones((1, 5)), np.ones(1)), "the shapes do not chain"),
    ((np.ones((3, 4)), np.ones(2), np.ones((1, 3)), np.ones(1)), "b1 must have shape"),
    ((np.ones((3, 4)), np.ones(3), np.full((1, 3), np.nan), np.ones(1)), "non-finite"),
    ("weights.pt", "cannot read str"),
])
def test_what_cannot_be_read_is_refused_in_one_line(obj, match):
    with pytest.raises(ValueError, match=match) as e:
        read_network(obj)
    assert "\n" not in str(e.value)


def test_an_unknown_activation_name_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        read_network((np.ones((3, 4)), np.ones(3), np.ones((1, 3)), np.ones(1)), activation="swish2")
