"""Triton kernels of the masked weighted L1 loss: the same one-pass scheme as the CUDA
kernel. Programs tile (row = (n, c), BLOCK pixels); each writes the loss map or the input
gradient and one partial sum, and the partials are added by torch in a fixed order."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pyface._dtypes import accumulation_dtype

BLOCK = 1024
MAX_GRID_Y = 65535
# kernel modes
WRITE_MAP, REDUCE, REDUCE_AND_GRAD, WEIGHT_SUM, BACKWARD = range(5)


@triton.jit
def _rows_kernel(
    x_ptr, t_ptr, w_ptr, labels_ptr, class_weights_ptr, grad_out_ptr, out_ptr, partials_ptr, inv_d_ptr,
    C, P, rows, w_stride_n, w_stride_c, w_stride_p,
    MODE: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_LABELS: tl.constexpr, INV_D_ON_DEVICE: tl.constexpr,
    ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    pid_x = tl.program_id(0)
    pid_y = tl.program_id(1)
    p = pid_x * BLOCK + tl.arange(0, BLOCK)
    in_row = p < P
    inv_d = tl.load(inv_d_ptr).to(ACC) if INV_D_ON_DEVICE else 1.0
    acc = tl.zeros([BLOCK], dtype=ACC)
    for row in range(pid_y, rows, tl.num_programs(1)):
        n = row // C
        c = row - n * C
        w = tl.full([BLOCK], 1.0, ACC)
        if HAS_LABELS:
            label = tl.load(labels_ptr + n * P + p, mask=in_row, other=0)
            w = tl.load(class_weights_ptr + label, mask=in_row, other=0.0).to(ACC)
        if HAS_WEIGHT:
            w = w * tl.load(w_ptr + n * w_stride_n + c * w_stride_c + p * w_stride_p, mask=in_row, other=0.0).to(ACC)
        if MODE == 3:  # WEIGHT_SUM
            acc += tl.where(in_row, w, 0.0)
        else:
            at = row * P + p
            d = tl.load(x_ptr + at, mask=in_row, other=0.0).to(ACC) - tl.load(t_ptr + at, mask=in_row, other=0.0).to(ACC)
            sign = tl.where(d > 0, 1.0, 0.0) - tl.where(d < 0, 1.0, 0.0)
            if MODE == 0:  # WRITE_MAP
                tl.store(out_ptr + at, (w * tl.abs(d)).to(out_ptr.dtype.element_ty), mask=in_row)
            if MODE == 1 or MODE == 2:  # REDUCE, REDUCE_AND_GRAD
                acc += tl.where(in_row, w * tl.abs(d), 0.0)
            if MODE == 2:
                tl.store(out_ptr + at, (w * inv_d * sign).to(out_ptr.dtype.element_ty), mask=in_row)
            if MODE == 4:  # BACKWARD
                g = tl.load(grad_out_ptr + at, mask=in_row, other=0.0).to(ACC)
                tl.store(out_ptr + at, (g * w * sign).to(out_ptr.dtype.element_ty), mask=in_row)
    if MODE == 1 or MODE == 2 or MODE == 3:
        tl.store(partials_ptr + pid_y * tl.num_programs(0) + pid_x, tl.sum(acc, axis=0))


def _flat_weight(weight: torch.Tensor, shape: torch.Size):
    """The weight expanded to `shape`, with (stride_n, stride_c, stride_p) where the spatial
    dims read as one axis of stride 0 (broadcast) or 1 (contiguous); other layouts are copied."""
    w = weight.expand(shape)
    spatial = [(size, stride) for size, stride in zip(w.shape[2:], w.stride()[2:]) if size != 1]
    expected, contiguous = 1, True
    for size, stride in reversed(spatial):
        contiguous = contiguous and stride == expected
        expected *= size
    if all(stride == 0 for _, stride in spatial):
        stride_p = 0
    elif contiguous:
        stride_p = 1
    else:
        w, stride_p = w.contiguous(), 1
    return w, (w.stride(0) if shape[0] > 1 else 0), (w.stride(1) if shape[1] > 1 else 0), stride_p


def _launch(mode, input, target, weight, labels, class_weights, grad_out=None, out=None, inv_d=None):
    """Runs one pass over (N, C, P); returns the per-program partial sums for reducing modes."""
    if input.numel() >= 2**31:
        raise ValueError("weighted_l1_loss: the triton backend takes fewer than 2**31 elements; use backend='cuda'")
    N, C = input.shape[0], input.shape[1]
    P = input[0, 0].numel()
    acc = accumulation_dtype(input.dtype)
    grid = (triton.cdiv(P, BLOCK), min(N * C, MAX_GRID_Y))
    partials = torch.empty(grid[0] * grid[1], device=input.device, dtype=acc)
    w, strides = weight, (0, 0, 0)
    if weight is not None:
        w, *strides = _flat_weight(weight, input.shape)
    cw = None if class_weights is None else class_weights.to(acc).contiguous()
    dummy = partials  # stands in for absent pointers; never read
    _rows_kernel[grid](
        input, target,
        dummy if w is None else w,
        dummy if labels is None else labels.contiguous(),
        dummy if cw is None else cw,
        dummy if grad_out is None else grad_out,
        dummy if out is None else out,
        partials,
        dummy if inv_d is None else inv_d,
        C, P, N * C, *strides,
        MODE=mode, HAS_WEIGHT=weight is not None, HAS_LABELS=labels is not None, INV_D_ON_DEVICE=inv_d is not None,
        ACC=tl.float64 if acc == torch.float64 else tl.float32, BLOCK=BLOCK,
    )
    return partials


def forward(input, target, weight, labels, class_weights, reduction, weight_normalize, compute_grad) -> tuple[Tensor, Tensor]:
    input, target = input.contiguous(), target.contiguous()
    empty = input.new_empty((0,))
    if reduction == 0:
        loss_map = torch.empty_like(input, memory_format=torch.contiguous_format)
        if input.numel():
            _launch(WRITE_MAP, input, target, weight, labels, class_weights, out=loss_map)
        return loss_map, empty
    if input.numel() == 0:  # empty: sum and weighted mean 0, plain mean 0/0 as torch's l1_loss
        loss = input.new_full((), float("nan") if reduction == 2 and not weight_normalize else 0.0)
        return loss, torch.empty_like(input) if compute_grad else empty  # the gradient keeps input's shape
    acc = accumulation_dtype(input.dtype)
    if reduction == 2 and weight_normalize:
        total = _launch(WEIGHT_SUM, input, target, weight, labels, class_weights).sum()
        inv_d = torch.where(total != 0, 1.0 / total, torch.zeros_like(total))  # NaN stays NaN; on the device
    else:
        inv_d = torch.tensor(1.0 / input.numel() if reduction == 2 else 1.0, device=input.device, dtype=acc)
    grad = torch.empty_like(input, memory_format=torch.contiguous_format) if compute_grad else empty
    mode = REDUCE_AND_GRAD if compute_grad else REDUCE
    partials = _launch(mode, input, target, weight, labels, class_weights, out=grad if compute_grad else None, inv_d=inv_d)
    return (partials.sum() * inv_d).to(input.dtype), grad


def backward(grad_output, input, target, weight, labels, class_weights) -> Tensor:
    input, target = input.contiguous(), target.contiguous()
    grad = torch.empty_like(input, memory_format=torch.contiguous_format)
    if input.numel():
        grad_output = grad_output.to(input.dtype).contiguous()
        _launch(BACKWARD, input, target, weight, labels, class_weights, grad_out=grad_output, out=grad)
    return grad
