"""pyface.ops.softmax_pool on every backend against the reference (the Triton backend runs
in Triton's interpreter on small grids when there is no GPU; CUDA tests skip without one)."""
import helpers
import pytest
import torch
from helpers import BACKENDS, assert_close_to_largest, device_of, in_float64, outputs_and_grads, poison_allocator

import pyface
from pyface.ops import softmax_pool
from pyface.reference import softmax_pool as reference

SPATIAL = {1: (37,), 2: (7, 7), 3: (3, 3, 5)}


def make(spatial=(7, 7), n=3, c=37, dtype=torch.float32, device="cpu", keep_dim=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn((n, 1, *spatial) if keep_dim else (n, *spatial), generator=g, dtype=torch.float64) * 3
    values = torch.randn((n, c, *spatial), generator=g, dtype=torch.float64)
    return {"scores": scores.to(device, dtype), "values": values.to(device, dtype)}


def check_against_reference(tensors, backend, dtype):
    helpers.check_against_reference(softmax_pool, reference, tensors, backend, dtype, return_attention=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,index", [("scores", (1, 2, 3)), ("values", (0, 4, 5, 6)), ("scores", (2, slice(None)))])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_give_nan_and_inf_where_the_reference_does(backend, name, index, value):
    tensors = make(device=device_of(backend))  # the last case: every score of a sample
    tensors[name][index] = value
    helpers.check_specials_against_reference(softmax_pool, reference, tensors, backend, return_attention=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("keep_dim", [False, True])
def test_matches_reference(backend, dims, keep_dim):
    tensors = make(SPATIAL[dims], keep_dim=keep_dim, device=device_of(backend))
    poison_allocator(tensors["values"].shape, torch.float32, device_of(backend))
    check_against_reference(tensors, backend, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cells", [1, 9, 49, 196])
@pytest.mark.parametrize("channels", [1, 37, 130])
def test_odd_sizes(backend, cells, channels):
    check_against_reference(make((cells,), n=2, c=channels, device=device_of(backend)), backend, torch.float32)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("dims", [1, 2])
def test_empty_batch(backend, dims):
    # N = 0 once raised "cannot reshape tensor of 0 elements" (a reshape to (N, -1))
    tensors = make(SPATIAL[dims], n=0, device=device_of(backend))
    (pooled, attention), grads = outputs_and_grads(softmax_pool, tensors, backend=backend, return_attention=True)
    assert pooled.shape == (0, 37) and attention.shape == (0, *SPATIAL[dims])
    assert grads["scores"].shape == tensors["scores"].shape and grads["values"].shape == tensors["values"].shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(backend, dtype):
    if dtype == torch.float64 and backend != "cpu":
        pytest.skip("float64 is a CPU dtype (for gradcheck)")
    check_against_reference(make((5, 9), c=70, dtype=dtype, device=device_of(backend)), backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "channels_last_3d", "sliced", "transposed_scores"])
def test_non_contiguous_inputs(backend, layout):
    device = device_of(backend)
    if layout == "channels_last_3d":
        tensors = make((3, 4, 5), c=19, device=device)
        tensors["values"] = tensors["values"].to(memory_format=torch.channels_last_3d)
    else:
        tensors = make((6, 7), c=19, device=device)
    if layout == "channels_last":
        tensors["values"] = tensors["values"].to(memory_format=torch.channels_last)
    elif layout == "sliced":
        tensors["values"] = torch.cat([tensors["values"]] * 2, dim=1)[:, ::2]
    elif layout == "transposed_scores":
        tensors["scores"] = tensors["scores"].transpose(1, 2).contiguous().transpose(1, 2)
    got, got_grads = outputs_and_grads(softmax_pool, tensors, return_attention=True, backend=backend)
    want, want_grads = outputs_and_grads(reference, in_float64(tensors), return_attention=True)
    for g, w in zip(got + list(got_grads.values()), want + list(want_grads.values())):
        assert_close_to_largest(g, w, torch.float32)
    assert got_grads["values"].stride() == tensors["values"].stride() or layout == "sliced"


@pytest.mark.parametrize("backend", BACKENDS)
def test_stable_for_huge_scores(backend):
    tensors = make((5, 5), c=8, device=device_of(backend))
    tensors["scores"] = torch.sign(tensors["scores"]) * 1e4 + tensors["scores"]
    got, got_grads = outputs_and_grads(softmax_pool, tensors, return_attention=True, backend=backend)
    want, want_grads = outputs_and_grads(reference, in_float64(tensors), return_attention=True)
    for g, w in zip(got + list(got_grads.values()), want + list(want_grads.values())):
        assert torch.isfinite(g).all()
        assert_close_to_largest(g, w, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_of_pooled_alone_and_of_attention_alone(backend):
    tensors = make((4, 4), c=5, device=device_of(backend))
    for pick in (0, 1):
        def one_output(**kw):
            return softmax_pool(**kw, return_attention=True, backend=backend)[pick]

        def one_reference(**kw):
            return reference(**kw, return_attention=True)[pick]

        _, got = outputs_and_grads(one_output, tensors)
        _, want = outputs_and_grads(one_reference, in_float64(tensors))
        for name in want:
            if want[name] is None:  # attention alone does not depend on the values
                assert got[name] is None or not got[name].any()
            else:
                assert_close_to_largest(got[name], want[name], torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    device = device_of(backend)
    suffix = "_triton" if backend == "triton" else ""
    forward = getattr(torch.ops.pyface, f"softmax_pool_forward{suffix}").default
    backward = getattr(torch.ops.pyface, f"softmax_pool_backward{suffix}").default
    t = make((3, 5), n=2, c=6, device=device)
    scores, values = t["scores"].flatten(1), t["values"].flatten(2)
    torch.library.opcheck(forward, (scores.requires_grad_(), values.requires_grad_()))
    attention = torch.softmax(scores.detach(), dim=1)
    for grad_attention in (None, torch.rand_like(attention)):
        torch.library.opcheck(backward, (torch.rand(2, 6, device=device), grad_attention, values.detach(), attention, True))
    torch.library.opcheck(backward, (torch.rand(2, 6, device=device), None, values.detach(), attention, False))


def test_gradcheck():
    t = make((3, 4), n=2, c=5, dtype=torch.float64)
    scores, values = t["scores"].requires_grad_(), t["values"].requires_grad_()
    fn = lambda s, v: softmax_pool(s, v, return_attention=True, backend="cpu")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (scores, values))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_torch_compile_fullgraph(backend):
    t = make((5, 5), c=9)
    compiled = torch.compile(lambda s, v: softmax_pool(s, v, return_attention=True, backend=backend), fullgraph=True)
    got = compiled(t["scores"], t["values"])
    want = reference(t["scores"], t["values"], return_attention=True)
    for g, w in zip(got, want):
        assert_close_to_largest(g, w, torch.float32)


def test_returns_pooled_alone_by_default():
    t = make()
    assert softmax_pool(t["scores"], t["values"]).shape == (3, 37)


def test_default_backend_is_the_cpu_kernel():
    assert pyface._backends.resolve("softmax_pool", torch.device("cpu"), None) == "cpu"


# --- bad input: each raises a clear error naming the argument --------------------------------


def test_spatial_mismatch():
    t = make((4, 5))
    with pytest.raises(ValueError, match="scores must be"):
        softmax_pool(t["scores"][:, :, :4], t["values"])


def test_batch_mismatch():
    t = make((4, 5))
    with pytest.raises(ValueError, match="scores must be"):
        softmax_pool(t["scores"][:2], t["values"])


def test_integer_scores():
    t = make()
    with pytest.raises(TypeError, match="scores must be float"):
        softmax_pool(t["scores"].long(), t["values"])


def test_integer_values():
    t = make()
    with pytest.raises(TypeError, match="values must be float"):
        softmax_pool(t["scores"], t["values"].int())


def test_dtype_mismatch():
    t = make()
    with pytest.raises(TypeError, match="values must have scores' dtype"):
        softmax_pool(t["scores"], t["values"].double())


def test_values_dims():
    t = make()
    with pytest.raises(ValueError, match="values must be"):
        softmax_pool(t["scores"], t["values"].flatten(1))


def test_mixed_devices():
    t = make()
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        softmax_pool(t["scores"], t["values"].to("meta"))
