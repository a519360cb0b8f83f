"""The benchmark cases: one list drives `pyface bench` and the pytest-benchmark tests.

A case builds fresh random inputs (never zeros) for a device and dtype, says which of them
carry gradients, and how many bytes the op must move at the least, which turns a time into
an achieved bandwidth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

import pyface

# CPU runs scale the batch so the input stays near this many elements (and say so).
CPU_ELEMENT_BUDGET = 4 * 2**20
QUICK_ELEMENT_BUDGET = 2**18


@dataclass(frozen=True)
class Case:
    op: str
    name: str
    shape: tuple[int, ...]  # the SPEC shape of the main input; shape[0] is the batch
    make: Callable[[tuple[int, ...], torch.device, torch.dtype], dict]  # shape -> kwargs of the op
    grad_inputs: tuple[str, ...]  # inputs that require grad in forward+backward
    min_bytes: Callable[[dict, bool], int]  # (inputs, with_backward) -> bytes moved at the least
    note: str = ""
    tags: tuple[str, ...] = field(default=())

    def batch_for(self, device: torch.device, quick: bool) -> int:
        budget = QUICK_ELEMENT_BUDGET if quick else (CPU_ELEMENT_BUDGET if device.type == "cpu" else None)
        if budget is None:
            return self.shape[0]
        per_sample = math.prod(self.shape[1:])
        return max(1, min(self.shape[0], budget // per_sample))

    def inputs(self, device: torch.device, dtype: torch.dtype, quick: bool = False) -> dict:
        shape = (self.batch_for(device, quick), *self.shape[1:])
        return self.make(shape, device, dtype)


def _nbytes(t) -> int:
    return 0 if t is None else t.numel() * t.element_size()


# --- weighted L1 loss (SPEC section 1) -----------------------------------------------------


def _l1_inputs(with_weight: bool, with_labels: bool, num_classes: int = 19):
    def make(shape, device, dtype):
        generator = torch.Generator().manual_seed(0)
        n, _, *spatial = shape

        def rand(*size):
            return torch.rand(*size, generator=generator).to(device=device, dtype=dtype)

        kwargs = {"input": rand(*shape), "target": rand(*shape)}
        if with_weight:
            kwargs["weight"] = rand(n, 1, *spatial) + 0.5  # an attention map + beta, as ATVGnet uses it
        if with_labels:
            kwargs["labels"] = torch.randint(0, num_classes, (n, *spatial), generator=generator, dtype=torch.uint8).to(device)
            kwargs["class_weights"] = pyface.nn.StyleAwarePhotometricLoss().class_weights.to(device)
        return kwargs

    return make


def _l1_bytes(inputs: dict, with_backward: bool) -> int:
    read = sum(_nbytes(inputs.get(k)) for k in ("input", "target", "weight", "labels"))
    return read + (_nbytes(inputs["input"]) if with_backward else 0)  # + the input gradient


def _l1_case(name, shape, with_weight, with_labels, tags=()):
    return Case(
        op="weighted_l1_loss",
        name=name,
        shape=shape,
        make=_l1_inputs(with_weight, with_labels),
        grad_inputs=("input",),
        min_bytes=_l1_bytes,
        note=("weight (N,1,H,W)" if with_weight else "") + ("labels (N,H,W) uint8" if with_labels else ""),
        tags=tags,
    )


CASES: list[Case] = [
    _l1_case("ATVGnet", (160, 3, 128, 128), with_weight=True, with_labels=False),
    _l1_case("style-aware 256", (8, 3, 256, 256), with_weight=False, with_labels=True, tags=("quick",)),
    _l1_case("style-aware 512", (8, 3, 512, 512), with_weight=False, with_labels=True),
    _l1_case("large", (32, 3, 512, 512), with_weight=False, with_labels=True),
]

# The op each case's name refers to: pyface's public op and the eager reference.
OPS = {
    "weighted_l1_loss": (pyface.ops.weighted_l1_loss, pyface.reference.weighted_l1_loss),
}


def select(ops: list[str] | None = None, quick: bool = False) -> list[Case]:
    chosen = [c for c in CASES if ops is None or c.op in ops]
    return [c for c in chosen if "quick" in c.tags] if quick else chosen
