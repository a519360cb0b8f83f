"""The generic checks of every op, driven by its description in pyface.opinfo: reference parity
on fresh random inputs (float32, then float16, bfloat16 and float64), non-contiguous layouts,
opcheck of the custom ops, float64 gradcheck, torch.compile(fullgraph=True), and every bad
input's error. Each op's own file holds the tests only that op needs. The Triton backend runs
in Triton's interpreter on the CPU when there is no GPU; the CUDA tests skip without one."""
import pytest
import torch
from helpers import (
    BACKENDS,
    assert_close_to_largest,
    check_against_reference,
    device_of,
    in_float64,
    outputs_and_grads,
    poison_allocator,
)

import pyface
from pyface.opinfo import OPS


def _params(field: str, backends=BACKENDS):
    """(op, label, backend) for every entry of each description's `field`, on every backend."""
    params = []
    for info in OPS.values():
        for label in getattr(info, field):
            for backend in backends:
                values, marks = (backend.values, backend.marks) if hasattr(backend, "values") else ((backend,), ())
                params.append(pytest.param(info.name, label, *values, marks=marks,
                                           id="-".join(filter(None, (info.name, label, *values)))))
    return params


def _poison_outputs(info, sample, device):
    """NaN in the freed memory the op's largest output will likely be given
    (helpers.poison_allocator), its shape read off the reference's outputs."""
    with torch.no_grad():
        outputs = info.reference(**sample.tensors, **sample.kwargs)
    largest = max(outputs if isinstance(outputs, tuple) else (outputs,), key=lambda t: t.numel())
    poison_allocator(largest.shape, torch.float32, device)


@pytest.mark.parametrize("op,label,backend", _params("samples"))
def test_matches_reference(op, label, backend):
    info, device = OPS[op], device_of(backend)
    sample = info.samples[label](device)
    _poison_outputs(info, sample, device)
    check_against_reference(info.op, info.reference, sample.tensors, backend, torch.float32, **sample.kwargs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("op,label,backend", _params("typed"))
def test_dtypes(op, label, backend, dtype):
    info = OPS[op]
    if dtype == torch.float64 and backend not in info.float64_backends:
        pytest.skip(f"float64 runs on {', '.join(info.float64_backends)} here (it is there for gradcheck)")
    sample = info.typed[label](device_of(backend), dtype)
    check_against_reference(info.op, info.reference, sample.tensors, backend, dtype, **sample.kwargs)


@pytest.mark.parametrize("op,label,backend", _params("layouts"))
def test_non_contiguous_inputs(op, label, backend):
    info = OPS[op]
    sample = info.layouts[label](device_of(backend))
    assert any(t is not None and not t.is_contiguous() for t in sample.tensors.values())
    got, got_grads = outputs_and_grads(info.op, sample.tensors, backend=backend, **sample.kwargs)
    want, want_grads = outputs_and_grads(info.reference, in_float64(sample.tensors), **sample.kwargs)
    for g, w in zip(got, want):
        assert_close_to_largest(g, w, torch.float32)
    assert got_grads.keys() == want_grads.keys()
    for name, grad in got_grads.items():
        assert_close_to_largest(grad, want_grads[name], torch.float32)
    for name in sample.grad_layout:
        assert got_grads[name].stride() == sample.tensors[name].stride(), name


@pytest.mark.parametrize("op,label,backend", _params("opcheck"))
def test_opcheck(op, label, backend):
    for custom_op, args in OPS[op].opcheck[label](device_of(backend), "_triton" if backend == "triton" else ""):
        torch.library.opcheck(custom_op, args)


@pytest.mark.parametrize("op,label", [pytest.param(info.name, label, id="-".join(filter(None, (info.name, label))))
                                      for info in OPS.values() for label in info.gradcheck])
def test_gradcheck(op, label):
    info = OPS[op]
    sample = info.gradcheck[label]()
    names = [name for name, t in sample.tensors.items() if t is not None and t.is_floating_point()]
    rest = {name: t for name, t in sample.tensors.items() if name not in names}
    assert names and all(sample.tensors[name].dtype == torch.float64 for name in names)

    def fn(*leaves):
        return info.op(**dict(zip(names, leaves)), **rest, **sample.kwargs, backend="cpu")

    assert torch.autograd.gradcheck(fn, tuple(sample.tensors[name].detach().requires_grad_() for name in names))


@pytest.mark.parametrize("op,label,backend", _params("compiled", [*BACKENDS, "reference"]))
def test_torch_compile_fullgraph(op, label, backend):
    info = OPS[op]
    sample = info.compiled[label](device_of(backend))
    torch.compiler.reset()  # one lambda serves every op: without a reset its recompilations hit dynamo's limit
    compiled = torch.compile(lambda **tensors: info.op(**tensors, **sample.kwargs, backend=backend), fullgraph=True)
    if info.compile_gradients:
        got, got_grads = outputs_and_grads(compiled, sample.tensors)
        want, want_grads = outputs_and_grads(info.reference, sample.tensors, **sample.kwargs)
        assert got_grads.keys() == want_grads.keys()
        for name in want_grads:
            assert_close_to_largest(got_grads[name], want_grads[name], torch.float32)
    else:
        got, want = compiled(**sample.tensors), info.reference(**sample.tensors, **sample.kwargs)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        assert_close_to_largest(g, w, torch.float32)


@pytest.mark.parametrize("op", list(OPS))
def test_default_backend_is_the_cpu_kernel(op):
    if not pyface._extension.loaded():
        pytest.skip("compiled extension not built")
    assert pyface._backends.resolve(op, torch.device("cpu"), None) == "cpu"


@pytest.mark.parametrize("op,bad", [pytest.param(info.name, bad, id=f"{info.name}-{bad.label.replace(' ', '-')}")
                                    for info in OPS.values() for bad in info.bad_inputs])
def test_bad_input_raises_a_clear_error(op, bad):
    info = OPS[op]
    with pytest.raises(bad.error, match=bad.match):
        info.op(**bad.change(info.valid()))


@pytest.mark.parametrize("op", list(OPS))
def test_unknown_backend(op):
    info = OPS[op]
    with pytest.raises(ValueError, match="backend must be one of"):
        info.op(**info.valid(), backend="tpu")


@pytest.mark.parametrize("op", list(OPS))
def test_backend_not_valid_for_the_device(op):
    info = OPS[op]
    with pytest.raises(RuntimeError, match="backend 'cuda' runs on CUDA tensors"):
        info.op(**info.valid(), backend="cuda")
