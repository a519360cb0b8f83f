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
@pytest.mark.parametrize("with_jacobian", [True, False], ids=["jacobian", "no-jacobian"])
def test_non_finite_keypoints_give_nan_where_the_reference_does(backend, dims, name, value, padding_mode,
                                                               with_jacobian):
    if name == "jacobian" and not with_jacobian:
        pytest.skip("no jacobian to poison")
    tensors = make(dims, k=3, jacobian=with_jacobian, device=device_of(backend))
    tensors[name][1, 2, 0] = value  # one motion of one sample: the other slots stay finite
    helpers.check_specials_against_reference(sparse_motion_warp, reference, tensors, backend, padding_mode=padding_mode)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_feature_without_jacobian(backend, dims, value):
    """The CPU's separable kernels read a corner with weight 0 as the stencil kernels do: a
    NaN or inf at a corner inside the input reaches the sample (0 * inf), one outside does not."""
    tensors = make(dims, k=3, jacobian=False, device=device_of(backend))
    tensors["feature"][1, 0, 1] = value  # a row of the feature
    tensors["feature"][0, 1, ..., 0] = value  # its first column
    helpers.check_specials_against_reference(sparse_motion_warp, reference, tensors, backend)


@pytest.mark.parametrize("dims,size", [(2, (13, 17)), (3, (5, 9, 11))])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_separable_kernels_agree_with_the_stencil_kernels(dims, size, align_corners, padding_mode):
    """On the CPU a call without jacobian runs the separable kernels, one with jacobians the
    per-position stencils: identity jacobians must give the same motions to rounding."""
    tensors = make(dims, size=size, k=5, c=9, spread=1.3, jacobian=True)  # some motions reach outside
    tensors["jacobian"] = torch.eye(dims).expand_as(tensors["jacobian"]).contiguous()
    options = {"align_corners": align_corners, "padding_mode": padding_mode, "backend": "cpu"}
    general, general_grads = helpers.outputs_and_grads(sparse_motion_warp, tensors, **options)
    separable, separable_grads = helpers.outputs_and_grads(sparse_motion_warp, dict(tensors, jacobian=None), **options)
    torch.testing.assert_close(separable[0], general[0], rtol=1e-5, atol=1e-5)
    for name in ("feature", "kp_source", "kp_driving"):
        torch.testing.assert_close(separable_grads[name], general_grads[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "cpu"])
def test_deterministic_mode(backend):
    tensors = make(3, k=6, device=device_of(backend))
    want = helpers.outputs_and_grads(reference, helpers.in_float64(tensors))[1]["feature"]
    with helpers.deterministic_algorithms():
        runs = [helpers.outputs_and_grads(sparse_motion_warp, tensors, backend=backend)[1]["feature"] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    helpers.assert_close_to_largest(runs[0], want, torch.float32)


# --- bad input: each raises a clear error naming the argument --------------------------------
