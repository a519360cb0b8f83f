"""pyface's ops under torch.autocast follow the policy of torch's float32 ops (softmax, the
losses, grid_sample): float16 and bfloat16 inputs are cast to float32, the op runs with
autocast off, and its outputs are float32. Layers inside an autocast region hand the ops
half-precision activations next to float32 parameters; without this, the ops' checks
refused that mix, and products inside a compiled op were autocast under its feet (the
kernel then read a bfloat16 buffer as float32)."""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch

POLICY_DTYPE = torch.float32
DEVICE_TYPES = ("cpu", "cuda")  # where pyface's kernels run


def _to_policy(value):
    if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
        return value.to(POLICY_DTYPE)
    return value


def follows_autocast(op: Callable) -> Callable:
    """Wraps a public op: inside an autocast region of its tensors' device, it runs in float32
    with autocast off; elsewhere it is the op itself."""

    @functools.wraps(op)
    def wrapper(*args, **kwargs):
        device_type = next((v.device.type for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)), None)
        if device_type not in DEVICE_TYPES or not torch.is_autocast_enabled(device_type):
            return op(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return op(*map(_to_policy, args), **{name: _to_policy(value) for name, value in kwargs.items()})

    return wrapper


def register_custom_op_autocast(name: str) -> None:
    """The same policy for a custom op called directly (torch.ops.pyface.*): its floating
    inputs cast to float32 and autocast off while it runs, its internal products included."""
    for device_type in DEVICE_TYPES:
        if torch.amp.is_autocast_available(device_type):
            torch.library.register_autocast(name, device_type, POLICY_DTYPE)
