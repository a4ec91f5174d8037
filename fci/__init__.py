"""fci: Fixed Parameter Expansion and combinatorial interpretability.

Wider networks at the same non-zero parameter count do better; fci trains them
(`run_fpe`), splits neurons (`expand`), and reads their computation from the
weights (`decode`, `clause_channels`, `feature_capacity`). The names below are
the stable notebook API (docs/SPEC.md §6, plus the schedule, the store and the
datasets); each is imported from its module on first use, so `import fci` is
cheap and pulls in no torch until a name is touched.

    >>> import fci
    >>> task = fci.DNFTask.generate(n_clauses=8, clause_size=3, seed=0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # SPEC §1-§5: tasks, models, expansion, metrics, code analysis
    "BooleanTask": "fci.tasks",
    "DNFTask": "fci.tasks",
    "TaskConfig": "fci.tasks",
    "MaskedMLP": "fci.models",
    "expand": "fci.fpe",
    "register_split": "fci.fpe",
    "gram": "fci.metrics",
    "feature_capacity": "fci.metrics",
    "cosine_interference": "fci.metrics",
    "computational_capacity": "fci.metrics",
    "sign_codes": "fci.codes",
    "clause_channels": "fci.codes",
    "collision_matrix": "fci.codes",
    "collision_graph": "fci.codes",
    "decode": "fci.codes",
    "decode_function": "fci.codes",
    "read_network": "fci.codes.network",
    "decode_certified": "fci.codes",
    "cascade": "fci.codes",
    "network_predictions": "fci.codes",
    "clause_recovery": "fci.codes",
    "circuit_agreement": "fci.codes",
    "true_formula_agreement": "fci.codes",
    "ceiling_agreement": "fci.codes",
    # the FPE schedule
    "TrainConfig": "fci.train",
    "FPESpec": "fci.train",
    "run_fpe": "fci.train",
    "run_fpe_data": "fci.train",
    # the results store
    "Store": "fci.store",
    # datasets
    "Dataset": "fci.data",
    "DatasetSpec": "fci.data",
    "digits": "fci.data",
    "load_embeddings": "fci.data",
    "boolean": "fci.data",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from fci.codes import (  # noqa: F401
        ceiling_agreement,
        circuit_agreement,
        clause_channels,
        clause_recovery,
        collision_graph,
        collision_matrix,
        cascade,
        decode,
        decode_certified,
        decode_function,
        network_predictions,
        sign_codes,
        true_formula_agreement,
    )
    from fci.codes.network import read_network  # noqa: F401
    from fci.data import Dataset, DatasetSpec, boolean, digits, load_embeddings  # noqa: F401
    from fci.fpe import expand, register_split  # noqa: F401
    from fci.metrics import computational_capacity, cosine_interference, feature_capacity, gram  # noqa: F401
    from fci.models import MaskedMLP  # noqa: F401
    from fci.store import Store  # noqa: F401
    from fci.tasks import BooleanTask, DNFTask, TaskConfig  # noqa: F401
    from fci.train import FPESpec, TrainConfig, run_fpe, run_fpe_data  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fci' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
