"""Loads the compiled extension pyface._C, which registers the C++ and CUDA kernels.

pyface still imports without it (the Triton and reference backends serve), but says so
once, with the command that rebuilds it.
"""
from __future__ import annotations

import warnings

import torch  # noqa: F401  (loads libtorch before the extension that links to it)

REBUILD_COMMAND = "pip install --no-build-isolation -e ."

try:
    from pyface import _C
except ImportError as error:  # not built, or built against another torch
    _C = None
    warnings.warn(
        f"pyface: the compiled extension did not load ({error}); the 'cpu' and 'cuda' "
        f"backends are unavailable and 'triton'/'reference' serve instead. Rebuild it from "
        f"the source tree with: {REBUILD_COMMAND}",
        RuntimeWarning,
        stacklevel=2,
    )


def loaded() -> bool:
    """True when pyface._C imported and its kernels are registered."""
    return _C is not None


def has_cuda_kernels() -> bool:
    """True when pyface._C was compiled with its CUDA kernels."""
    return _C is not None and bool(_C.build_info["cuda"])
