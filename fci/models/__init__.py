"""Masked models (SPEC §2): every weight matrix carries a 0/1 mask applied inside the
forward pass, so no optimiser can revive a masked weight.

- `fci.models.base`: `MaskedLayers`, what every masked model shares, and `resolve_device`;
- `fci.models.mlp`: `MaskedMLP` and `MaskedMLPStack` (many models trained as one);
- `fci.models.cnn`: `MaskedCNN` and `MaskedCNNStack`.
"""

from fci.models.base import MaskedLayers, resolve_device
from fci.models.cnn import HEADS, MaskedCNN, MaskedCNNStack, first_layer_filters
from fci.models.mlp import MaskedMLP, MaskedMLPStack

__all__ = ["MaskedLayers", "MaskedMLP", "MaskedMLPStack", "MaskedCNN", "MaskedCNNStack", "HEADS", "first_layer_filters",
           "resolve_device"]
