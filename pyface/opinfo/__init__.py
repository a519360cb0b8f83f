"""One description per op (torch's OpInfo is the model): the inputs the op is checked on and
the shapes it is timed on. tests/test_ops.py runs the generic checks of every description
(reference parity on fresh random inputs, half types and float64, non-contiguous layouts,
opcheck, float64 gradcheck, torch.compile, every bad input and its error); `pyface bench`
times the description's cases. Adding an op is its kernels, its description here and the
tests only it needs.

Every tensor is fresh random data (never zeros), drawn from a generator seeded per sample."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

# CPU runs scale the batch so the input stays near this many elements (and say so).
CPU_ELEMENT_BUDGET = 4 * 2**20
QUICK_ELEMENT_BUDGET = 2**18


@dataclass
class Sample:
    """One call of an op: its tensor arguments by name and the rest."""
    tensors: dict[str, Tensor | None]
    kwargs: dict = field(default_factory=dict)
    # tensors whose gradient must come back in their own strides (the layout samples)
    grad_layout: tuple[str, ...] = ()

    def arguments(self) -> dict:
        return {**self.tensors, **self.kwargs}


@dataclass(frozen=True)
class BadInput:
    """A bad call: `change` turns the arguments of a valid call into bad ones, which must
    raise `error` with a message matching `match`."""
    label: str
    change: Callable[[dict], dict]
    error: type[Exception]
    match: str


@dataclass(frozen=True)
class BenchCase:
    """A `pyface bench` case: fresh random inputs of the anchor's shape for a device and
    dtype, the inputs that carry gradients, and the bytes the op must move at the least
    (which turns a time into an achieved bandwidth)."""
    op: str
    name: str
    shape: tuple[int, ...]  # the main input's shape in docs/ops.md; shape[0] is the batch
    make: Callable[[tuple[int, ...], torch.device, torch.dtype], dict]  # shape -> kwargs of the op
    grad_inputs: tuple[str, ...]  # inputs that require grad in forward+backward
    min_bytes: Callable[[dict, bool], int]  # (inputs, with_backward) -> bytes moved at the least
    note: str = ""
    tags: tuple[str, ...] = field(default=())
    positional: tuple[str, ...] = ("input", "target")  # inputs passed by position, in order
    main_input: str = "input"  # the input whose shape is `shape`
    cpu_batch: int | None = None  # the batch of a full CPU run, when not set by the element budget
    # The correctness check's relative error bound, when the dtype's default does not fit the
    # op (see the warping cases).
    tolerance: float | None = None
    # The shape the report shows, when the main input's does not describe the work (the
    # heatmaps' keypoints say less than the maps written).
    work_shape: Callable[[dict], tuple[int, ...]] | None = None

    def batch_for(self, device: torch.device, quick: bool) -> int:
        if device.type == "cpu" and not quick and self.cpu_batch is not None:
            return self.cpu_batch
        budget = QUICK_ELEMENT_BUDGET if quick else (CPU_ELEMENT_BUDGET if device.type == "cpu" else None)
        if budget is None:
            return self.shape[0]
        per_sample = math.prod(self.shape[1:])
        return max(1, min(self.shape[0], budget // per_sample))

    def inputs(self, device: torch.device, dtype: torch.dtype, quick: bool = False) -> dict:
        shape = (self.batch_for(device, quick), *self.shape[1:])
        return self.make(shape, device, dtype)


OnDevice = Callable[[str], Sample]  # device -> a float32 sample on it


@dataclass(frozen=True)
class OpInfo:
    name: str
    op: Callable  # pyface.ops.<name>
    reference: Callable  # pyface.reference.<name>
    samples: dict[str, OnDevice]  # float32 reference parity, on every backend
    typed: dict[str, Callable[[str, torch.dtype], Sample]]  # the same in float16, bfloat16 and (CPU) float64
    layouts: dict[str, OnDevice]  # non-contiguous and channels-last views
    opcheck: dict[str, Callable[[str, str], list[tuple]]]  # (device, "" or "_triton") -> [(custom op, args)]
    gradcheck: dict[str, Callable[[], Sample]]  # float64 on the CPU: every float tensor is checked
    compiled: dict[str, OnDevice]  # calls for torch.compile(fullgraph=True), on every backend
    valid: Callable[[], dict]  # the arguments of a valid CPU call, which bad_inputs spoil
    bad_inputs: tuple[BadInput, ...]
    bench: tuple[BenchCase, ...]
    compile_gradients: bool = False  # also compare the compiled call's gradients
    float64_backends: tuple[str, ...] = ("cpu",)  # where the typed samples run in float64 too


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CHANNEL_LAYOUTS = ("channels_last", "channels_last_3d", "sliced")


def channel_layout(t: Tensor, name: str) -> Tensor:
    """(N, C, *S) `t` in a CHANNEL_LAYOUTS layout: channels-last (2-D or 3-D S), or every other
    channel of a twice as wide tensor (a strided view)."""
    if name == "sliced":
        return torch.cat([t] * 2, dim=1)[:, ::2]
    return t.to(memory_format=torch.channels_last if name == "channels_last" else torch.channels_last_3d)


def nbytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _descriptions() -> dict[str, OpInfo]:
    from pyface.opinfo import (
        global_local_attention,
        keypoint_heatmaps,
        keypoint_warp,
        softmax_pool,
        sparse_motion_warp,
        weighted_l1_loss,
    )

    infos = [weighted_l1_loss.INFO, global_local_attention.INFO, softmax_pool.INFO, keypoint_heatmaps.INFO,
             keypoint_warp.INFO, sparse_motion_warp.INFO]
    return {info.name: info for info in infos}


OPS: dict[str, OpInfo] = _descriptions()
