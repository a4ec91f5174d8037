"""Writing results as data: strict JSON (`jsonable`, `write_json`), atomic writes, the
run's environment record, and rebuilding config dataclasses from stored dicts.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

__all__ = ["jsonable", "atomic_write", "write_json", "write_text", "write_csv", "environment", "vector_isa", "known_fields"]


def jsonable(obj: Any) -> Any:
    """Strict-JSON version of obj: NaN/inf become None, numpy scalars Python ones,
    dataclasses their `to_dict()`."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj))
    return obj


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write through a temporary file beside `path` (`write(tmp)`), then rename it into
    place: a reader never sees half a file, and a crash leaves the old file intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` as strict JSON (`jsonable`), atomically."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    return atomic_write(path, lambda p: p.write_text(text + "\n"))


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write `text` atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_csv(df: Any, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


#: Vector instruction sets from the widest down, as /proc/cpuinfo names them -> as people do.
_ISAS = (("avx512f", "AVX-512"), ("sve", "SVE"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON"), ("neon", "NEON"),
         ("sse4_2", "SSE4.2"))


def vector_isa(features: Any) -> str | None:
    """The widest vector instruction set among a CPU's `features` (e.g. "AVX2"), or None."""
    have = set(features or ())
    return next((name for flag, name in _ISAS if flag in have), None)


def environment(device: Any) -> dict[str, Any]:
    """Package versions, interpreter, machine (CPU model and vector features), device
    and the code's commit: what summary.json records about where a run ran."""
    import torch

    from fci.train.provenance import cpu_features, cpu_model

    pkgs: dict[str, str | None] = {}
    for name in ("fci", "torch", "numpy", "scipy", "pandas", "plotly", "scikit-learn", "networkx", "safetensors", "tqdm"):
        try:
            pkgs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # e.g. fci run from a checkout
            mod = sys.modules.get(name)
            pkgs[name] = getattr(mod, "__version__", None)
    device = torch.device(device)
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_features": list(cpu_features()),
        "vector_isa": vector_isa(cpu_features()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "packages": pkgs,
        "argv": list(sys.argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            env["git_commit"] = commit.stdout.strip()
            env["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return env
def known_fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The items of `d` that are fields of the dataclass `cls`; unknown keys
    (e.g. written by newer code) are dropped with a warning naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        warnings.warn(f"{cls.__name__}.from_dict: dropping unknown keys {unknown}", stacklevel=3)
    return {k: v for k, v in d.items() if k in names}
