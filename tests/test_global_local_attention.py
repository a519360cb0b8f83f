"""pyface.ops.global_local_attention on every backend against the reference (the Triton
backend runs in Triton's interpreter on small grids when there is no GPU; CUDA tests skip
without one)."""
import helpers
import pytest
import torch
from helpers import BACKENDS, assert_close_to_largest, device_of, in_float64, outputs_and_grads, poison_allocator

import pyface
from pyface.ops import global_local_attention
from pyface.reference import global_local_attention as reference

SPATIAL = {1: (37,), 2: (7, 7), 3: (3, 3, 5)}


def make(spatial=(7, 7), n=3, face_dim=6, context_dim=37, hidden=40, batchnorm=True, dtype=torch.float32,
         device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)

    tensors = {
        "face": randn(n, face_dim),
        "context": randn(n, context_dim, *spatial),
        "w1": randn(hidden, face_dim + context_dim, scale=(face_dim + context_dim) ** -0.5),
        "b1": randn(hidden, scale=0.1),
        "w2": randn(hidden, scale=hidden ** -0.5 * 4),
        "b2": randn(1),
    }
    if batchnorm:
        tensors["hidden_scale"] = (torch.rand(hidden, generator=g, dtype=torch.float64) + 0.5).to(device, dtype)
        tensors["hidden_shift"] = randn(hidden, scale=0.2)
    return tensors


def check_against_reference(tensors, backend, dtype):
    helpers.check_against_reference(global_local_attention, reference, tensors, backend, dtype, return_attention=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_matches_reference(backend, dims, batchnorm):
    tensors = make(SPATIAL[dims], batchnorm=batchnorm, device=device_of(backend))
    poison_allocator(tensors["context"].shape, torch.float32, device_of(backend))
    check_against_reference(tensors, backend, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cells", [1, 9, 49, 196])
@pytest.mark.parametrize("context_dim,hidden", [(37, 40), (130, 33)])
def test_odd_sizes(backend, cells, context_dim, hidden):
    tensors = make((cells,), n=2, context_dim=context_dim, hidden=hidden, device=device_of(backend))
    check_against_reference(tensors, backend, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(backend, dtype):
    if dtype == torch.float64 and backend != "cpu":
        pytest.skip("float64 is a CPU dtype (for gradcheck)")
    check_against_reference(make((5, 9), context_dim=70, dtype=dtype, device=device_of(backend)), backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "channels_last_3d", "sliced", "transposed_w1"])
def test_non_contiguous_inputs(backend, layout):
    device = device_of(backend)
    tensors = make((3, 4, 5) if layout == "channels_last_3d" else (6, 7), context_dim=19, device=device)
    if layout == "channels_last":
        tensors["context"] = tensors["context"].to(memory_format=torch.channels_last)
    elif layout == "channels_last_3d":
        tensors["context"] = tensors["context"].to(memory_format=torch.channels_last_3d)
    elif layout == "sliced":
        tensors["context"] = torch.cat([tensors["context"]] * 2, dim=1)[:, ::2]
        tensors["face"] = torch.cat([tensors["face"]] * 3, dim=1)[:, 1::3]
    elif layout == "transposed_w1":
        tensors["w1"] = tensors["w1"].t().contiguous().t()
    check_against_reference(tensors, backend, torch.float32)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # torch.backends.mkldnn.flags sets every flag
@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_products_with_and_without_onednn(onednn, channels_last):
    """The CPU host runs its large float32 products on oneDNN unless torch's mkldnn backend is
    off (then at::mm); both give the reference's answers, and d/d context the context's layout."""
    tensors = make((6, 7), context_dim=19, hidden=24)
    if channels_last:
        tensors["context"] = tensors["context"].to(memory_format=torch.channels_last)
    with torch.backends.mkldnn.flags(enabled=onednn):
        check_against_reference(tensors, "cpu", torch.float32)
        _, grads = outputs_and_grads(global_local_attention, tensors, backend="cpu")
    assert grads["context"].stride() == tensors["context"].stride()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stable_for_huge_scores(backend):
    tensors = make((5, 5), context_dim=8, device=device_of(backend))
    tensors["w2"] = tensors["w2"] * 1e4  # scores of magnitude ~1e4
    got, got_grads = outputs_and_grads(global_local_attention, tensors, return_attention=True, backend=backend)
    want, want_grads = outputs_and_grads(reference, in_float64(tensors), return_attention=True)
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        assert_close_to_largest(g, w, torch.float32)
    for name in ("face", "context"):
        assert torch.isfinite(got_grads[name]).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,index", [("face", (1, 3)), ("context", (0, 5, 2, 1)), ("w1", (7, 40))])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_non_finite_inputs_give_nan_and_inf_where_the_reference_does(backend, name, index, value, batchnorm):
    # an inf cell gave NaN gradients where torch's are finite (relu's mask multiplied an inf
    # gradient by 0), and the CUDA and Triton relus (max) turned NaN into 0.
    # b2's gradient is exactly 0 here (softmax ignores a shift); the reference's autograd sum
    # of zeros turns NaN when anything upstream is.
    tensors = make((3, 4), batchnorm=batchnorm, device=device_of(backend))
    tensors[name][index] = value
    helpers.check_specials_against_reference(global_local_attention, reference, tensors, backend, skip_grads=("b2",),
                                             return_attention=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_after_the_score_net_has_no_effect(backend):
    tensors = make((4, 4), device=device_of(backend))
    _, grads = outputs_and_grads(global_local_attention, tensors, backend=backend)
    assert not grads["b2"].any()
    shifted = dict(tensors, b2=tensors["b2"] + 100)
    torch.testing.assert_close(global_local_attention(**shifted, backend=backend),
                               global_local_attention(**tensors, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(backend, batchnorm, channels_last):
    device = device_of(backend)
    suffix = "_triton" if backend == "triton" else ""
    forward = getattr(torch.ops.pyface, f"global_local_attention_forward{suffix}").default
    backward = getattr(torch.ops.pyface, f"global_local_attention_backward{suffix}").default
    t = make((3, 5), n=2, context_dim=7, hidden=9, batchnorm=batchnorm, device=device)
    cells = t["context"].flatten(2)
    if channels_last:
        cells = cells.transpose(1, 2).contiguous().transpose(1, 2)
    args = [t["face"], cells, t["w1"], t["b1"], t["w2"], t["b2"], t.get("hidden_scale"), t.get("hidden_shift")]
    torch.library.opcheck(forward, tuple(a if a is None else a.clone().requires_grad_() for a in args))
    pooled, attention, projection, face_term = forward(*args)
    for grad_attention in (None, torch.rand_like(attention)):
        torch.library.opcheck(backward, (torch.rand_like(pooled), grad_attention, args[0], args[1], args[2], args[4],
                                         args[6], args[7], attention, projection, face_term))


def test_gradcheck():
    t = make((2, 3), n=2, face_dim=3, context_dim=4, hidden=5, dtype=torch.float64)
    names = list(t)
    leaves = tuple(t[k].requires_grad_() for k in names)

    def fn(*tensors):
        return global_local_attention(**dict(zip(names, tensors)), return_attention=True, backend="cpu")

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_torch_compile_fullgraph(backend):
    t = make((5, 5))
    compiled = torch.compile(lambda **kw: global_local_attention(**kw, return_attention=True, backend=backend), fullgraph=True)
    got = compiled(**t)
    want = reference(**t, return_attention=True)
    for g, w in zip(got, want):
        assert_close_to_largest(g, w, torch.float32)


def test_returns_pooled_alone_by_default():
    t = make(context_dim=11)
    assert global_local_attention(**t).shape == (3, 11)


def test_default_backend_is_the_cpu_kernel():
    assert pyface._backends.resolve("global_local_attention", torch.device("cpu"), None) == "cpu"


# --- bad input: each raises a clear error naming the argument --------------------------------


def test_batch_mismatch():
    t = make()
    with pytest.raises(ValueError, match="face and context must have one batch size"):
        global_local_attention(**dict(t, face=t["face"][:2]))


def test_w1_columns():
    t = make()
    with pytest.raises(ValueError, match="w1 must be"):
        global_local_attention(**dict(t, w1=t["w1"][:, 1:]))


@pytest.mark.parametrize("name", ["b1", "w2", "hidden_scale", "hidden_shift"])
def test_hidden_length(name):
    t = make()
    with pytest.raises(ValueError, match=f"{name} must have shape"):
        global_local_attention(**dict(t, **{name: t[name][1:]}))


def test_b2_shape():
    t = make()
    with pytest.raises(ValueError, match="b2 must be a scalar"):
        global_local_attention(**dict(t, b2=torch.zeros(2)))


def test_hidden_scale_without_shift():
    t = make()
    with pytest.raises(ValueError, match="hidden_scale was given without hidden_shift"):
        global_local_attention(**dict(t, hidden_shift=None))


@pytest.mark.parametrize("name", ["face", "context", "w1"])
def test_integer_tensors(name):
    t = make()
    with pytest.raises(TypeError, match=f"{name} must be float"):
        global_local_attention(**dict(t, **{name: t[name].long()}))


def test_dtype_mismatch():
    t = make()
    with pytest.raises(TypeError, match="w1 must have face's dtype"):
        global_local_attention(**dict(t, w1=t["w1"].double()))


def test_context_dims():
    t = make()
    with pytest.raises(ValueError, match="context must be"):
        global_local_attention(**dict(t, context=t["context"].flatten(1)))


def test_mixed_devices():
    t = make()
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        global_local_attention(**dict(t, w2=t["w2"].to("meta")))
