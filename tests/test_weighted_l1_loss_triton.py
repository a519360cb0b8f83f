"""The Triton backend of weighted_l1_loss against the reference: on CUDA when there is a GPU,
else in Triton's interpreter on small grids (tests/conftest.py sets TRITON_INTERPRET)."""
import pytest
import torch
from helpers import assert_close
from test_weighted_l1_loss import grads_of, make, upcast

from pyface import _backends
from pyface.ops import weighted_l1_loss
from pyface.reference import weighted_l1_loss as reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        _backends._why_unavailable("triton", DEVICE) is not None, reason="triton cannot run here"
    ),
]


def to_device(*tensors):
    return [None if v is None else v.to(DEVICE) for v in tensors]


@pytest.mark.parametrize("weight,label_dtype,dims",
                         [("N1S", torch.uint8, 2), ("NCS", torch.int64, 1), ("11S", None, 3), ("none", torch.int32, 2)])
@pytest.mark.parametrize("reduction,normalize",
                         [("none", "elements"), ("sum", "elements"), ("mean", "elements"), ("mean", "weight")])
def test_matches_reference(weight, label_dtype, dims, reduction, normalize):
    spatial = {1: (37,), 2: (9, 13), 3: (3, 5, 7)}[dims]
    x, t, w, labels, cw = to_device(*make(spatial, n=2, c=3, weight=weight, label_dtype=label_dtype))
    got, got_grads = grads_of(weighted_l1_loss, x, t, w, labels, cw, reduction=reduction, normalize=normalize, backend="triton")
    want, want_grads = grads_of(reference, *upcast(x, t, w), labels, None if cw is None else cw.double(),
                                reduction=reduction, normalize=normalize)
    assert_close(got, want, torch.float32)
    for g, r in zip(got_grads, want_grads):
        if g is not None:
            assert_close(g, r, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(dtype):
    x, t, w, labels, cw = to_device(*make((6, 40), n=2, c=3, dtype=dtype, weight="N1S", label_dtype=torch.uint8))
    got, (gx, *_) = grads_of(weighted_l1_loss, x, t, w, labels, cw, backend="triton")
    want, (rx, *_) = grads_of(reference, *upcast(x, t, w), labels, cw.double())
    assert got.dtype == dtype
    assert_close(got, want, dtype)
    assert_close(gx, rx, dtype, 1.0 / x.numel())


def test_label_out_of_range():
    x, t, _, labels, cw = to_device(*make((4, 4), label_dtype=torch.uint8))
    labels[0, 0, 0] = 200
    with pytest.raises(ValueError, match="labels holds 200"):
        weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="triton")


def test_opcheck():
    x, t, w, labels, cw = to_device(*make((4, 5), n=2, c=2, weight="N1S", label_dtype=torch.uint8))
    torch.library.opcheck(
        torch.ops.pyface.weighted_l1_loss_forward_triton.default, (x.clone().requires_grad_(), t, w, labels, cw, 2, True, True)
    )
    torch.library.opcheck(torch.ops.pyface.weighted_l1_loss_backward_triton.default, (torch.rand_like(x), x, t, w, labels, cw))
