"""The dense-motion network's input (docs/ops.md, sparse_motion_warp): the public op, its custom-op
registrations (fake implementation and autograd) and the choice of backend.

The fused kernels sample the one feature tensor at each motion's positions T_k(z), formed on
the spot: no (N*(K+1), C, *S) repeat of the feature and no sparse-motion grid tensor."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface import _backends
from pyface._autocast import follows_autocast
from pyface.contracts import checks
from pyface.ops._registration import register_custom_ops
from pyface.reference.sparse_motion_warp import sparse_motion_warp as reference_sparse_motion_warp

OP = "sparse_motion_warp"

_PADDING_CODES = {"zeros": 0, "border": 1}
_PADDING_NAMES = {code: name for name, code in _PADDING_CODES.items()}


@follows_autocast
def sparse_motion_warp(
    feature: Tensor,
    kp_source: Tensor,
    kp_driving: Tensor,
    jacobian: Tensor | None = None,
    *,
    align_corners: bool = False,
    padding_mode: str = "zeros",
    backend: str | None = None,
) -> Tensor:
    """(N, K+1, C, *S) from feature (N, C, *S), 2-D or 3-D: slot k is grid_sample(feature,
    T_k(z)) on the identity grid z of S, T_k(z) = kp_source_k + J_k (z - kp_driving_k)
    (J_k = I without a jacobian), and slot 0 the feature resampled at z itself."""
    checks.check_sparse_motion_warp(feature, kp_source, kp_driving, jacobian, padding_mode)
    chosen = _backends.resolve(OP, feature.device, backend)
    if chosen == "reference":
        return reference_sparse_motion_warp(feature, kp_source, kp_driving, jacobian, align_corners=align_corners,
                                            padding_mode=padding_mode)
    forward = _triton_forward if chosen == "triton" else torch.ops.pyface.sparse_motion_warp_forward
    return forward(
        feature, kp_source, kp_driving, jacobian, align_corners, _PADDING_CODES[padding_mode]
    )


# --- Triton backend as a custom op (the kernels import triton only when first run) ---------


@torch.library.custom_op("pyface::sparse_motion_warp_forward_triton", mutates_args=())
def _triton_forward(feature: Tensor, kp_source: Tensor, kp_driving: Tensor, jacobian: Tensor | None,
                    align_corners: bool, padding: int) -> Tensor:
    from pyface.triton_kernels import sparse_motion_warp as kernels

    return kernels.forward(feature, kp_source, kp_driving, jacobian, align_corners, padding)


@torch.library.custom_op("pyface::sparse_motion_warp_backward_triton", mutates_args=())
def _triton_backward(grad_output: Tensor, feature: Tensor, kp_source: Tensor, kp_driving: Tensor,
                     jacobian: Tensor | None, align_corners: bool, padding: int, feature_grad: bool,
                     deterministic: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from pyface.triton_kernels import sparse_motion_warp as kernels

    return kernels.backward(grad_output, feature, kp_source, kp_driving, jacobian, align_corners, padding,
                            feature_grad, deterministic)


# --- what every backend's ops share: shapes for tracing, and the backward -------------------


def _forward_fake(feature, kp_source, kp_driving, jacobian, align_corners, padding):
    n, c = feature.shape[:2]
    return feature.new_empty((n, kp_source.shape[1] + 1, c, *feature.shape[2:]))


def _backward_fake(grad_output, feature, kp_source, kp_driving, jacobian, align_corners, padding, feature_grad,
                   deterministic):
    return (
        feature.new_empty(feature.shape if feature_grad else (0,)),
        kp_source.new_empty(kp_source.shape),
        kp_driving.new_empty(kp_driving.shape),
        feature.new_empty(jacobian.shape if jacobian is not None else (0,)),
    )


def _make_setup_context(backward_op):
    def setup_context(ctx, inputs, output):
        feature, kp_source, kp_driving, jacobian, align_corners, padding = inputs
        ctx.backward_op = backward_op
        ctx.options = (align_corners, padding)
        ctx.save_for_backward(feature, kp_source, kp_driving, jacobian)

    return setup_context


def _backward(ctx, grad_output):
    feature, kp_source, kp_driving, jacobian = ctx.saved_tensors
    needs = ctx.needs_input_grad
    grads = ctx.backward_op(grad_output, feature, kp_source, kp_driving, jacobian, *ctx.options, needs[0],
                             torch.are_deterministic_algorithms_enabled())
    return (*(grad if need else None for grad, need in zip(grads, needs[:4])), None, None)


def _decomposition(feature, kp_source, kp_driving, jacobian, align_corners, padding):
    return reference_sparse_motion_warp(feature, kp_source, kp_driving, jacobian, align_corners=align_corners,
                                        padding_mode=_PADDING_NAMES[padding])


register_custom_ops(
    "sparse_motion_warp",
    forward_fake=_forward_fake,
    backward_fake=_backward_fake,
    backward=_backward,
    make_setup_context=_make_setup_context,
    triton_backward=_triton_backward,
    decomposition=_decomposition,
)
