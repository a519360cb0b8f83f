"""The tests only pyface.ops.softmax_pool needs; the generic ones are tests/test_ops.py's,
driven by pyface.opinfo.softmax_pool."""
import helpers
import pytest
import torch
from helpers import BACKENDS, assert_close_to_largest, device_of, in_float64, outputs_and_grads

from pyface.opinfo.softmax_pool import SPATIAL
from pyface.opinfo.softmax_pool import inputs as make
from pyface.ops import softmax_pool
from pyface.reference import softmax_pool as reference


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,index", [("scores", (1, 2, 3)), ("values", (0, 4, 5, 6)), ("scores", (2, slice(None)))])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_give_nan_and_inf_where_the_reference_does(backend, name, index, value):
    tensors = make(device=device_of(backend))  # the last case: every score of a sample
    tensors[name][index] = value
    helpers.check_specials_against_reference(softmax_pool, reference, tensors, backend, return_attention=True)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("dims", [1, 2])
def test_empty_batch(backend, dims):
    # N = 0 once raised "cannot reshape tensor of 0 elements" (a reshape to (N, -1))
    tensors = make(SPATIAL[dims], n=0, device=device_of(backend))
    (pooled, attention), grads = outputs_and_grads(softmax_pool, tensors, backend=backend, return_attention=True)
    assert pooled.shape == (0, 37) and attention.shape == (0, *SPATIAL[dims])
    assert grads["scores"].shape == tensors["scores"].shape and grads["values"].shape == tensors["values"].shape


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
@pytest.mark.parametrize("cells", [9, 49, 196])
@pytest.mark.parametrize("channels_last", [False, True])
def test_score_gradient_keeps_its_digits_under_a_large_value_per_channel(backend, cells, channels_last):
    # every position of a channel near one large value: the score gradient is the small
    # difference between sums over the channels that each carry that value (130 channels:
    # more than one block of the CPU kernels' 64). Before the kernels shifted each channel by
    # its first value, the CPU and Triton kernels were 0.2-1% off here.
    tensors = make((cells,), n=2, c=130, device=device_of(backend))
    offset = 1000 * torch.rand(2, 130, 1, generator=torch.Generator().manual_seed(1)).to(tensors["values"].device)
    values = tensors["values"] + offset
    tensors["values"] = values.transpose(1, 2).contiguous().transpose(1, 2) if channels_last else values
    _, got = outputs_and_grads(softmax_pool, tensors, backend=backend)
    _, want = outputs_and_grads(reference, in_float64(tensors))
    helpers.assert_close(got["scores"], want["scores"], torch.float32, scale=want["scores"].abs().max().item())


def test_returns_pooled_alone_by_default():
    t = make()
    assert softmax_pool(t["scores"], t["values"]).shape == (3, 37)


# --- bad input: each raises a clear error naming the argument --------------------------------
