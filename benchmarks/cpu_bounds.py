"""The CPU report's rows that fall short of 2x eager, each timed beside the least work its
result needs, in the bench's rotation (pyface.bench.runner.time_until_steady: eager,
torch.compile, pyface and the bound in turns, medians):

- global_local_attention, bfloat16: the cell product(s) alone, the same oneDNN GEMM every
  implementation runs (one in the forward; three in forward+backward: the projection, d/d w1
  and d/d context).
- weighted_l1_loss ATVGnet forward: torch's sub and mul into one output (reads input, target
  and weight and writes an input-sized tensor: the bytes the fused forward moves, as it also
  writes the gradient), and the three inputs only read (sums).
- softmax_pool CLIP-size float32: the values only read (a sum).

A bound faster than half of eager's time leaves room for 2x; one slower than that shows the
row cannot reach 2x on this host.

    python benchmarks/cpu_bounds.py [OUT.md]
"""
from __future__ import annotations

import statistics
import sys

import torch

from pyface.bench import runner
from pyface.bench.cases import select

CPU = torch.device("cpu")


def cell_products(inputs: dict, with_backward: bool) -> dict:
    context_dim = inputs["context"].shape[1]
    rows = inputs["context"].flatten(2).transpose(1, 2).reshape(-1, context_dim).contiguous()
    w1_cell = inputs["w1"][:, inputs["face"].shape[1]:]
    grad_projection = torch.randn(rows.shape[0], w1_cell.shape[0], dtype=rows.dtype)

    def products():
        with torch.no_grad():
            torch.mm(rows, w1_cell.t())
            if with_backward:
                torch.mm(grad_projection.t(), rows)
                torch.mm(grad_projection, w1_cell)

    return {"cell products": products}


def loss_streams(inputs: dict, with_backward: bool) -> dict:
    x, t, w = inputs["input"], inputs["target"], inputs["weight"]
    out = torch.empty_like(x)

    def read_write():
        with torch.no_grad():
            torch.mul(torch.sub(x, t, out=out), w, out=out)

    def read_only():
        with torch.no_grad():
            x.sum(), t.sum(), w.sum()

    return {"read 3, write 1": read_write, "read 3": read_only}


def values_read(inputs: dict, with_backward: bool) -> dict:
    def read_only():
        with torch.no_grad():
            inputs["values"].sum()

    return {"read values": read_only}


ROWS = [
    ("global_local_attention", "scaled", torch.bfloat16, "inference", cell_products),
    ("global_local_attention", "scaled", torch.bfloat16, "forward+backward", cell_products),
    ("global_local_attention", "GLAMOR-Net", torch.bfloat16, "forward+backward", cell_products),
    ("weighted_l1_loss", "ATVGnet", torch.bfloat16, "forward", loss_streams),
    ("softmax_pool", "CLIP-size", torch.float32, "inference", values_read),
    ("softmax_pool", "CLIP-size", torch.float32, "forward", values_read),
    ("softmax_pool", "CLIP-size", torch.float32, "forward+backward", values_read),
]


def measure(op: str, case_name: str, dtype: torch.dtype, mode: str, bounds) -> dict[str, float]:
    case = next(c for c in select([op]) if c.name == case_name)
    inputs = case.inputs(CPU, dtype)
    torch.compiler.reset()  # as runner.run_case: each case compiles afresh, under dynamo's recompile limit
    implementations = {name: fn for name, fn in runner.implementations(op, CPU).items()
                       if name in ("eager", "torch.compile", "pyface[cpu]")}
    for fn in implementations.values():
        runner.check(case, fn, inputs, dtype)  # raises past the bench's bound: nothing is timed unchecked
    steps = {name: runner.STEPS[mode](case, fn, inputs) for name, fn in implementations.items()}
    steps.update(bounds(inputs, mode == "forward+backward"))
    times = runner.time_until_steady(steps, CPU, quick=False)
    return {name: statistics.median(t) for name, t in times.items()}


def main(out: str | None = None) -> None:
    torch.set_num_threads(2)
    lines = ["| op | case | dtype | mode | eager ms | compile ms | pyface ms (x eager) | bound | bound ms (x eager) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for op, case_name, dtype, mode, bounds in ROWS:
        ms = measure(op, case_name, dtype, mode, bounds)
        eager, pyface = ms.pop("eager"), ms.pop("pyface[cpu]")
        compiled = ms.pop("torch.compile")
        for bound, bound_ms in ms.items():
            lines.append(f"| {op} | {case_name} | {str(dtype).removeprefix('torch.')} | {mode} | {eager:.3f} | "
                         f"{compiled:.3f} | {pyface:.3f} ({eager / pyface:.2f}x) | {bound} | "
                         f"{bound_ms:.3f} ({eager / bound_ms:.2f}x) |")
            print(lines[-1], flush=True)
    lines.append(f"\ncopy bandwidth in this run: {runner.copy_bandwidth_gbps(CPU, quick=False):.1f} GB/s")
    print(lines[-1])
    if out:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
