"""Loads the compiled extension pyface._C, which registers the C++ and CUDA kernels.

pyface still imports without it (the Triton and reference backends serve), but says once
why it is missing and how to fix that.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch  # noqa: F401  (loads libtorch before the extension that links to it)

REBUILD_COMMAND = "pip install --no-build-isolation -e ."
_PACKAGE_DIR = Path(__file__).resolve().parent

try:  # the torch the build compiled against (a file the build writes beside _C)
    from pyface._build_info import TORCH_VERSION as BUILT_FOR_TORCH
except ImportError:
    BUILT_FOR_TORCH = None

try:
    from pyface import _C
    _LOAD_ERROR: ImportError | None = None
except ImportError as error:  # not built, or built against another torch
    _C = None
    _LOAD_ERROR = error

if _C is not None and _C.build_info["torch_version"] != torch.__version__:
    # it loaded, but torch's C++ API is not stable across releases: its kernels could crash
    BUILT_FOR_TORCH = _C.build_info["torch_version"]
    _C = None
    _LOAD_ERROR = ImportError(f"built for torch {BUILT_FOR_TORCH}, not this torch {torch.__version__}")


def _is_source_tree() -> bool:
    return (_PACKAGE_DIR.parent / "pyproject.toml").is_file() and (_PACKAGE_DIR.parent / "csrc").is_dir()


def missing_reason() -> str:
    """Why pyface._C is not loaded, and what to do about it; '' when it is."""
    if _C is not None:
        return ""
    if BUILT_FOR_TORCH is not None and BUILT_FOR_TORCH != torch.__version__:
        return (f"pyface's compiled extension was built for torch {BUILT_FOR_TORCH}, and this is torch "
                f"{torch.__version__}, so it is not used ({_LOAD_ERROR}). Rebuild it with: {REBUILD_COMMAND}")
    built = [p.name for p in _PACKAGE_DIR.glob("_C*") if p.suffix in (".so", ".pyd")]
    if not built and _is_source_tree():
        here = _PACKAGE_DIR.parent
        in_cwd = Path.cwd().resolve() == here or (sys.path and Path(sys.path[0] or ".").resolve() == here)
        return (f"pyface was imported from its source tree {_PACKAGE_DIR}, which holds no compiled "
                "extension (pyface._C)" + (", because Python looks in the current directory first; a "
                "non-editable install's copy is elsewhere" if in_cwd else "") +
                f". Run pyface from another directory, or build it in place with: {REBUILD_COMMAND}")
    if not built:
        return f"pyface's compiled extension (pyface._C) is not in {_PACKAGE_DIR}. Rebuild it with: {REBUILD_COMMAND}"
    return (f"pyface's compiled extension {built[0]} did not load ({_LOAD_ERROR}): it was probably built against "
            f"another torch than {torch.__version__}. Rebuild it with: {REBUILD_COMMAND}")


if _C is None:
    warnings.warn(f"pyface: {missing_reason()} Until then the 'cpu' and 'cuda' backends are unavailable and "
                  f"'triton'/'reference' serve instead.", RuntimeWarning, stacklevel=2)


def loaded() -> bool:
    """True when pyface._C imported and its kernels are registered."""
    return _C is not None


def has_cuda_kernels() -> bool:
    """True when pyface._C was compiled with its CUDA kernels."""
    return _C is not None and bool(_C.build_info["cuda"])


def set_flush_denormal(on: bool) -> bool:
    """torch.set_flush_denormal for every ATen CPU thread (with the extension; without it,
    the calling thread's alone, which is all torch reaches). False where the CPU cannot."""
    if _C is not None:
        return _C.set_flush_denormal_all_threads(on)
    return torch.set_flush_denormal(on)
