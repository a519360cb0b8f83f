"""Deploying a module built on pyface's ops.

- torch.export and AOTInductor need nothing from here: the exported program calls the pyface
  custom ops (they have fake implementations), and a package made by
  torch._inductor.aoti_compile_and_package runs in any process that has imported pyface first
  (which registers the ops it calls).
- ONNX has no pyface ops: to_onnx exports the program, replaces each pyface op by its
  decomposition into standard aten ops (the op's reference formulation: the motion warps become
  GridSample, 5-D included, which opset 20 defines), and converts that with torch.onnx.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from pyface.ops._registration import DECOMPOSITIONS


def decompositions() -> dict[torch._ops.OpOverload, Callable]:
    """Each registered pyface forward op (compiled and Triton) -> its decomposition, in the form
    ExportedProgram.run_decompositions takes."""
    table = {}
    for name, decomposition in DECOMPOSITIONS.items():
        namespace, op = name.split("::")
        table[getattr(getattr(torch.ops, namespace), op).default] = decomposition
    return table


def without_pyface_ops(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The exported program with every pyface op replaced by standard aten ops."""
    return program.run_decompositions(decompositions())


def to_onnx(model: nn.Module | torch.export.ExportedProgram, args: tuple, path: str | Path | None = None, *,
            opset_version: int = 20, **export_options) -> torch.onnx.ONNXProgram:
    """An ONNX program (torch.onnx.ONNXProgram; saved to `path` when given) of `model` on `args`,
    with pyface's ops decomposed. Needs the onnx and onnxscript packages (pip install
    "pyface[onnx]"). export_options go to torch.onnx.export (dynamic_shapes, ...)."""
    program = model if isinstance(model, torch.export.ExportedProgram) else torch.export.export(model, args)
    onnx_program = torch.onnx.export(without_pyface_ops(program), args, dynamo=True, opset_version=opset_version,
                                     **export_options)
    if path is not None:
        onnx_program.save(str(path))
    return onnx_program
