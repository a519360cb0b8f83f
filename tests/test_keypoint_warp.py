"""pyface.ops.keypoint_warp on every backend against the reference (the Triton backend runs
in Triton's interpreter on small grids when there is no GPU; CUDA tests skip without one)."""
import itertools
import os

import helpers
import pytest
import torch
from helpers import BACKENDS, device_of

import pyface
from pyface.ops import keypoint_warp
from pyface.reference import keypoint_warp as reference

needs_extension = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")

SIZES = {2: ((5, 6), (7, 8)), 3: ((4, 5, 6), (3, 7, 8))}  # (input, output) spatial sizes, D != H != W


def make(dims=2, n=2, c=3, k=4, sizes=None, jacobian=True, logits=True, spread=1.2, dtype=torch.float32, seed=0,
         device="cpu"):
    g = torch.Generator().manual_seed(seed)
    size_in, size_out = sizes or SIZES[dims]
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    tensors = {
        "feature": torch.randn(n, c, *size_in, generator=g, dtype=torch.float64),
        "kp_source": (rand(n, k, dims) * 2 - 1) * spread,
        "kp_driving": (rand(n, k, dims) * 2 - 1) * spread,
        "mask": torch.randn(n, k + 1, *size_out, generator=g, dtype=torch.float64) if logits else rand(n, k + 1, *size_out),
        "jacobian": torch.eye(dims, dtype=torch.float64) + 0.3 * torch.randn(n, k, dims, dims, generator=g, dtype=torch.float64)
        if jacobian else None,
    }
    return {name: None if t is None else t.to(device, dtype) for name, t in tensors.items()}


def check(tensors, backend, dtype=torch.float32, **options):
    helpers.check_against_reference(keypoint_warp, reference, tensors, backend, dtype, return_deformation=True,
                                    **options)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("jacobian,logits", [(False, False), (True, True), (True, False)])
@pytest.mark.parametrize("align_corners,padding_mode", list(itertools.product([False, True], ["zeros", "border"])))
def test_matches_reference(backend, dims, jacobian, logits, align_corners, padding_mode):
    tensors = make(dims, jacobian=jacobian, logits=logits, device=device_of(backend))
    helpers.poison_allocator((2, 3, *SIZES[dims][1]), torch.float32, device_of(backend))
    check(tensors, backend, mask_logits=logits, align_corners=align_corners, padding_mode=padding_mode)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 21])
def test_keypoint_counts(backend, k):
    check(make(3, k=k, device=device_of(backend)), backend, mask_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_keypoints_far_outside_the_grid(backend, padding_mode):
    check(make(2, spread=3.0, device=device_of(backend)), backend, mask_logits=True, padding_mode=padding_mode)


# Where each special value goes: (input, index, value); "logits" sets every logit of one position
SPECIALS = {
    "nan kp_source": ("kp_source", (0, 1, 0), float("nan")),
    "inf kp_driving": ("kp_driving", (1, 2, -1), float("inf")),
    "-inf jacobian": ("jacobian", (0, 3, 0, 1), float("-inf")),
    "nan mask": ("mask", (1, 2, 0, 1), float("nan")),
    "all logits -inf": ("mask", (0, slice(None), 1, 2), float("-inf")),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("special", list(SPECIALS))
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_non_finite_inputs_give_nan_where_the_reference_does(backend, dims, special, padding_mode):
    # they gave 0 (2-D, zeros padding), where the reference gives NaN
    tensors = make(dims, k=4, device=device_of(backend))
    name, index, value = SPECIALS[special]
    tensors[name][index] = value
    helpers.check_specials_against_reference(keypoint_warp, reference, tensors, backend, return_deformation=True,
                                             mask_logits=special != "nan mask", padding_mode=padding_mode)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels", [0, 3])
def test_inf_mask_weight_without_jacobian(backend, channels):
    # the CPU kernel formed d/d kp_driving = -J^T sg with J = I: inf * 0 gave NaN where the
    # reference has inf (found by fuzzing)
    tensors = make(3, c=channels, jacobian=False, logits=False, device=device_of(backend))
    tensors["mask"][0, 1, 0, 0, 0] = float("inf")
    helpers.check_specials_against_reference(keypoint_warp, reference, tensors, backend, return_deformation=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
def test_inf_keypoint_without_jacobian_keeps_the_other_axes(backend, dims):
    # the CPU kernel formed T_k(z) = source + I (z - driving): an inf in one axis times the
    # identity's 0s made the other axes of the deformation NaN where the reference keeps them
    tensors = make(dims, jacobian=False, device=device_of(backend))
    tensors["kp_driving"][1, 2, 1] = float("inf")
    helpers.check_specials_against_reference(keypoint_warp, reference, tensors, backend, return_deformation=True,
                                             mask_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_minus_inf_logit_weighs_exactly_zero(backend):
    # the CPU softmax's exp stopped at exp(-87): a -inf logit kept a weight of 1e-38, and its
    # keypoint's inf motion gave an inf deformation where the reference has 0 * inf = NaN
    tensors = make(2, device=device_of(backend))
    tensors["kp_source"][0, 1, 0] = float("inf")
    tensors["mask"][0, 2] = float("-inf")  # slot 2 is keypoint 1's
    helpers.check_specials_against_reference(keypoint_warp, reference, tensors, backend, return_deformation=True,
                                             mask_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
def test_positions_on_the_border_bounds_get_no_gradient(backend, dims):
    # torch's rule: a coordinate on a bound counts as clipped; the kernels counted it inside
    # (found by fuzzing). Identity motions on a 2-wide output grid with align_corners put every
    # position on a bound (and none on an inner cell edge, where float32 and float64 may round
    # to either side of the bilinear kink)
    tensors = make(dims, jacobian=False, logits=False, sizes=(SIZES[dims][0], (2,) * dims), device=device_of(backend))
    tensors["mask"].zero_()[:, 0] = 1  # all weight on the identity: deformation = z exactly
    tensors["kp_source"].zero_()  # T_k(z) = z exactly, on the bounds in float32 as in float64
    tensors["kp_driving"].zero_()
    check(tensors, backend, align_corners=True, padding_mode="border")


@pytest.mark.parametrize("backend", BACKENDS)
def test_inf_feature_in_2d_keeps_the_mask_gradient(backend):
    # Triton's 2-D backward added inf * 0 into a third axis it does not have: d/d mask was NaN
    # where the reference has -inf (found by fuzzing, float16)
    tensors = make(2, k=0, jacobian=False, logits=False, sizes=((1, 1), (1, 1)), device=device_of(backend))
    tensors["feature"][0, 0, 0, 0] = float("inf")
    helpers.check_specials_against_reference(keypoint_warp, reference, tensors, backend, return_deformation=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channels", [0, 2])
def test_inf_kp_driving_in_a_partly_filled_block(backend, channels):
    # Triton summed w g (z - kp_driving) over a whole block: past the grid's end w g = 0 and
    # z - kp_driving = -inf gave NaN in d/d jacobian where the reference has inf (found by fuzzing)
    tensors = make(2, c=channels, k=1, logits=False, device=device_of(backend))
    tensors["kp_driving"][0, 0, 0] = float("inf")
    helpers.check_specials_against_reference(keypoint_warp, reference, tensors, backend, return_deformation=True)


def _memory_gib():
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


@pytest.mark.parametrize("backend", BACKENDS)
def test_plane_past_2_31_elements(backend):
    # one 49152 x 49152 float32 plane (2.4e9 elements): the int32 stencil offsets segfaulted.
    # Only the rows the samples read are written, so most of the 9 GiB is never touched.
    if device_of(backend) == "cpu" and backend == "triton":
        pytest.skip("Triton's interpreter copies the whole plane")
    if _memory_gib() < 16:
        pytest.skip(f"needs a 9 GiB allocation; this machine has {_memory_gib():.0f} GiB")
    device, side = device_of(backend), 49152
    feature = torch.empty(1, 1, side, side, device=device)
    feature[0, 0, -1024:] = torch.randn(1024, side, generator=torch.Generator().manual_seed(0)).to(device)
    kp_source = torch.tensor([[[0.3, 0.999]]], device=device)  # the last rows, offsets past 2^31
    kp_driving = torch.zeros(1, 1, 2, device=device)
    jacobian = 0.01 * torch.eye(2, device=device).expand(1, 1, 2, 2)
    mask = torch.zeros(1, 2, 6, 7, device=device)
    mask[:, 1] = 1
    args = (feature, kp_source, kp_driving, mask, jacobian)
    got = keypoint_warp(*args, align_corners=True, backend=backend)
    want = reference(*args, align_corners=True)
    assert want.abs().max() > 0.1  # the samples did land on the written rows
    helpers.assert_close(got, want, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_larger_than_input(backend):  # a 64x64 deformation driving a 128x128 output, scaled down
    check(make(2, sizes=((4, 4), (9, 11)), device=device_of(backend)), backend, mask_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(backend, dtype):
    if dtype == torch.float64 and backend != "cpu":
        pytest.skip("float64 is a CPU dtype (for gradcheck)")
    check(make(3, dtype=dtype, device=device_of(backend)), backend, dtype=dtype, mask_logits=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    tensors = make(2, device=device_of(backend))
    tensors["feature"] = tensors["feature"].to(memory_format=torch.channels_last)
    tensors["mask"] = tensors["mask"].transpose(2, 3).contiguous().transpose(2, 3)
    tensors["kp_source"] = tensors["kp_source"].transpose(0, 1).contiguous().transpose(0, 1)
    check(tensors, backend, mask_logits=True)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "cpu"])
def test_deterministic_mode(backend):
    """torch.use_deterministic_algorithms(True) makes the GPU scatter of d/d feature fixed
    point: two runs give the same bits, and the reference's value."""
    tensors = make(3, k=6, device=device_of(backend))
    want = helpers.outputs_and_grads(reference, helpers.in_float64(tensors), mask_logits=True)[1]["feature"]
    with helpers.deterministic_algorithms():
        runs = [helpers.outputs_and_grads(keypoint_warp, tensors, backend=backend, mask_logits=True)[1]["feature"]
                for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    helpers.assert_close_to_largest(runs[0], want, torch.float32)


@needs_extension
def test_returns_output_alone_by_default():
    tensors = make(2)
    assert keypoint_warp(**tensors, mask_logits=True).shape == (2, 3, 7, 8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_of_the_deformation_alone(backend):
    tensors = make(2, device=device_of(backend))

    def deformation_only(fn):
        return lambda **kw: fn(**kw, mask_logits=True, return_deformation=True)[1]

    _, got = helpers.outputs_and_grads(deformation_only(lambda **kw: keypoint_warp(**kw, backend=backend)), tensors)
    _, want = helpers.outputs_and_grads(deformation_only(reference), helpers.in_float64(tensors))
    for name in ("kp_source", "kp_driving", "mask", "jacobian"):
        helpers.assert_close_to_largest(got[name], want[name], torch.float32)
    assert got["feature"] is None or not got["feature"].any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
def test_no_channels_still_give_the_deformation_its_gradients(backend, dims):
    # With C = 0 the backward once returned zeros early, though the deformation it also
    # returns depends on the keypoints and the mask.
    check(make(dims, c=0, device=device_of(backend)), backend, mask_logits=True)


@needs_extension
@pytest.mark.parametrize("dims", [2, 3])
def test_gradcheck(dims):
    tensors = make(dims, n=1, c=2, k=2, sizes=((3, 4), (3, 3)) if dims == 2 else ((2, 3, 4), (2, 2, 3)), dtype=torch.float64)
    names = list(tensors)
    leaves = tuple(tensors[name].requires_grad_() for name in names)

    def fn(*args):
        return keypoint_warp(**dict(zip(names, args)), mask_logits=True, padding_mode="border",
                             return_deformation=True, backend="cpu")

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("jacobian", [False, True])
def test_opcheck(backend, jacobian):
    t = make(2, jacobian=jacobian, device=device_of(backend))
    suffix = "_triton" if backend == "triton" else ""
    forward = getattr(torch.ops.pyface, f"keypoint_warp_forward{suffix}").default
    backward = getattr(torch.ops.pyface, f"keypoint_warp_backward{suffix}").default
    args = (t["feature"], t["kp_source"], t["kp_driving"], t["mask"], t["jacobian"], True, False, 0)
    torch.library.opcheck(forward, tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args))
    output, deformation, motion_weights = forward(*args)
    for grad_deformation in (None, torch.rand_like(deformation)):
        torch.library.opcheck(backward, (torch.rand_like(output), grad_deformation, *args[:5], deformation,
                                         motion_weights, True, False, 0, True, False))


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_torch_compile_fullgraph(backend):
    t = make(3, device=device_of(backend))
    compiled = torch.compile(lambda **kw: keypoint_warp(**kw, mask_logits=True, backend=backend), fullgraph=True)
    helpers.assert_close_to_largest(compiled(**t), reference(**t, mask_logits=True), torch.float32)


# --- bad input: each raises a clear error naming the argument --------------------------------


def test_mask_channels():
    t = make(2)
    with pytest.raises(ValueError, match="mask must be \\(N, K\\+1"):
        keypoint_warp(**dict(t, mask=t["mask"][:, 1:]))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("op", ["keypoint_warp", "sparse_motion_warp"])
def test_empty_feature_plane(op, dims):
    # An input plane with no cells once crashed the process (the sampler read past it); both
    # warps share the check.
    for axis in range(2, dims + 2):
        t = make(dims)
        t["feature"] = t["feature"].narrow(axis, 0, 0)
        if op == "sparse_motion_warp":
            del t["mask"]
        with pytest.raises(ValueError, match="feature's spatial sizes must be non-zero"):
            getattr(pyface.ops, op)(**t)
        if pyface._extension.loaded():
            options = (True, False, 0) if op == "keypoint_warp" else (False, 0)
            with pytest.raises(ValueError, match="feature's spatial sizes must be non-zero"):
                getattr(torch.ops.pyface, f"{op}_forward")(*t.values(), *options)


def test_keypoint_dims_differ_from_feature_dims():
    t = make(2)
    with pytest.raises(ValueError, match="kp_source must be \\(N, K, 2\\)"):
        keypoint_warp(**dict(t, kp_source=torch.zeros(2, 4, 3), kp_driving=torch.zeros(2, 4, 3)))


def test_keypoint_shape_mismatch():
    t = make(2)
    with pytest.raises(ValueError, match="kp_driving shape"):
        keypoint_warp(**dict(t, kp_driving=t["kp_driving"][:, :3]))


def test_jacobian_shape():
    t = make(2)
    with pytest.raises(ValueError, match="jacobian must be \\(N, K, d, d\\)"):
        keypoint_warp(**dict(t, jacobian=t["jacobian"][..., :1]))


def test_unknown_padding_mode():
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        keypoint_warp(**make(2), padding_mode="reflection")


def test_batch_mismatch():
    t = make(2)
    with pytest.raises(ValueError, match="kp_source must be"):
        keypoint_warp(**dict(t, feature=t["feature"][:1]))


def test_integer_feature():
    t = make(2)
    with pytest.raises(TypeError, match="feature must be float"):
        keypoint_warp(**dict(t, feature=t["feature"].long()))


def test_mixed_devices():
    t = make(2)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        keypoint_warp(**dict(t, mask=t["mask"].to("meta")))
