"""Peak memory of one call: the most bytes its tensors held at once, over what was
allocated before it.

CUDA: torch.cuda.max_memory_allocated. CPU: torch's profiler with profile_memory records
every allocation and free of the CPU allocator (torch.compile's generated code allocates
through it too); the peak is the largest running sum of those, in time order. This counts
allocations, not resident pages, so a gradient written into pages that the process already
held still counts (the resident-set high-water mark read 0 for such calls). Only frees of
blocks allocated within the call count: the CPU allocator remembers the size of a block
allocated while an earlier profile ran even after it is freed outside one, and reports a
later block at that address, allocated unprofiled, as freed with that old size (a phantom
free that made a gradient-sized peak read 0).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

import torch


def _allocation_peak(events) -> int:
    """The largest running total of (time, address, +bytes allocated / -bytes freed) events,
    counting the frees of blocks allocated among them only."""
    live = set()
    running = peak = 0
    for _, address, nbytes in sorted(events, key=lambda event: event[0]):
        if nbytes > 0:
            live.add(address)
        elif address in live:
            live.remove(address)
        else:
            continue
        running += nbytes
        peak = max(peak, running)
    return peak


def _walk(events):
    for event in events:
        yield event
        yield from _walk(event.children)


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
    allocations = (event for event in _walk(prof.profiler.kineto_results.experimental_event_tree())
                   if event.tag == torch._C._profiler._EventType.Allocation)
    return _allocation_peak((event.start_time_ns, event.extra_fields.ptr, event.extra_fields.alloc_size)
                            for event in allocations if event.extra_fields.device.type == "cpu")


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
