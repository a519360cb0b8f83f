"""Keypoint heatmaps (docs/ops.md, keypoint_heatmaps): the public op, its custom-op registrations (fake
implementation and autograd) and the choice of backend. The kernels write the maps
directly: no expanded coordinate grid, no per-keypoint difference tensor, no
concatenation with the background slot."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pyface import _backends
from pyface._autocast import follows_autocast
from pyface.contracts import checks
from pyface.ops._registration import register_custom_ops
from pyface.reference.keypoint_heatmaps import keypoint_heatmaps as reference_keypoint_heatmaps

OP = "keypoint_heatmaps"


@follows_autocast
def keypoint_heatmaps(
    kp_driving: Tensor,
    kp_source: Tensor,
    spatial_size: Sequence[int],
    *,
    variance: float = 0.01,
    backend: str | None = None,
) -> Tensor:
    """(N, K+1, *spatial_size): slot 0 zeros; slot k exp(-0.5 |z - kp_driving_k|^2 / variance)
    minus the same for kp_source, on the identity grid z (each axis linspace(-1, 1), the
    keypoints' last dim ordered (x, y[, z])). kp_driving, kp_source: (N, K, d), d = 2 or 3."""
    spatial_size = tuple(spatial_size) if isinstance(spatial_size, (list, torch.Size)) else spatial_size
    checks.check_keypoint_heatmaps(kp_driving, kp_source, spatial_size, variance)
    chosen = _backends.resolve(OP, kp_driving.device, backend)
    if chosen == "reference":
        return reference_keypoint_heatmaps(kp_driving, kp_source, spatial_size, variance=variance)
    forward = _triton_forward if chosen == "triton" else torch.ops.pyface.keypoint_heatmaps_forward
    return forward(kp_driving, kp_source, list(spatial_size), float(variance))


# --- Triton backend as a custom op (the kernels import triton only when first run) ---------


@torch.library.custom_op("pyface::keypoint_heatmaps_forward_triton", mutates_args=())
def _triton_forward(kp_driving: Tensor, kp_source: Tensor, spatial_size: list[int], variance: float) -> Tensor:
    from pyface.triton_kernels import keypoint_heatmaps as kernels

    return kernels.forward(kp_driving, kp_source, spatial_size, variance)


@torch.library.custom_op("pyface::keypoint_heatmaps_backward_triton", mutates_args=())
def _triton_backward(grad: Tensor, kp_driving: Tensor, kp_source: Tensor, variance: float) -> tuple[Tensor, Tensor]:
    from pyface.triton_kernels import keypoint_heatmaps as kernels

    return kernels.backward(grad, kp_driving, kp_source, variance)


# --- what every backend's ops share: shapes for tracing, and the backward -------------------


def _forward_fake(kp_driving, kp_source, spatial_size, variance):
    N, K, _ = kp_driving.shape
    return kp_driving.new_empty((N, K + 1, *spatial_size))


def _backward_fake(grad, kp_driving, kp_source, variance):
    return torch.empty_like(kp_driving, memory_format=torch.contiguous_format), torch.empty_like(
        kp_source, memory_format=torch.contiguous_format
    )


def _make_setup_context(backward_op):
    def setup_context(ctx, inputs, output):
        kp_driving, kp_source, _, variance = inputs
        ctx.backward_op, ctx.variance = backward_op, variance
        ctx.save_for_backward(kp_driving, kp_source)

    return setup_context


def _backward(ctx, grad):
    kp_driving, kp_source = ctx.saved_tensors
    grad_driving, grad_source = ctx.backward_op(grad, kp_driving, kp_source, ctx.variance)
    return grad_driving, grad_source, None, None


def _decomposition(kp_driving, kp_source, spatial_size, variance):
    return reference_keypoint_heatmaps(kp_driving, kp_source, tuple(spatial_size), variance=variance)


register_custom_ops(
    "keypoint_heatmaps",
    forward_fake=_forward_fake,
    backward_fake=_backward_fake,
    backward=_backward,
    make_setup_context=_make_setup_context,
    triton_backward=_triton_backward,
    decomposition=_decomposition,
)
