"""Argument checks shared by the ops: each error names the argument and what was expected."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
LABEL_DTYPES = (torch.uint8, torch.int32, torch.int64)


def tensor(op: str, name: str, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")


def floating(op: str, name: str, value: torch.Tensor) -> None:
    tensor(op, name, value)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16, bfloat16 or float64, got {value.dtype}")


def integer_labels(op: str, name: str, value: torch.Tensor) -> None:
    tensor(op, name, value)
    if value.dtype not in LABEL_DTYPES:
        raise TypeError(f"{op}: {name} must be uint8, int32 or int64, got {value.dtype}")


def one_of(op: str, name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{op}: {name} must be one of {allowed}, got {value!r}")


def same_device(op: str, **tensors: torch.Tensor | None) -> None:
    given = {name: t for name, t in tensors.items() if t is not None}
    devices = {t.device for t in given.values()}
    if len(devices) > 1:
        where = ", ".join(f"{name} on {t.device}" for name, t in given.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {where}")


def labels_in_range(op: str, labels: torch.Tensor, num_classes: int) -> None:
    """Reads the labels (one reduction; a host sync on GPU): every one in [0, num_classes)."""
    if labels.numel() == 0:
        return
    low, high = torch.aminmax(labels)
    low, high = int(low), int(high)
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{op}: labels holds {bad}, outside [0, num_classes={num_classes})")


@torch.library.custom_op("pyface::labels_in_range", mutates_args=())
def labels_checked(op: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """labels_in_range for compiled code: an opaque op that reads the labels when the graph
    runs (a plain check is skipped while tracing, leaving an index error deep in the
    kernel) and returns a copy of them, which keeps the check from being pruned."""
    labels_in_range(op, labels, num_classes)
    return labels.clone()


@labels_checked.register_fake
def _(op, labels, num_classes):
    return torch.empty_like(labels)

