"""Fixed Parameter Expansion (SPEC §3): split each hidden unit into `alpha` children that
partition its active inputs, keep the non-zero parameter count fixed.

- `fci.fpe.splits`: one registry of splits (how inputs are partitioned) for dense and conv layers;
- `fci.fpe.mlp`: `expand` and `expand_layers` for masked MLPs;
- `fci.fpe.cnn`: `expand_cnn` and `expand_cnn_layers` for masked CNNs;
- `fci.fpe.nm`: N:M structured child masks (`expand_nm`).
"""

from fci.fpe.cnn import expand_cnn, expand_cnn_layers
from fci.fpe.mlp import expand, expand_layers
from fci.fpe.nm import expand_nm, nm_mask, nm_violations, parse_nm, sibling_overlap
from fci.fpe.splits import (
                            CONV_SPLITS,
                            SPLITS,
                            Split,
                            conv_split_groups,
                            gram_clusters,
                            register_split,
                            split_groups,
                            split_info,
                            unregister_split,
)

__all__ = ["expand", "expand_layers", "expand_cnn", "expand_cnn_layers", "expand_nm", "nm_mask", "nm_violations", "parse_nm",
           "sibling_overlap", "Split", "SPLITS", "CONV_SPLITS", "register_split", "unregister_split", "split_info", "split_groups",
           "conv_split_groups", "gram_clusters"]
