"""What the op tests share: tolerances, fresh random inputs, and output poisoning."""
import contextlib

import torch

TOLERANCES = {  # (rtol, atol) against a float64 reference
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-2, 2e-3),  # atol covers a subnormal step (6e-8) of mean gradients
    torch.bfloat16: (2e-2, 1e-2),
}


def assert_close(got, want, dtype, scale=1.0):
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol * scale)


def poison_allocator(shape, dtype, device):
    """Leaves NaN in freshly freed memory of this size, so an output element a kernel
    forgets to write shows up as NaN (the allocator usually hands the block back)."""
    block = torch.full(shape, float("nan"), dtype=dtype, device=device)
    del block


def assert_close_to_largest(got, want, dtype):
    """assert_close with atol relative to the largest reference value (times 4): right for
    sums of hundreds of terms (GEMMs, pooling), whose rounding error grows with the
    magnitude of the whole, not of each element."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert_close(got, want, dtype, scale=4 * max(want.abs().max().item(), 1.0) if want.numel() else 1.0)


# --- one test body for every backend -------------------------------------------------------


def _backend_params():
    import pytest

    from pyface import _backends, _extension

    triton_device = "cuda" if torch.cuda.is_available() else "cpu"
    return [
        pytest.param("cpu", marks=pytest.mark.skipif(not _extension.loaded(), reason="compiled extension not built")),
        pytest.param("triton", marks=[
            pytest.mark.triton,
            pytest.mark.skipif(_backends._why_unavailable("triton", triton_device) is not None, reason="triton cannot run here"),
        ]),
        pytest.param("cuda", marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
            pytest.mark.skipif(not _extension.has_cuda_kernels(), reason="built without CUDA kernels"),
        ]),
    ]


BACKENDS = _backend_params()


def device_of(backend):
    """Where a backend's tests run: Triton on the GPU when there is one, else interpreted on CPU."""
    return "cuda" if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()) else "cpu"


def outputs_and_grads(fn, tensors, autocast_dtype=None, **kwargs):
    """Runs fn(**tensors, **kwargs) with every float tensor a fresh leaf (the forward under
    torch.autocast in autocast_dtype when given), then backward, outside autocast as torch
    recommends, from a fixed random weighting of every output. -> (outputs, {name: grad})."""
    leaves = {
        name: None if t is None else t.detach().clone().requires_grad_(t.is_floating_point())
        for name, t in tensors.items()
    }
    device_type = next(t.device.type for t in tensors.values() if t is not None)
    with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = fn(**leaves, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    generator = torch.Generator().manual_seed(1)
    weighting = [torch.rand(o.shape, generator=generator, dtype=torch.float64) + 0.5 for o in outs]
    sum((o.double() * w.to(o.device)).sum() for o, w in zip(outs, weighting)).backward()
    grads = {name: leaf.grad for name, leaf in leaves.items() if leaf is not None and leaf.requires_grad}
    return [o.detach() for o in outs], grads


def in_float64(tensors):
    return {k: None if t is None else (t.double() if t.is_floating_point() else t) for k, t in tensors.items()}


def check_against_reference(op, reference, tensors, backend, dtype, **kwargs):
    """op on `backend` against the reference in float64: every output (dtype kept) and the
    gradient of every float input."""
    got, got_grads = outputs_and_grads(op, tensors, backend=backend, **kwargs)
    want, want_grads = outputs_and_grads(reference, in_float64(tensors), **kwargs)
    assert [o.dtype for o in got] == [dtype] * len(want)
    for g, w in zip(got, want):
        assert_close_to_largest(g, w, dtype)
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        assert got_grads[name].dtype == dtype
        assert_close_to_largest(got_grads[name], want_grads[name], dtype)


def assert_same_specials_and_close(got, want, dtype, what="output"):
    """NaN and +-inf exactly where the reference has them; the finite rest as
    assert_close_to_largest."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    assert torch.equal(got.isnan(), want.isnan()), \
        f"{what}: NaN at {got.isnan().sum()} places, the reference at {want.isnan().sum()}"
    assert torch.equal(got.isposinf(), want.isposinf()) and torch.equal(got.isneginf(), want.isneginf()), \
        f"{what}: inf at {got.isinf().sum()} places, the reference at {want.isinf().sum()}"
    finite = want.isfinite()
    assert_close_to_largest(got[finite], want[finite], dtype)


def check_specials_against_reference(op, reference, tensors, backend, skip_grads=(), dtype=torch.float32, **kwargs):
    """check_against_reference for inputs holding NaN or inf: outputs and gradients (but those
    named in skip_grads) must have the reference's NaN and inf in the same places (tensors of
    `dtype` against float64)."""
    got, got_grads = outputs_and_grads(op, tensors, backend=backend, **kwargs)
    want, want_grads = outputs_and_grads(reference, in_float64(tensors), **kwargs)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same_specials_and_close(g, w, dtype, f"output {i}")
    for name in want_grads.keys() - set(skip_grads):
        assert_same_specials_and_close(got_grads[name], want_grads[name], dtype, f"d/d {name}")


@contextlib.contextmanager
def deterministic_algorithms():
    """torch.use_deterministic_algorithms(True) for the block, restored after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def loss_before_and_after(loss, optimizer, steps):
    """The learning tests' measure: loss() before and after `steps` optimiser steps on it, both
    measured without gradient."""
    with torch.no_grad():
        before = loss().item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        return before, loss().item()
