"""Which implementation serves an op: backend=None picks the best one built for the device."""
from __future__ import annotations

import importlib.util
import os

import torch

from pyface import _extension

BACKENDS = ("cpu", "cuda", "triton", "reference")
# Preference order when backend=None. Triton on CPU tensors exists only in Triton's
# interpreter (a debugging aid), so it is never picked for CPU by default.
_PREFERRED = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}


# Looked up once: torch.compile traces backend resolution, and Dynamo (torch 2.11) refuses
# to trace importlib's find_spec.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_installed() -> bool:
    return _TRITON_INSTALLED


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _why_unavailable(backend: str, device_type: str) -> str | None:
    """None when `backend` can run on `device_type` tensors here, else the reason it cannot."""
    if backend == "reference":
        return None
    if backend == "cpu":
        if device_type != "cpu":
            return f"backend 'cpu' runs on CPU tensors, not {device_type}"
        return None if _extension.loaded() else f"the compiled extension is not loaded ({_extension.REBUILD_COMMAND})"
    if backend == "cuda":
        if device_type != "cuda":
            return f"backend 'cuda' runs on CUDA tensors, not {device_type}"
        return None if _extension.has_cuda_kernels() else "pyface was built without CUDA kernels"
    if backend == "triton":
        if not triton_installed():
            return "triton is not installed"
        if device_type == "cuda" or (device_type == "cpu" and _triton_interpreted()):
            return None
        return f"backend 'triton' runs on CUDA tensors (CPU tensors only with TRITON_INTERPRET=1), not {device_type}"
    return f"unknown backend {backend!r}; expected one of {BACKENDS}"


def resolve(op: str, device: torch.device, backend: str | None, missing: dict[str, str] | None = None) -> str:
    """The backend that runs `op` on tensors of `device`; raises for one that cannot.
    `missing` names the backends this op does not have yet, each with the reason."""
    missing = missing or {}

    def why_not(candidate: str) -> str | None:
        return missing.get(candidate) or _why_unavailable(candidate, device.type)

    if backend is None:
        for candidate in _PREFERRED.get(device.type, ("reference",)):
            if why_not(candidate) is None:
                return candidate
        return "reference"
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS} or None, got {backend!r}")
    reason = why_not(backend)
    if reason is not None:
        raise RuntimeError(f"{op}: backend {backend!r} is not available: {reason}")
    return backend


def backends() -> dict[str, list[str]]:
    """The backends usable here, per device type, best first (CUDA only with a GPU)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {
        device: [b for b in dict.fromkeys((*_PREFERRED[device], "triton")) if _why_unavailable(b, device) is None]
        for device in devices
    }
