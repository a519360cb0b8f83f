"""The tests only pyface.ops.sparse_motion_warp needs; the generic ones are tests/test_ops.py's,
driven by pyface.opinfo.sparse_motion_warp."""

import helpers
import pytest
import torch
from helpers import BACKENDS, device_of

from pyface.opinfo.sparse_motion_warp import inputs as make
from pyface.ops import sparse_motion_warp
from pyface.reference import sparse_motion_warp as reference


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name,value", [("kp_source", float("nan")), ("kp_driving", float("-inf")),
                                        ("jacobian", float("inf"))])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_non_finite_keypoints_give_nan_where_the_reference_does(backend, dims, name, value, padding_mode):
    tensors = make(dims, k=3, device=device_of(backend))
    tensors[name][1, 2, 0] = value  # one motion of one sample: the other slots stay finite
    helpers.check_specials_against_reference(sparse_motion_warp, reference, tensors, backend, padding_mode=padding_mode)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "cpu"])
def test_deterministic_mode(backend):
    tensors = make(3, k=6, device=device_of(backend))
    want = helpers.outputs_and_grads(reference, helpers.in_float64(tensors))[1]["feature"]
    with helpers.deterministic_algorithms():
        runs = [helpers.outputs_and_grads(sparse_motion_warp, tensors, backend=backend)[1]["feature"] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    helpers.assert_close_to_largest(runs[0], want, torch.float32)


# --- bad input: each raises a clear error naming the argument --------------------------------
