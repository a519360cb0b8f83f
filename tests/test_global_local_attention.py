"""The tests only pyface.ops.global_local_attention needs; the generic ones (reference
parity, dtypes, layouts, opcheck, gradcheck, compile, bad inputs) are tests/test_ops.py's,
driven by pyface.opinfo.global_local_attention."""
import helpers
import pytest
import torch
from helpers import BACKENDS, assert_close_to_largest, device_of, in_float64, outputs_and_grads

from pyface.opinfo.global_local_attention import inputs as make
from pyface.ops import global_local_attention
from pyface.reference import global_local_attention as reference


def check_against_reference(tensors, backend, dtype):
    helpers.check_against_reference(global_local_attention, reference, tensors, backend, dtype, return_attention=True)


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


def test_returns_pooled_alone_by_default():
    t = make(context_dim=11)
    assert global_local_attention(**t).shape == (3, 11)


# --- bad input: each raises a clear error naming the argument --------------------------------
