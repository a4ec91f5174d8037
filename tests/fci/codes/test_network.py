"""What the readers accept (`fci.codes.network.read_network`): the same network from a
module, a MaskedMLP and a weight list reads the same; everything else is refused in one line."""

import numpy as np
import pytest
import torch
from torch import nn

from fci.codes.network import ModuleNetwork, Network, activation_valley, read_network
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


# --------------------------------------------------------------------------- modules evaluated whole


class _Custom(nn.Module):
    """A module with its own forward: Linear layers and functional activations."""

    def __init__(self, sizes=(6, 5, 4, 2), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.tanh(layer(x))
        return self.layers[-1](x)


def test_a_module_with_its_own_forward_is_evaluated_whole_when_asked():
    module = _Custom()
    with pytest.raises(ValueError, match="its own forward.*decode_function and network_predictions evaluate it whole"):
        read_network(module)  # the static readers need its layers
    net = read_network(module, whole=True)
    assert isinstance(net, ModuleNetwork) and (net.n_in, net.n_out) == (6, 2)
    np.testing.assert_array_equal(net.first_layer[0], module.layers[0].weight.detach().double().numpy())
    x = torch.randint(0, 2, (50, 6)).float()
    np.testing.assert_allclose(net.logits(x.numpy()), module(x).detach().double().numpy(), rtol=1e-6, atol=1e-6)
    module.train()
    net.logits(x.numpy())
    assert module.training and all(m.training for m in module.modules())  # its modes are restored


def test_the_first_layer_is_the_linear_layer_that_takes_the_inputs_whatever_its_registration_order():
    class Reversed(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(4, 1)  # registered first, called last
            self.inp = nn.Linear(7, 4)

        def forward(self, x):
            return self.out(torch.relu(self.inp(2 * x - 1)))  # the inputs reach the first layer rescaled

    m = Reversed()
    net = read_network(m, whole=True)
    assert net.n_in == 7 and net.first_layer[0].shape == (4, 7)


@pytest.mark.parametrize("module,match", [
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU6(), nn.Linear(3, 1), nn.Sigmoid()), "ends with an activation"),
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU6(), nn.Linear(5, 1)), "the shapes do not chain"),
    (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)), "BatchNorm1d, which fci cannot read"),
    (nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 1)), "LayerNorm, which fci cannot read"),
    (nn.LSTM(3, 3), "LSTM, which fci cannot read"),
    (nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Linear(2, 1)), "Conv1d, which fci cannot read"),
])
def test_what_the_functional_readers_cannot_evaluate_is_refused_in_one_line(module, match):
    with pytest.raises(ValueError, match=match) as e:
        read_network(module, whole=True)
    assert "\n" not in str(e.value)


class _BatchMixing(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 4), nn.Linear(4, 1)

    def forward(self, x):
        h = self.a(x)
        return self.b(torch.relu(h - h.mean(dim=0)))  # normalisation across the batch, by hand


class _Noisy(_BatchMixing):
    def forward(self, x):
        return self.b(torch.relu(self.a(x) + torch.randn(x.shape[0], 4)))


class _TwoWidths(_BatchMixing):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))  # runs on (N, 5) either way: which Linear reads the inputs?


class _Parallel(_BatchMixing):
    def __init__(self):
        super().__init__()
        self.a, self.c, self.b = nn.Linear(5, 4), nn.Linear(5, 4), nn.Linear(4, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) + torch.relu(self.c(x)))


class _Params(_BatchMixing):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) * self.scale)


@pytest.mark.parametrize("module,match", [
    (_BatchMixing(), "mixes the rows of a batch"),
    (_Noisy(), "not deterministic"),
    (_Parallel(), "2 nn.Linear layers taking its 5 inputs"),
    (_Params(), "_Params, which fci cannot read"),
])
def test_a_forward_fci_cannot_read_row_by_row_is_refused(module, match):
    with pytest.raises(ValueError, match=match) as e:
        read_network(module, whole=True)
    assert "\n" not in str(e.value)


def test_a_forward_taking_two_input_widths_is_ambiguous_and_refused_unless_its_first_layer_is_the_only_one():
    m = _TwoWidths()  # a: (5 -> 5), b: (5 -> 1); both Linear layers take 5 inputs, but only `a` receives them
    assert read_network(m, whole=True).first_layer[0].shape == (5, 5)

    class Ambiguous(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) if x.shape[1] == 3 else self.b(x)

    with pytest.raises(ValueError, match="runs on inputs of widths 3, 4"):
        read_network(Ambiguous(), whole=True)


def test_outputs_that_look_like_probabilities_are_warned_about(caplog):
    class Probabilities(_BatchMixing):
        def forward(self, x):
            return torch.sigmoid(self.b(torch.relu(self.a(x))))

    net = read_network(Probabilities(), whole=True)
    assert len(net.warnings) == 1 and "sigmoid" in net.warnings[0] and "\n" not in net.warnings[0]
    assert "all lie in (0, 1)" in caplog.text


def test_activation_valleys_are_the_minima():
    z = np.linspace(-4, 4, 80001)
    for name in ("gelu", "silu", "leaky_relu:-0.2"):
        v = activation_valley(name)
        f = Network(((np.eye(1), np.zeros(1)), (np.eye(1), np.zeros(1))), (name,)).activation(0)
        assert v is not None and f(np.array([v]))[0] <= f(z).min() + 1e-9
        assert abs(z[np.argmin(f(z))] - v) < 1e-3
    assert activation_valley("relu") is None and activation_valley("tanh") is None
