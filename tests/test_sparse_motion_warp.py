"""pyface.ops.sparse_motion_warp on every backend against the reference (the Triton backend
runs in Triton's interpreter on small grids when there is no GPU; CUDA tests skip without one)."""
import itertools

import helpers
import pytest
import torch
from helpers import BACKENDS, device_of
from test_keypoint_warp import make as make_warp

import pyface
from pyface.ops import sparse_motion_warp
from pyface.reference import sparse_motion_warp as reference

needs_extension = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")

SIZES = {2: (5, 7), 3: (3, 4, 6)}  # D != H != W


def make(dims=2, size=None, **options):
    tensors = make_warp(dims, sizes=(size or SIZES[dims], (1,) * dims), **options)
    del tensors["mask"]
    return tensors


def check(tensors, backend, dtype=torch.float32, **options):
    helpers.check_against_reference(sparse_motion_warp, reference, tensors, backend, dtype, **options)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("jacobian", [False, True])
@pytest.mark.parametrize("align_corners,padding_mode", list(itertools.product([False, True], ["zeros", "border"])))
def test_matches_reference(backend, dims, jacobian, align_corners, padding_mode):
    tensors = make(dims, jacobian=jacobian, device=device_of(backend))
    helpers.poison_allocator((2, 5, 3, *SIZES[dims]), torch.float32, device_of(backend))
    check(tensors, backend, align_corners=align_corners, padding_mode=padding_mode)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 21])
def test_keypoint_counts(backend, k):
    check(make(3, k=k, device=device_of(backend)), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name,value", [("kp_source", float("nan")), ("kp_driving", float("-inf")),
                                        ("jacobian", float("inf"))])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_non_finite_keypoints_give_nan_where_the_reference_does(backend, dims, name, value, padding_mode):
    tensors = make(dims, k=3, device=device_of(backend))
    tensors[name][1, 2, 0] = value  # one motion of one sample: the other slots stay finite
    helpers.check_specials_against_reference(sparse_motion_warp, reference, tensors, backend, padding_mode=padding_mode)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
def test_positions_on_the_border_bounds_get_no_gradient(backend, dims):
    # torch's rule: a coordinate on a bound counts as clipped (found by fuzzing, bfloat16 Triton).
    # Identity motions on a 2-wide feature with align_corners put every position on a bound
    tensors = make(dims, size=(2,) * dims, jacobian=False, device=device_of(backend))
    tensors["kp_source"].zero_()  # T_k(z) = z exactly, on the bounds in float32 as in float64
    tensors["kp_driving"].zero_()
    check(tensors, backend, align_corners=True, padding_mode="border")


@pytest.mark.parametrize("backend", BACKENDS)
def test_keypoints_far_outside_the_grid(backend):
    check(make(2, spread=3.0, device=device_of(backend)), backend, padding_mode="border")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(backend, dtype):
    if dtype == torch.float64 and backend != "cpu":
        pytest.skip("float64 is a CPU dtype (for gradcheck)")
    check(make(3, dtype=dtype, device=device_of(backend)), backend, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    tensors = make(2, device=device_of(backend))
    tensors["feature"] = tensors["feature"].to(memory_format=torch.channels_last)
    tensors["jacobian"] = tensors["jacobian"].transpose(2, 3).contiguous().transpose(2, 3)
    check(tensors, backend)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "cpu"])
def test_deterministic_mode(backend):
    tensors = make(3, k=6, device=device_of(backend))
    want = helpers.outputs_and_grads(reference, helpers.in_float64(tensors))[1]["feature"]
    with helpers.deterministic_algorithms():
        runs = [helpers.outputs_and_grads(sparse_motion_warp, tensors, backend=backend)[1]["feature"] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    helpers.assert_close_to_largest(runs[0], want, torch.float32)


@needs_extension
@pytest.mark.parametrize("dims", [2, 3])
def test_gradcheck(dims):
    tensors = make(dims, n=1, c=2, k=2, size=(3, 4) if dims == 2 else (2, 3, 4), dtype=torch.float64)
    names = list(tensors)
    leaves = tuple(tensors[name].requires_grad_() for name in names)

    def fn(*args):
        return sparse_motion_warp(**dict(zip(names, args)), padding_mode="border", backend="cpu")

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("jacobian", [False, True])
def test_opcheck(backend, jacobian):
    t = make(2, jacobian=jacobian, device=device_of(backend))
    suffix = "_triton" if backend == "triton" else ""
    forward = getattr(torch.ops.pyface, f"sparse_motion_warp_forward{suffix}").default
    backward = getattr(torch.ops.pyface, f"sparse_motion_warp_backward{suffix}").default
    args = (t["feature"], t["kp_source"], t["kp_driving"], t["jacobian"], False, 0)
    torch.library.opcheck(forward, tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args))
    output = forward(*args)
    torch.library.opcheck(backward, (torch.rand_like(output), *args[:4], False, 0, True, False))


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_torch_compile_fullgraph(backend):
    t = make(3, device=device_of(backend))
    compiled = torch.compile(lambda **kw: sparse_motion_warp(**kw, backend=backend), fullgraph=True)
    helpers.assert_close_to_largest(compiled(**t), reference(**t), torch.float32)


# --- bad input: each raises a clear error naming the argument --------------------------------


def test_keypoint_dims_differ_from_feature_dims():
    t = make(3)
    with pytest.raises(ValueError, match="kp_source must be \\(N, K, 3\\)"):
        sparse_motion_warp(**dict(t, kp_source=torch.zeros(2, 4, 2), kp_driving=torch.zeros(2, 4, 2), jacobian=None))


def test_keypoint_shape_mismatch():
    t = make(2)
    with pytest.raises(ValueError, match="kp_driving shape"):
        sparse_motion_warp(**dict(t, kp_driving=t["kp_driving"][:, :3]))


def test_jacobian_shape():
    t = make(2)
    with pytest.raises(ValueError, match="jacobian must be \\(N, K, d, d\\)"):
        sparse_motion_warp(**dict(t, jacobian=t["jacobian"][:, :2]))


def test_unknown_padding_mode():
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        sparse_motion_warp(**make(2), padding_mode="reflection")


def test_batch_mismatch():
    t = make(2)
    with pytest.raises(ValueError, match="kp_source must be"):
        sparse_motion_warp(**dict(t, feature=t["feature"][:1]))


def test_feature_must_be_2d_or_3d():
    t = make(2)
    with pytest.raises(ValueError, match="feature must be \\(N, C, H, W\\) or"):
        sparse_motion_warp(**dict(t, feature=t["feature"][0]))


def test_integer_keypoints():
    t = make(2)
    with pytest.raises(TypeError, match="kp_source must be float"):
        sparse_motion_warp(**dict(t, kp_source=t["kp_source"].long()))


def test_mixed_devices():
    t = make(2)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        sparse_motion_warp(**dict(t, kp_driving=t["kp_driving"].to("meta")))
