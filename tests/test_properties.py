"""Property-based tests (hypothesis) of every op on every backend: on drawn shapes (sizes 0 and
1 on every axis), dtypes, memory layouts and special values (NaN, +-inf, huge, subnormal), with
autocast on or off, the backend agrees with the reference run in float64 on the same inputs:
NaN and inf in the same places of every output and input gradient, the rest within the dtype's
tolerance, and the same error class where the reference refuses the input.

Values are fresh random tensors from a drawn seed (hypothesis's own favourite floats, 0 and 1,
would sit on the bilinear stencils' cell edges, where float32 and float64 legitimately differ);
hypothesis draws everything else. CI runs the "ci" profile (a fixed, small set of examples per
test); `pytest -m fuzz` runs the "fuzz" profile (many fresh examples): see conftest.py.
"""
import helpers
import pytest
import torch
from helpers import BACKENDS, device_of
from hypothesis import assume, given
from hypothesis import strategies as st

import pyface
from pyface import ops, reference

pytestmark = [pytest.mark.fuzz,
              pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")]

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Specials are placed in float64 before the cast: 1e18 (huge, yet its products stay finite in
# float32) becomes inf in the half types, 1e-40 a float32 subnormal (0 in the half types).
# The attention ops get no huge values: a huge score makes the softmax's gradient a difference
# of huge numbers, which float32 cannot resolve (ill-conditioned, not wrong).
SPECIALS = [float("nan"), float("inf"), float("-inf"), 1e18, -1e18, 1e-40]
NOT_HUGE = [v for v in SPECIALS if not 1e6 < abs(v) < float("inf")]
# The warps' feature gets no inf: a corner whose weight is exactly 0 in float32 and tiny in
# float64 (or the reverse) turns an inf sample into NaN in one and inf in the other.
FINITE_OR_NAN = [v for v in SPECIALS if abs(v) != float("inf")]
# The jacobian gets no inf or huge value (inf in the half types): the kernels form d/d kp_driving
# as -J^T (sum over positions of m g), the reference as the sum of the per-position -J^T m g, so
# with an inf in J the reference's terms of both signs sum to NaN where the kernels give +-inf
# (README, Numerics). NaN is still drawn.
NOT_INF_OR_HUGE = [v for v in SPECIALS if not abs(v) > 1e6]
LAYOUTS = ["contiguous", "transposed", "strided"]


@st.composite
def values(draw, shape, dtype, device, positive=False, specials=SPECIALS, stream=0):
    """A fresh random tensor of `shape` (normal, or uniform in [0.1, 1.1) when positive), maybe
    with special values at drawn places, in a drawn memory layout. Tensors drawn with other
    `stream`s differ even when hypothesis draws them the same seed."""
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**29 - 1)) * 4 + stream)  # seeds are 32-bit
    t = torch.rand(shape, generator=g, dtype=torch.float64) + 0.1 if positive else \
        torch.randn(shape, generator=g, dtype=torch.float64)
    if t.numel() and draw(st.integers(0, 2)) == 0:
        flat = t.view(-1)
        for _ in range(draw(st.integers(1, 2))):
            flat[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from(specials))
    return relayout(t.to(device, dtype), draw(st.sampled_from(LAYOUTS)))


def relayout(t, layout):
    """The same values with other strides: the last two dims' memory order swapped, or every
    other element of a buffer twice as wide."""
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided" and t.dim() >= 1:
        wide = t.new_empty(*t.shape[:-1], 2 * t.shape[-1])[..., ::2]
        return wide.copy_(t)
    return t


def spatial(draw, dims, sizes):
    return tuple(draw(st.sampled_from(sizes)) for _ in range(dims))


def agree(op, ref, tensors, backend, dtype, autocast, constant_if_empty=None, **kwargs):
    """The property: op on `backend` against ref in float64, or the same error class. Where the
    input named constant_if_empty is empty, the outputs are constants (a sum over nothing)."""
    try:
        want, want_grads = helpers.outputs_and_grads(ref, helpers.in_float64(tensors), **kwargs)
    except (ValueError, TypeError, RuntimeError, IndexError) as error:
        with pytest.raises(type(error)):
            helpers.outputs_and_grads(op, tensors, autocast_dtype=autocast, backend=backend, **kwargs)
        return
    got, got_grads = helpers.outputs_and_grads(op, tensors, autocast_dtype=autocast, backend=backend, **kwargs)
    if all(w.numel() == 0 for w in want) or (constant_if_empty and tensors[constant_if_empty].numel() == 0):
        # no output depends on the inputs, so every gradient is 0; the reference's may hold
        # NaN from its chain rule's 0 * NaN (an empty sum times a NaN weight or jacobian)
        want_grads = {name: torch.zeros_like(g) for name, g in want_grads.items()}
    # under autocast the half types run as float32: the outputs are float32's answer on those
    # inputs, the gradients that answer rounded back to the inputs' dtype; the Triton kernels
    # compute in float32 whatever the dtype (README, Numerics), so float64 inputs get float32's
    # accuracy there, and huge values float32's cancellations
    tolerance = grad_tolerance = dtype
    if backend == "triton" and dtype == torch.float64:
        tolerance = grad_tolerance = torch.float32
    elif autocast is not None and dtype != torch.float64:
        tolerance = torch.float32
    if backend == "triton" and dtype == torch.float64:
        assume(not any(t is not None and (t[t.isfinite()].abs() > 1e6).any() for t in tensors.values()))
    if backend == "triton":  # Triton flushes subnormals to 0 (README, Numerics)
        tiny = torch.finfo(torch.float32).tiny
        assume(not any(t is not None and t.is_floating_point() and ((t != 0) & (t.abs() < tiny)).any()
                       for t in tensors.values()))
    for i, (g, w) in enumerate(zip(got, want)):
        # cast first, so the reference overflows where the dtype does
        helpers.assert_same_specials_and_close(g, w.to(g.dtype), tolerance, f"output {i}")
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        helpers.assert_same_specials_and_close(got_grads[name], want_grads[name].to(got_grads[name].dtype),
                                               grad_tolerance, f"d/d {name}")


# autocast: off, or bfloat16 (CPU and CUDA both run it; the policy is the same for float16)
common = dict(dtype=st.sampled_from(DTYPES), autocast=st.sampled_from([None, torch.bfloat16]), data=st.data())


@pytest.mark.parametrize("backend", BACKENDS)
@given(**common)
def test_weighted_l1_loss(backend, dtype, autocast, data):
    device = device_of(backend)
    dims = data.draw(st.integers(1, 3))
    shape = (data.draw(st.sampled_from([0, 1, 3])), data.draw(st.sampled_from([0, 1, 2])),
             *spatial(data.draw, dims, [0, 1, 2, 5]))
    weight_shape = data.draw(st.sampled_from([None, "N1S", "NCS", "11S"]))
    tensors = {
        "input": data.draw(values(shape, dtype, device)),
        "target": data.draw(values(shape, dtype, device)),
        "weight": None if weight_shape is None else data.draw(values(
            {"N1S": (shape[0], 1, *shape[2:]), "NCS": shape, "11S": (1, 1, *shape[2:])}[weight_shape],
            dtype, device, positive=True)),
    }
    kwargs = {"reduction": data.draw(st.sampled_from(["none", "sum", "mean"])),
              "normalize": data.draw(st.sampled_from(["elements", "weight"]))}
    if data.draw(st.booleans()):
        classes = data.draw(st.integers(1, 4))
        high = classes + (1 if data.draw(st.integers(0, 9)) == 0 else 0)  # now and then one out of range
        g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
        kwargs["labels"] = torch.randint(0, high, (shape[0], *shape[2:]), generator=g).to(device)
        kwargs["class_weights"] = data.draw(values((classes,), dtype, device, positive=True))
    agree(ops.weighted_l1_loss, reference.weighted_l1_loss, tensors, backend, dtype, autocast,
          constant_if_empty="input", **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@given(**common)
def test_softmax_pool(backend, dtype, autocast, data):
    device = device_of(backend)
    n, c = data.draw(st.sampled_from([0, 1, 3])), data.draw(st.sampled_from([0, 1, 4]))
    cells = spatial(data.draw, data.draw(st.integers(1, 3)), [1, 2, 5])
    keep_dim = data.draw(st.booleans())
    tensors = {"scores": data.draw(values((n, 1, *cells) if keep_dim else (n, *cells), dtype, device, specials=NOT_HUGE)),
               "values": data.draw(values((n, c, *cells), dtype, device, specials=NOT_HUGE))}
    agree(ops.softmax_pool, reference.softmax_pool, tensors, backend, dtype, autocast,
          return_attention=True)


@pytest.mark.parametrize("backend", BACKENDS)
@given(**common)
def test_global_local_attention(backend, dtype, autocast, data):
    device = device_of(backend)
    n, face_dim, context_dim, hidden = (data.draw(st.sampled_from(sizes)) for sizes in
                                        ([0, 1, 3], [1, 3], [1, 5], [1, 7]))
    cells = spatial(data.draw, data.draw(st.integers(1, 3)), [1, 2, 4])
    tensors = {
        "face": data.draw(values((n, face_dim), dtype, device, specials=NOT_HUGE)),
        "context": data.draw(values((n, context_dim, *cells), dtype, device, specials=NOT_HUGE)),
        "w1": data.draw(values((hidden, face_dim + context_dim), dtype, device, specials=NOT_HUGE)),
        "b1": data.draw(values((hidden,), dtype, device, specials=NOT_HUGE)),
        "w2": data.draw(values((hidden,), dtype, device, specials=NOT_HUGE)),
        "b2": data.draw(values((1,), dtype, device, specials=NOT_HUGE)),
    }
    if data.draw(st.booleans()):
        tensors["hidden_scale"] = data.draw(values((hidden,), dtype, device, positive=True, specials=NOT_HUGE))
        tensors["hidden_shift"] = data.draw(values((hidden,), dtype, device, specials=NOT_HUGE))
    # b2's gradient is exactly 0 in pyface (README, Numerics); the reference's may be NaN
    kept = dict(tensors)
    b2 = kept.pop("b2")
    op = lambda **t: ops.global_local_attention(**t, b2=b2, return_attention=True)  # noqa: E731
    ref = lambda **t: reference.global_local_attention(**t, b2=b2.double(), return_attention=True)  # noqa: E731
    agree(op, ref, kept, backend, dtype, autocast)


@pytest.mark.parametrize("backend", BACKENDS)
@given(**common)
def test_keypoint_heatmaps(backend, dtype, autocast, data):
    device = device_of(backend)
    dims = data.draw(st.integers(2, 3))
    n, k = data.draw(st.sampled_from([0, 1, 2])), data.draw(st.sampled_from([0, 1, 3]))
    tensors = {"kp_driving": data.draw(values((n, k, dims), dtype, device)),
               "kp_source": data.draw(values((n, k, dims), dtype, device))}
    agree(ops.keypoint_heatmaps, reference.keypoint_heatmaps, tensors, backend, dtype, autocast,
          spatial_size=spatial(data.draw, dims, [1, 2, 5]), variance=data.draw(st.sampled_from([0.01, 0.1])))


def _motion(data, dtype, device, with_mask):
    dims = data.draw(st.integers(2, 3))
    n, c, k = data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([0, 1, 3])), data.draw(st.sampled_from([0, 1, 3]))
    size_in = spatial(data.draw, dims, [0, 1, 2, 5] if data.draw(st.integers(0, 9)) == 0 else [1, 2, 5])
    tensors = {"feature": data.draw(values((n, c, *size_in), dtype, device, specials=FINITE_OR_NAN)),
               "kp_source": data.draw(values((n, k, dims), dtype, device)),
               # a stream of its own: equal keypoints put identity motions' positions on the
               # bilinear kinks, where float32 and float64 round to either side
               "kp_driving": data.draw(values((n, k, dims), dtype, device, stream=1))}
    if with_mask:
        tensors["mask"] = data.draw(values((n, k + 1, *spatial(data.draw, dims, [1, 3])), dtype, device))
    if data.draw(st.booleans()):
        tensors["jacobian"] = data.draw(values((n, k, dims, dims), dtype, device, specials=NOT_INF_OR_HUGE))
    options = {"align_corners": data.draw(st.booleans()), "padding_mode": data.draw(st.sampled_from(["zeros", "border"]))}
    return tensors, options


@pytest.mark.parametrize("backend", BACKENDS)
@given(**common)
def test_keypoint_warp(backend, dtype, autocast, data):
    device = device_of(backend)
    tensors, options = _motion(data, dtype, device, with_mask=True)
    agree(ops.keypoint_warp, reference.keypoint_warp, tensors, backend, dtype, autocast,
          mask_logits=data.draw(st.booleans()), return_deformation=True, **options)


@pytest.mark.parametrize("backend", BACKENDS)
@given(**common)
def test_sparse_motion_warp(backend, dtype, autocast, data):
    device = device_of(backend)
    tensors, options = _motion(data, dtype, device, with_mask=False)
    agree(ops.sparse_motion_warp, reference.sparse_motion_warp, tensors, backend, dtype, autocast,
          **options)
