"""The batched trainer (SPEC §2–3, §7).

- `fci.train.config`: `TrainConfig` (how models train) and `FPESpec` (one trial);
- `fci.train.maths`: the specified training step, once, and its shared pieces;
- `fci.train.backends`: the ways to run it (`kernel`, `torch`, `reference`), by name;
  `fci.train.backends.kernel` holds the C kernel (`fitkernel.c`) and its build (`library`);
- `fci.train.fitting`: `fit`, `evaluate`, `train_models`;
- `fci.train.schedule`: the FPE schedule over any data (`run_fpe`);
- `fci.train.executors`: where its stacks train: here, or on a Dask cluster (`dask_executor`);
- `fci.train.persistence`: one store entry per model;
- `fci.train.recompute`: a stored model's measurements recomputed from its weights (the store's re-verification);
- `fci.train.results`, `fci.train.provenance`: what comes back, and how it was made.

    from fci.train import FPESpec, TrainConfig, run_fpe, fit
"""

from typing import Any

from fci.train.backends import Backend, BackendUnavailable, FitState, KernelBackend, ReferenceBackend, TorchBackend, auto_backend
from fci.train.backends import names as backend_names
from fci.train.config import FPESpec, TrainConfig
from fci.train.executors import ClusterError, DaskExecutor, Executor, LocalExecutor, dask_executor
from fci.train.fitting import evaluate, fit, train_models
from fci.train.maths import per_model_loss
from fci.train.persistence import entry_configs, load_fpe_result, save_fpe_result, split_tensors, trial_keys
from fci.train.provenance import backends_of, provenance
from fci.train.results import FPEResult, ModelResult
from fci.train.schedule import SCHEDULE_VERSION, FPERun, PlanCost, auto_max_stack, plan_cost, run_fpe, run_fpe_data, trial_bytes

__all__ = [
    "TrainConfig",
    "FPESpec",
    "ModelResult",
    "FPEResult",
    "fit",
    "evaluate",
    "per_model_loss",
    "train_models",
    "run_fpe",
    "run_fpe_data",
    "FPERun",
    "Executor",
    "LocalExecutor",
    "DaskExecutor",
    "dask_executor",
    "ClusterError",
    "SCHEDULE_VERSION",
    "trial_keys",
    "auto_max_stack",
    "trial_bytes",
    "PlanCost",
    "plan_cost",
    "entry_configs",
    "save_fpe_result",
    "load_fpe_result",
    "split_tensors",
    "Backend",
    "BackendUnavailable",
    "FitState",
    "KernelBackend",
    "TorchBackend",
    "ReferenceBackend",
    "auto_backend",
    "backend_names",
    "backends_of",
    "provenance",
]


def __getattr__(name: str) -> Any:
    if name == "DataFPEResult":
        from fci.train import results

        return results.DataFPEResult  # warns: deprecated, removed in fci 0.3
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
