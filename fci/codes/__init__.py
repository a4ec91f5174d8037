"""Combinatorial code analysis from the weights alone (SPEC §5).

A trained ReLU network that computes an OR of ANDs stores each clause as a *feature
channel*: a set of hidden neurons that every literal of the clause excites. This
package reads those channels statically (no activations, no ground truth needed for
:func:`decode`):

- :func:`sign_codes` categorises weights into {-1, 0, +1} (``+1`` if ``w > tau``,
  ``-1`` if ``w < -tau``, strictly). ``tau`` is set per neuron from its own weights
  (by default a two-cluster split of its ``|w|``; a number is a fraction of the
  neuron's ``max|w|``), so codes are unchanged when neurons are permuted or one
  neuron's incoming weights and bias are divided by ``c > 0`` and its readouts
  multiplied by ``c``. Readouts are judged by their contribution ``W2[o, i]`` times
  neuron i's largest activation over ``{0,1}^n`` (:func:`neuron_peaks`).
  ``relative="global"`` keeps the former rule ``tau = threshold * max|W|``.
- :func:`literal_codes`, :func:`clause_channels`, :func:`readout_votes`,
  :func:`polysemanticity`, :func:`collision_matrix`, :func:`collision_graph` and
  :func:`channel_graph` describe the channels of known clauses.
- :func:`channel_code` reads the channels of known clauses as a code (which clauses
  have a distinct or a private channel) and :func:`code_bound` counts how many
  channels of a given size and overlap a layer can hold (the Johnson bound).
- :func:`split_view` compares a clause's channel in an FPE parent and its child.
- :func:`decode` (static: what the weights code) discovers clauses, channels and
  readouts from the weights and returns an evaluable :class:`DecodedCircuit`;
  ``decode(model, method="certified")`` (:func:`decode_certified`, static: what the weights
  prove) reads per output terms that sound bounds certify, with the share of the output
  they cover, for networks of any depth and activation; :func:`cascade` reads a network
  layer by layer, each neuron a feature of the layer below, composed over the inputs.
  :func:`decode_function` (what the network computes) reads a DNF or CNF of short
  terms per output from any network it can evaluate (any depth and elementwise
  activation) and inputs it draws from a stated input model. :func:`clause_recovery`,
  :func:`circuit_agreement` and :func:`true_formula_agreement` (the reference a reading
  is compared with) verify them.

Weights follow torch: ``W1`` (H, n), ``W2`` (O, H). Array functions accept torch
tensors or numpy arrays and return the same kind; channel lists hold Python ints.
Everything is vectorised over neurons and clauses: channels of 1,000 clauses on a
``(4096, 4096)`` layer take well under a second (``python -m benchmarks.codes``).

The modules, one idea each: :mod:`fci.codes.signs` (sign codes), :mod:`fci.codes.channels`
(channels, collisions, graphs, split views), :mod:`fci.codes.static` (``decode``),
:mod:`fci.codes.bounds` (sound bounds over cubes), :mod:`fci.codes.cubes` (cubes and their
unions), :mod:`fci.codes.certified` (the certified reading), :mod:`fci.codes.cascade`,
:mod:`fci.codes.functional` (``decode_function``), :mod:`fci.codes.circuit`
(``DecodedCircuit``) and :mod:`fci.codes.verify` (agreement, the reference, clause recovery).
"""

from fci.codes.channels import (
                                ChannelCode,
                                ClauseSplitView,
                                CollisionGraph,
                                channel_graph,
                                channel_code,
                                channel_membership,
                                clause_channels,
                                clause_table,
                                code_bound,
                                collision_graph,
                                collision_matrix,
                                polysemanticity,
                                readout_votes,
                                split_view,
)
from fci.codes.cascade import Cascade, Feature, cascade
from fci.codes.certified import decode_certified
from fci.codes.circuit import DecodedCircuit
from fci.codes.functional import decode_function
from fci.codes.signs import literal_codes, neuron_peaks, sign_codes
from fci.codes.static import decode
from fci.codes.verify import (
                              ceiling_agreement,
                              circuit_agreement,
                              clause_recovery,
                              network_predictions,
                              reading_gap,
                              true_formula_agreement,
)

__all__ = [
    "sign_codes",
    "literal_codes",
    "channel_membership",
    "clause_channels",
    "neuron_peaks",
    "readout_votes",
    "polysemanticity",
    "collision_matrix",
    "collision_graph",
    "CollisionGraph",
    "channel_graph",
    "clause_table",
    "channel_code",
    "ChannelCode",
    "code_bound",
    "ClauseSplitView",
    "split_view",
    "DecodedCircuit",
    "decode",
    "decode_certified",
    "cascade",
    "Cascade",
    "Feature",
    "decode_function",
    "true_formula_agreement",
    "reading_gap",
    "ceiling_agreement",
    "network_predictions",
    "clause_recovery",
    "circuit_agreement",
]
