"""The tests only pyface.ops.keypoint_warp needs (and the empty-plane check it shares with
sparse_motion_warp); the generic ones are tests/test_ops.py's, driven by pyface.opinfo.keypoint_warp."""
import os

import helpers
import pytest
import torch
from helpers import BACKENDS, device_of

import pyface
from pyface.opinfo.keypoint_warp import inputs as make
from pyface.ops import keypoint_warp
from pyface.reference import keypoint_warp as reference

needs_extension = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")


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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("channels", [16, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_many_channels_with_an_inf_outside_and_a_nan_position(backend, dims, channels, dtype):
    # From 8 channels the CPU kernels read a channels-last copy of the feature; with AVX-512
    # they sample whole groups of 16 channels in registers, transpose them there and round
    # bfloat16 there, and the rest (5 of 37) through a tile. The outputs, 117 and 105
    # positions, leave 5 and 9 past the last whole 16. An inf in element 0 of a plane must not
    # leak into the corners outside the input (offset 0, weight 0), and a NaN keypoint
    # poisons its positions.
    sizes = ((6, 7), (9, 13)) if dims == 2 else ((3, 4, 5), (3, 5, 7))
    tensors = make(dims, c=channels, sizes=sizes, spread=1.5, dtype=dtype, device=device_of(backend))
    tensors["feature"][1, channels - 1].view(-1)[0] = float("inf")
    tensors["kp_source"][0, 1, 0] = float("nan")
    helpers.check_specials_against_reference(keypoint_warp, reference, tensors, backend, dtype=dtype,
                                             return_deformation=True, mask_logits=True)


@needs_extension
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_sampled_in_registers_match_the_tile_bit_for_bit(dims, dtype):
    # 16 channels go through registers on AVX-512, 8 through the channels-last tile: the same
    # sums and the same rounding, so the first 8 channels must agree to the bit
    sizes = ((6, 7), (9, 13)) if dims == 2 else ((3, 4, 5), (3, 5, 7))
    t = make(dims, c=16, sizes=sizes, spread=1.5, dtype=dtype)
    sixteen = keypoint_warp(t["feature"], t["kp_source"], t["kp_driving"], t["mask"], t["jacobian"],
                            mask_logits=True, backend="cpu")
    eight = keypoint_warp(t["feature"][:, :8], t["kp_source"], t["kp_driving"], t["mask"], t["jacobian"],
                          mask_logits=True, backend="cpu")
    assert torch.equal(sixteen[:, :8], eight)


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


# --- bad input: each raises a clear error naming the argument --------------------------------


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


class _OpLog(torch.utils._python_dispatch.TorchDispatchMode):
    """The pyface ops a call dispatches."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "pyface":
            self.names.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("return_deformation", [False, True])
@pytest.mark.parametrize("grad_off", ["no_grad", "inference_mode", "no input requires grad"])
def test_inference_keeps_nothing_for_the_backward(backend, dims, return_deformation, grad_off):
    # the inference op gives the training forward's outputs bit for bit, without its motion weights
    tensors = make(dims, k=5, device=device_of(backend))
    options = {"mask_logits": True, "return_deformation": return_deformation, "backend": backend}
    trained = keypoint_warp(**{name: t.clone().requires_grad_() for name, t in tensors.items()}, **options)
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(grad_off, torch.enable_grad)
    with context(), _OpLog() as log:
        inferred = keypoint_warp(**tensors, **options)
    suffix = "_triton" if backend == "triton" else ""
    assert log.names == [f"keypoint_warp_inference{suffix}"]
    trained, inferred = (trained, inferred) if return_deformation else ((trained,), (inferred,))
    for got, want in zip(inferred, trained):
        assert not got.requires_grad
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=0)


@needs_extension
@pytest.mark.parametrize("channels", [4, 16])
@pytest.mark.parametrize("return_deformation", [False, True])
def test_inference_allocates_only_what_it_returns(return_deformation, channels):
    from pyface.bench.memory import peak_bytes

    tensors = make(3, n=2, c=channels, k=21, sizes=((6, 16, 16), (6, 16, 16)))
    returned = 2 * channels * 6 * 16 * 16 * 4 + (2 * 6 * 16 * 16 * 3 * 4 if return_deformation else 0)
    one_sample_channels_last = channels * 6 * 16 * 16 * 4  # the kernels' copy of a sample's feature, if any
    with torch.inference_mode():
        peak = peak_bytes(lambda: keypoint_warp(**tensors, mask_logits=True, return_deformation=return_deformation,
                                                backend="cpu"), torch.device("cpu"))
    # the training forward adds 22 motion weights per position (2 * 22 * 6 * 16 * 16 * 4 bytes)
    assert peak in (returned, returned + one_sample_channels_last)
