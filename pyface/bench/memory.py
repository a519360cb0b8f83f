"""Peak memory of one call: the most bytes its tensors held at once, over what was
allocated before it.

CUDA: torch.cuda.max_memory_allocated. CPU: torch's profiler with profile_memory records
every allocation and free of the CPU allocator (torch.compile's generated code allocates
through it too); the peak is the largest running sum of those, in time order. This counts
allocations, not resident pages, so a gradient written into pages that the process already
held still counts (the resident-set high-water mark read 0 for such calls).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

import torch


def _allocation_peak(events) -> int:
    """The largest running total of (time, +bytes allocated / -bytes freed) events."""
    running = peak = 0
    for _, nbytes in sorted(events):
        running += nbytes
        peak = max(peak, running)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced():
    """The profiler's C++ side logs every start and stop (and, on a CUDA build without a
    GPU, a failed device query) straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak(fn: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = torch._C._autograd.DeviceType.CPU
    return _allocation_peak((event.start_ns(), event.nbytes()) for event in prof.profiler.kineto_results.events()
                            if event.name() == "[memory]" and event.device_type() == cpu)


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
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
