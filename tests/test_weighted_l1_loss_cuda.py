"""What only the CUDA backend of weighted_l1_loss needs checking (skipped without a GPU); its
reference parity, dtypes, opcheck and label checks run in tests/test_ops.py and
tests/test_weighted_l1_loss.py on every backend."""
import pytest
import torch
from test_weighted_l1_loss import make

import pyface
from pyface.ops import weighted_l1_loss

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(not pyface._extension.has_cuda_kernels(), reason="built without CUDA kernels"),
]


def test_deterministic_loss():
    x, t, _, labels, cw = (None if v is None else v.cuda() for v in make((512, 512), n=4, c=3, label_dtype=torch.uint8))
    first = weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="cuda")
    assert all(torch.equal(first, weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="cuda"))
               for _ in range(5))


def test_cpu_and_cuda_tensors_mixed():
    x, t, *_ = make()
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        weighted_l1_loss(x.cuda(), t)
