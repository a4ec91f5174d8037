"""How a model was made: backend, versions, kernel build and machine (stored beside its metrics)."""

from __future__ import annotations

import functools
import platform
from typing import Any

import torch

__all__ = ["provenance", "machine", "backends_of", "cpu_model", "cpu_features"]


def cpu_model() -> str:
    """The CPU's model name (or the platform's description)."""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name") or ln.startswith("Model"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The vector features that decide the kernel's variant, as the OS reports them."""
    want = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx", "sse4_2", "neon", "asimd", "sve")
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for ln in f:
                if ln.startswith(("flags", "Features")):
                    flags |= set(ln.split(":", 1)[1].split())
        return [w for w in want if w in flags]
    except OSError:
        return []



@functools.lru_cache(maxsize=None)
def _cpu() -> tuple[str, tuple[str, ...]]:
    return cpu_model(), tuple(cpu_features())


def machine(device: torch.device) -> dict[str, Any]:
    """The device and, on a CPU, its model and vector features."""
    model, features = _cpu()
    out: dict[str, Any] = {"device": device.type, "cpu": model, "cpu_features": list(features),
                           "machine": platform.machine()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["cuda"] = torch.version.cuda
    return out


def provenance(backend, device: torch.device, workers: int, state=None) -> dict[str, Any]:
    """What `fit` records for the models it trains: backend name, torch version,
    kernel build id (kernel backend) and the machine. Results depend on the
    backend and, through float rounding, on the kernel's vector variant;
    never on `workers`, which is kept for the record."""
    return {"backend": backend.name, "torch": torch.__version__, "kernel_build": None, **backend.describe(state),
            **machine(device), "workers": workers}


def backends_of(provenances: list[dict[str, Any]]) -> list[str]:
    """The distinct backends (with kernel ISA) that made these models; 'unknown' for models stored without provenance."""
    names = set()
    for p in provenances:
        if not p:
            names.add("unknown")
        else:
            isa = p.get("kernel_isa")
            names.add(f"{p['backend']} ({isa})" if isa else p["backend"])
    return sorted(names)
