"""The benchmark cases: each op's description (pyface.opinfo) holds its cases; this list of
them all drives `pyface bench` and the pytest-benchmark tests.

A case builds fresh random inputs (never zeros) for a device and dtype, says which of them
carry gradients, and how many bytes the op must move at the least, which turns a time into
an achieved bandwidth.
"""
from __future__ import annotations

from pyface.bench import baselines
from pyface.opinfo import CPU_ELEMENT_BUDGET, QUICK_ELEMENT_BUDGET, BenchCase
from pyface.opinfo import OPS as DESCRIPTIONS

__all__ = ["BASELINES", "CASES", "CPU_ELEMENT_BUDGET", "Case", "OPS", "QUICK_ELEMENT_BUDGET", "select"]

Case = BenchCase
CASES: list[Case] = [case for info in DESCRIPTIONS.values() for case in info.bench]

# The op each case's name refers to: pyface's public op and the eager reference (the float64
# truth of every row); BASELINES: what the eager and torch.compile rows time, where that is
# not the reference itself.
BASELINES = {"keypoint_warp": baselines.keypoint_warp, "sparse_motion_warp": baselines.sparse_motion_warp}
OPS = {name: (info.op, info.reference) for name, info in DESCRIPTIONS.items()}


def select(ops: list[str] | None = None, quick: bool = False) -> list[Case]:
    chosen = [c for c in CASES if ops is None or c.op in ops]
    return [c for c in chosen if "quick" in c.tags] if quick else chosen
