"""Keypoint-driven feature warping (docs/ops.md, keypoint_warp): the public op, its custom-op
registrations (fake implementation and autograd) and the choice of backend.

The fused kernel forms each output position's deformation from the K+1 motion weights and
the keypoints on the spot, never the (N, K+1, *S, d) sparse-motion tensor, the
mask-times-motion product or a per-keypoint copy of the feature, and samples the feature
there. The deformation (N, *S, d) and the motion weights (N, K+1, *S) (the mask, or its
softmax) are kept in the accumulation dtype for the backward; the deformation handed to
the user has the feature's dtype. When no gradient is wanted (torch.no_grad(),
torch.inference_mode(), or no input that requires one) the inference op runs instead: it keeps
no motion weights, and forms the deformation only when it is returned."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface import _backends
from pyface._autocast import follows_autocast
from pyface._dtypes import accumulation_dtype
from pyface.contracts import checks
from pyface.ops._registration import register_custom_ops, register_inference_ops
from pyface.reference.keypoint_warp import keypoint_warp as reference_keypoint_warp

OP = "keypoint_warp"

_PADDING_CODES = {"zeros": 0, "border": 1}
_PADDING_NAMES = {code: name for name, code in _PADDING_CODES.items()}


@follows_autocast
def keypoint_warp(
    feature: Tensor,
    kp_source: Tensor,
    kp_driving: Tensor,
    mask: Tensor,
    jacobian: Tensor | None = None,
    *,
    mask_logits: bool = False,
    align_corners: bool = False,
    padding_mode: str = "zeros",
    return_deformation: bool = False,
    backend: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Warps feature (N, C, *S_in), 2-D or 3-D, by the keypoint motions.

    deformation(z) = sum_k m_k(z) T_k(z) over the K+1 motions, T_0(z) = z and
    T_k(z) = kp_source_k + J_k (z - kp_driving_k) (J_k = I without a jacobian), with
    m = mask (N, K+1, *S_out), or its softmax over dim 1 when mask_logits; the output
    (N, C, *S_out) is grid_sample(feature, deformation) (bilinear / trilinear, padding
    "zeros" or "border", align_corners). Returns the output, or (output, deformation)."""
    checks.check_keypoint_warp(feature, kp_source, kp_driving, mask, jacobian, padding_mode)
    chosen = _backends.resolve(OP, feature.device, backend)
    if chosen == "reference":
        return reference_keypoint_warp(
            feature, kp_source, kp_driving, mask, jacobian, mask_logits=mask_logits, align_corners=align_corners,
            padding_mode=padding_mode, return_deformation=return_deformation,
        )
    args = (feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, _PADDING_CODES[padding_mode])
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:5]):
        forward = _triton_forward if chosen == "triton" else torch.ops.pyface.keypoint_warp_forward
        output, deformation, _ = forward(*args)
    else:
        inference = _triton_inference if chosen == "triton" else torch.ops.pyface.keypoint_warp_inference
        output, deformation = inference(*args, return_deformation)
    return (output, deformation.to(feature.dtype)) if return_deformation else output


# --- Triton backend as a custom op (the kernels import triton only when first run) ---------


@torch.library.custom_op("pyface::keypoint_warp_forward_triton", mutates_args=())
def _triton_forward(feature: Tensor, kp_source: Tensor, kp_driving: Tensor, mask: Tensor, jacobian: Tensor | None,
                    mask_logits: bool, align_corners: bool, padding: int) -> tuple[Tensor, Tensor, Tensor]:
    from pyface.triton_kernels import keypoint_warp as kernels

    return kernels.forward(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding)


@torch.library.custom_op("pyface::keypoint_warp_inference_triton", mutates_args=())
def _triton_inference(feature: Tensor, kp_source: Tensor, kp_driving: Tensor, mask: Tensor, jacobian: Tensor | None,
                      mask_logits: bool, align_corners: bool, padding: int,
                      return_deformation: bool) -> tuple[Tensor, Tensor]:
    from pyface.triton_kernels import keypoint_warp as kernels

    output, deformation, _ = kernels.forward(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners,
                                             padding, inference=True, return_deformation=return_deformation)
    return output, deformation


@torch.library.custom_op("pyface::keypoint_warp_backward_triton", mutates_args=())
def _triton_backward(grad_output: Tensor, grad_deformation: Tensor | None, feature: Tensor, kp_source: Tensor,
                     kp_driving: Tensor, mask: Tensor, jacobian: Tensor | None, deformation: Tensor,
                     motion_weights: Tensor, mask_logits: bool, align_corners: bool, padding: int, feature_grad: bool,
                     deterministic: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from pyface.triton_kernels import keypoint_warp as kernels

    return kernels.backward(grad_output, grad_deformation, feature, kp_source, kp_driving, mask, jacobian, deformation,
                            motion_weights, mask_logits, align_corners, padding, feature_grad, deterministic)


# --- what every backend's ops share: shapes for tracing, and the backward -------------------


def _forward_fake(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding):
    n, c = feature.shape[:2]
    spatial = tuple(mask.shape[2:])
    acc = accumulation_dtype(feature.dtype)
    deformation = feature.new_empty((n, *spatial, feature.dim() - 2), dtype=acc)
    return feature.new_empty((n, c, *spatial)), deformation, mask.new_empty(mask.shape, dtype=acc)


def _inference_fake(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding,
                    return_deformation):
    output, deformation, _ = _forward_fake(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners,
                                           padding)
    return output, deformation if return_deformation else deformation.new_empty((0,))


def _backward_fake(grad_output, grad_deformation, feature, kp_source, kp_driving, mask, jacobian, deformation,
                   motion_weights, mask_logits, align_corners, padding, feature_grad, deterministic):
    def like(t):
        return t.new_empty(t.shape)

    return (
        like(feature) if feature_grad else feature.new_empty((0,)),
        like(kp_source),
        like(kp_driving),
        like(mask),
        like(jacobian) if jacobian is not None else feature.new_empty((0,)),
    )


def _make_setup_context(backward_op):
    def setup_context(ctx, inputs, output):
        feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding = inputs
        _, deformation, motion_weights = output
        ctx.mark_non_differentiable(motion_weights)
        ctx.backward_op = backward_op
        ctx.options = (mask_logits, align_corners, padding)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(feature, kp_source, kp_driving, mask, jacobian, deformation, motion_weights)

    return setup_context


def _backward(ctx, grad_output, grad_deformation, _motion_weights):
    feature, kp_source, kp_driving, mask, jacobian, deformation, motion_weights = ctx.saved_tensors
    if grad_output is None and grad_deformation is None:
        return (None,) * 8
    if grad_output is None:
        grad_output = feature.new_zeros((feature.shape[0], feature.shape[1], *mask.shape[2:]))
    needs = ctx.needs_input_grad
    grads = ctx.backward_op(grad_output, grad_deformation, feature, kp_source, kp_driving, mask, jacobian, deformation,
                            motion_weights, *ctx.options, needs[0],
                             torch.are_deterministic_algorithms_enabled())
    grad_feature, grad_source, grad_driving, grad_mask, grad_jacobian = grads
    return (
        grad_feature if needs[0] else None,
        grad_source if needs[1] else None,
        grad_driving if needs[2] else None,
        grad_mask if needs[3] else None,
        grad_jacobian if needs[4] else None,
        None,
        None,
        None,
    )


def _decomposition(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding):
    """The forward's three outputs from the reference: output, deformation and motion weights in
    the accumulation dtype."""
    output, deformation = reference_keypoint_warp(
        feature, kp_source, kp_driving, mask, jacobian, mask_logits=mask_logits, align_corners=align_corners,
        padding_mode=_PADDING_NAMES[padding], return_deformation=True)
    acc = accumulation_dtype(feature.dtype)
    weights = torch.softmax(mask.to(acc), dim=1) if mask_logits else mask.to(acc)
    return output, deformation.to(acc), weights


def _inference_decomposition(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding,
                             return_deformation):
    output, deformation, _ = _decomposition(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners,
                                            padding)
    return output, deformation if return_deformation else deformation.new_empty((0,))


register_custom_ops(
    "keypoint_warp",
    forward_fake=_forward_fake,
    backward_fake=_backward_fake,
    backward=_backward,
    make_setup_context=_make_setup_context,
    triton_backward=_triton_backward,
    decomposition=_decomposition,
)
register_inference_ops("keypoint_warp", fake=_inference_fake, decomposition=_inference_decomposition, triton=True)
