"""What every op module registers for its custom ops: the fake implementations and the
autograd of the Triton ops (defined in Python) and, when the extension is loaded, of the
C++/CUDA ops, and their autocast policy (pyface/_autocast.py). Each op names its pair
`pyface::<op>_forward[_triton]` and `pyface::<op>_backward[_triton]`.

An op may also give its forward's decomposition: the same outputs from standard aten ops (its
reference), which pyface.export substitutes where a runtime has no pyface kernels (ONNX).

An op whose forward keeps tensors for its backward has an inference op besides,
`pyface::<op>_inference[_triton]`, which the public op calls when no gradient is wanted: it
stores nothing the backward alone needs, and has no autograd."""
from __future__ import annotations

from collections.abc import Callable

import torch

from pyface import _extension
from pyface._autocast import register_custom_op_autocast

DECOMPOSITIONS: dict[str, Callable] = {}  # "pyface::<op>_forward[_triton]" -> its aten decomposition


def register_custom_ops(op: str, *, forward_fake: Callable, backward_fake: Callable, backward: Callable,
                        make_setup_context: Callable, triton_backward: Callable | None,
                        decomposition: Callable | None = None) -> None:
    """make_setup_context(backward_op) gives the setup_context that stores which backward op
    the autograd backward calls (the Triton or the compiled one); triton_backward is None
    for an op without Triton kernels; decomposition takes the forward op's arguments."""
    pairs = []
    if triton_backward is not None:
        pairs.append((f"pyface::{op}_forward_triton", f"pyface::{op}_backward_triton", triton_backward))
    if _extension.loaded():
        pairs.append((f"pyface::{op}_forward", f"pyface::{op}_backward", getattr(torch.ops.pyface, f"{op}_backward")))
    for forward_name, backward_name, backward_op in pairs:
        torch.library.register_fake(forward_name)(forward_fake)
        torch.library.register_fake(backward_name)(backward_fake)
        torch.library.register_autograd(forward_name, backward, setup_context=make_setup_context(backward_op))
        register_custom_op_autocast(forward_name)
        register_custom_op_autocast(backward_name)
        if decomposition is not None:
            DECOMPOSITIONS[forward_name] = decomposition


def register_inference_ops(op: str, *, fake: Callable, decomposition: Callable, triton: bool) -> None:
    """The fake implementation, autocast policy and decomposition of the op's inference ops."""
    names = [f"pyface::{op}_inference_triton"] if triton else []
    if _extension.loaded():
        names.append(f"pyface::{op}_inference")
    for name in names:
        torch.library.register_fake(name)(fake)
        register_custom_op_autocast(name)
        DECOMPOSITIONS[name] = decomposition
