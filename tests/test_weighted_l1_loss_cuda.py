"""The CUDA backend of weighted_l1_loss against the reference (skipped without a GPU)."""
import pytest
import torch
from helpers import assert_close, poison_allocator
from test_weighted_l1_loss import grads_of, make, upcast

import pyface
from pyface.ops import weighted_l1_loss
from pyface.reference import weighted_l1_loss as reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(not pyface._extension.has_cuda_kernels(), reason="built without CUDA kernels"),
]


def cuda(*tensors):
    return [None if v is None else v.cuda() for v in tensors]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("weight,label_dtype,dims",
                         [("N1S", torch.uint8, 2), ("NCS", torch.int64, 1), ("11S", None, 3), ("none", torch.int32, 2)])
@pytest.mark.parametrize("reduction,normalize",
                         [("none", "elements"), ("sum", "elements"), ("mean", "elements"), ("mean", "weight")])
def test_matches_reference(dtype, weight, label_dtype, dims, reduction, normalize):
    spatial = {1: (3001,), 2: (45, 101), 3: (5, 9, 31)}[dims]
    x, t, w, labels, cw = cuda(*make(spatial, n=3, c=3, dtype=dtype, weight=weight, label_dtype=label_dtype))
    poison_allocator(x.shape, dtype, "cuda")
    got, (gx, gt, *_) = grads_of(weighted_l1_loss, x, t, w, labels, cw, reduction=reduction, normalize=normalize, backend="cuda")
    want, (rx, rt, *_) = grads_of(reference, *upcast(x, t, w), labels, None if cw is None else cw.double(),
                                  reduction=reduction, normalize=normalize)
    scale = 1.0 if reduction != "mean" else 1.0 / x.numel()
    assert_close(got, want, dtype)
    assert_close(gx, rx, dtype, scale)
    assert_close(gt, rt, dtype, scale)


def test_deterministic_loss():
    x, t, _, labels, cw = cuda(*make((512, 512), n=4, c=3, label_dtype=torch.uint8))
    first = weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="cuda")
    assert all(torch.equal(first, weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="cuda")) for _ in range(5))


def test_label_out_of_range():
    x, t, _, labels, cw = cuda(*make((4, 4), label_dtype=torch.int32))
    labels[0, 0, 0] = 6
    with pytest.raises(ValueError, match="labels holds 6"):
        weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="cuda")


def test_mixed_devices():
    x, t, *_ = make()
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        weighted_l1_loss(x.cuda(), t)


def test_opcheck():
    x, t, w, labels, cw = cuda(*make((5, 6), weight="N1S", label_dtype=torch.uint8))
    torch.library.opcheck(torch.ops.pyface.weighted_l1_loss_forward.default,
                          (x.clone().requires_grad_(), t, w, labels, cw, 2, True, True))
    torch.library.opcheck(torch.ops.pyface.weighted_l1_loss_backward.default, (torch.rand_like(x), x, t, w, labels, cw))
