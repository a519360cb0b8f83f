"""Peak memory of one call, over what was allocated before it.

CUDA: torch.cuda.max_memory_allocated. CPU (Linux): the process's resident-set high-water
mark (VmHWM, reset through /proc/self/clear_refs) over its resident size at the start, after
malloc_trim hands freed heap back to the system, so every allocation is counted, including
those made inside torch.compile's generated code. Elsewhere: None.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable, Optional

import torch

_libc = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _cpu_peak(fn: Callable[[], object]) -> Optional[int]:
    try:
        if _libc is not None and hasattr(_libc, "malloc_trim"):
            _libc.malloc_trim(0)
        start = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident size
    except OSError:
        return None
    fn()
    return max(0, _status_kib("VmHWM") - start) * 1024


def peak_bytes(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Extra peak memory of fn() in bytes, or None where it cannot be measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    if device.type == "cpu":
        return _cpu_peak(fn)
    return None
