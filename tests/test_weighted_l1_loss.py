"""The tests only pyface.ops.weighted_l1_loss needs; the generic ones (reference parity,
dtypes, layouts, opcheck, gradcheck, compile, bad inputs) are tests/test_ops.py's, driven by
pyface.opinfo.weighted_l1_loss."""
import os
import subprocess
import sys

import pytest
import torch
from helpers import BACKENDS, assert_close, device_of, poison_allocator

import pyface
from pyface.opinfo.weighted_l1_loss import inputs
from pyface.ops import weighted_l1_loss
from pyface.reference import weighted_l1_loss as reference

pytestmark = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")


def make(spatial=(9, 13), **options):
    """pyface.opinfo.weighted_l1_loss's inputs as (input, target, weight, labels, class_weights)."""
    return tuple(inputs(spatial, **options).values())


def grads_of(fn, x, t, w, labels, cw, **kw):
    leaves = [v.detach().clone().requires_grad_() if v is not None else None for v in (x, t, w, cw)]
    x_, t_, w_, cw_ = leaves
    out = fn(x_, t_, w_, labels=labels, class_weights=cw_, **kw)
    seed = torch.Generator().manual_seed(1)
    upstream = torch.rand(out.shape, generator=seed, dtype=torch.float64).to(out.device, out.dtype) + 0.5
    (out * upstream).sum().backward()
    return out.detach(), [v.grad if v is not None else None for v in leaves]


def test_ties_have_zero_gradient():
    x, t, w, labels, cw = make((8, 8), label_dtype=torch.uint8)
    t[:, :, ::2] = x[:, :, ::2]
    x.requires_grad_()
    weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="cpu").backward()
    assert (x.grad[:, :, ::2] == 0).all()
    assert (x.grad[:, :, 1::2] != 0).any()


def test_all_zero_weight_gives_zero_not_nan():
    x, t, _, _, _ = make((5, 5))
    w = torch.zeros(3, 1, 5, 5)
    x.requires_grad_()
    loss = weighted_l1_loss(x, t, w, normalize="weight", backend="cpu")
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(x.grad) == 0


def test_outputs_fully_written():
    x, t, _, labels, cw = make((33, 65), n=4, c=3, label_dtype=torch.uint8)
    for reduction in ("none", "mean"):
        poison_allocator(x.shape, x.dtype, x.device)
        xr = x.clone().requires_grad_()
        out = weighted_l1_loss(xr, t, labels=labels, class_weights=cw, reduction=reduction, backend="cpu")
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(xr.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_fused_gradient_streamed_out(dtype):
    """A fused input gradient of 4 MB or more is staged and written with non-temporal stores
    (csrc/stream_store.h); an odd row length puts most rows' starts off the 16-byte grid."""
    x, t, w, labels, cw = make((601, 877), n=2, c=3, dtype=dtype, weight="N1S", label_dtype=torch.uint8)
    assert x.numel() * x.element_size() >= 4 << 20
    poison_allocator(x.shape, dtype, x.device)
    xr = x.clone().requires_grad_()
    weighted_l1_loss(xr, t, w, labels=labels, class_weights=cw, backend="cpu").backward()
    xe = x.double().requires_grad_()
    reference(xe, t.double(), w.double(), labels=labels, class_weights=cw.double()).backward()
    assert_close(xr.grad, xe.grad, dtype, scale=xe.grad.abs().max().item())  # the mean's grads are ~1e-7


@pytest.mark.parametrize("weight,label_dtype", [("NCS", None), ("N1S", torch.uint8), ("N1S", None)])
@pytest.mark.parametrize("reduction,normalize", [("none", "elements"), ("sum", "elements"), ("mean", "weight")])
def test_long_tiles(weight, label_dtype, reduction, normalize):
    """64 samples of 4545 pixels make 64 tiles of a whole sample each, summed in segments of
    1024 pixels and a partial one (csrc/weighted_l1_loss: tile_len); the small cases of
    test_ops never run a tile longer than one segment."""
    x, t, w, labels, cw = make((45, 101), n=64, c=3, weight=weight, label_dtype=label_dtype)
    kw = dict(reduction=reduction, normalize=normalize)
    got, got_grads = grads_of(weighted_l1_loss, x, t, w, labels, cw, backend="cpu", **kw)
    want, want_grads = grads_of(reference, *(v.double() if v is not None and v.is_floating_point() else v
                                             for v in (x, t, w, labels, cw)), **kw)
    # the kernels' outputs: the loss (or map) and the input gradient (the weights' gradients
    # are PyTorch's ops over them)
    for g, r in ((got, want), (got_grads[0], want_grads[0])):
        assert_close(g, r, torch.float32, scale=r.abs().max().item())


def test_gradient_scaled_by_upstream():
    x, t, w, labels, cw = make((7, 9), weight="N1S", label_dtype=torch.int32)
    xr = x.clone().requires_grad_()
    (3.5 * weighted_l1_loss(xr, t, w, labels=labels, class_weights=cw, backend="cpu")).backward()
    xe = x.clone().requires_grad_()
    (3.5 * reference(xe, t, w, labels=labels, class_weights=cw)).backward()
    assert_close(xr.grad, xe.grad, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_retain_graph_gradient_modified_in_place_then_taken_again(backend):
    # autograd.grad handed the caller the saved fused gradient itself; zeroing it in place
    # made the second pass fail (a saved tensor modified) where the reference's works
    x, t, _, labels, cw = (v if v is None else v.to(device_of(backend)) for v in make((7, 9), label_dtype=torch.uint8))
    x.requires_grad_()
    loss = weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend=backend)
    first, = torch.autograd.grad(loss, x, retain_graph=True)
    want = first.clone()
    first.zero_()
    second, = torch.autograd.grad(loss, x)
    torch.testing.assert_close(second, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaled_gradient_taken_again(backend):
    # a scaled loss's gradient is the saved one scaled in place only on the graph's last pass:
    # scaled in place on the first, the second pass would have scaled it twice
    x, t, w, labels, cw = (v if v is None else v.to(device_of(backend))
                           for v in make((7, 9), weight="N1S", label_dtype=torch.uint8))
    x.requires_grad_()
    loss = weighted_l1_loss(x, t, w, labels=labels, class_weights=cw, backend=backend)
    first, = torch.autograd.grad(2.5 * loss, x, retain_graph=True)
    second, = torch.autograd.grad(2.5 * loss, x)
    xe = x.detach().double().requires_grad_()
    want, = torch.autograd.grad(2.5 * reference(xe, t.double(), w.double(), labels=labels,
                                                class_weights=cw.double()), xe)
    for got in (first, second):
        assert_close(got, want, torch.float32)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("reduction,normalize,want", [("sum", "elements", 0.0), ("mean", "weight", 0.0),
                                                      ("mean", "elements", float("nan"))])  # 0/0, as torch's l1_loss
def test_empty_input(backend, reduction, normalize, want):
    # the Triton backward once returned a (0,) gradient for a (0, 3, 4, 4) input
    x = torch.empty(0, 3, 4, 4, device=device_of(backend), requires_grad=True)
    loss = weighted_l1_loss(x, torch.empty_like(x), reduction=reduction, normalize=normalize, backend=backend)
    torch.testing.assert_close(loss.detach().cpu(), torch.tensor(want), equal_nan=True)
    loss.backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("total", ["nan", "zero", "negative"])
def test_weight_normalized_mean_special_totals(backend, total):
    # a NaN weight once gave gradients [0, nan, 0, 0] (1/NaN taken as 0) where the reference's are all NaN;
    # mixed-sign weights summing to 0 or below once gave 0 where the reference divides by the sum
    x, t, _, _, _ = make((2, 3), n=1, c=2)
    w = torch.tensor({"nan": [1.0, float("nan"), 2.0, 3.0, 1.0, 1.0],
                      "zero": [1.0, -1.0, 2.0, -2.0, 0.5, -0.5],
                      "negative": [1.0, -3.0, 2.0, -2.0, 0.5, -0.5]}[total]).reshape(1, 2, 1, 3)
    w = w.expand(1, 2, 2, 3).contiguous()
    device = device_of(backend)
    got, (gx, gt, gw, _) = grads_of(weighted_l1_loss, x.to(device), t.to(device), w.to(device), None, None,
                                    normalize="weight", backend=backend)
    want, (rx, rt, rw, _) = grads_of(reference, x.double(), t.double(), w.double(), None, None, normalize="weight")
    for g, r in ((got, want), (gx, rx), (gt, rt), (gw, rw)):
        torch.testing.assert_close(g.cpu().double(), r, rtol=1e-5, atol=1e-6, equal_nan=True)
    if total == "nan":
        assert gx.isnan().all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_past_2_31_elements(backend, reduction):
    # 2^31 + 4097 float16 elements in one (N, C, P) input: every offset must be 64-bit
    if device_of(backend) == "cpu" and backend == "triton":
        pytest.skip("Triton's interpreter is too slow for 2^31 elements")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if memory < (20 if reduction == "sum" else 32) * 2**30:  # two inputs of 4 GiB (and a loss map)
        pytest.skip(f"needs more memory than this machine's {memory / 2**30:.0f} GiB")
    device, count = device_of(backend), 2**31 + 4097
    x = torch.zeros(1, 1, count, dtype=torch.float16, device=device)
    t = torch.zeros_like(x)
    tail = torch.randn(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0, 0, -4096:] = tail.to(device, torch.float16)  # only past 2^31 is anything non-zero
    loss = weighted_l1_loss(x, t, reduction=reduction, backend=backend)
    if reduction == "sum":
        want = x[0, 0, -4096:].double().abs().sum()
        torch.testing.assert_close(loss.double(), want.to(device), rtol=1e-3, atol=1e-3)
    else:
        assert torch.equal(loss[0, 0, -4096:], x[0, 0, -4096:].abs()) and not loss[0, 0, :-4096].any()


# --- labels out of range: read from the data ------------------------------------------------


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("label", [6, -1, 200])
def test_label_out_of_range(backend, label):
    x, t, _, labels, cw = (v.to(device_of(backend)) if v is not None else v for v in make((6, 6), label_dtype=torch.int64))
    labels[1, 2, 3] = label
    with pytest.raises(ValueError, match=f"labels holds {label}"):
        weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend=backend)


# Labels are read sixteen at a time and looked up in registers where the table has at most 32
# classes (AVX-512 copy); the tail of a row, and larger tables, one at a time.
@pytest.mark.parametrize("label_dtype,label", [(torch.uint8, 6), (torch.uint8, 255), (torch.int32, -1),
                                               (torch.int32, 2**31 - 1), (torch.int64, -1), (torch.int64, 2**32 + 1)])
@pytest.mark.parametrize("pixel", [3, 36], ids=["in-a-sixteen", "in-the-tail"])
def test_label_out_of_range_by_dtype_and_place(label_dtype, label, pixel):
    # 2**32 + 1 is 1 in the low 32 bits: a check after narrowing would let it through
    x, t, _, labels, cw = make((37,), n=2, label_dtype=label_dtype)
    labels[1, pixel] = label
    with pytest.raises(ValueError, match=f"labels holds {label}, outside"):
        weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend="cpu")


@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int32, torch.int64])
@pytest.mark.parametrize("classes", [1, 16, 17, 32, 33, 200])
def test_every_class_weight_looked_up(classes, label_dtype):
    x, t, _, labels, cw = make((2 * classes + 5,), n=3, c=2, label_dtype=label_dtype, classes=classes)
    labels[0, : labels.shape[1] // 2] = torch.arange(labels.shape[1] // 2) % classes  # every class, in order
    got = weighted_l1_loss(x, t, labels=labels, class_weights=cw, reduction="none", backend="cpu")
    want = reference(x.double(), t.double(), labels=labels, class_weights=cw.double(), reduction="none")
    assert_close(got, want, torch.float32)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_label_out_of_range_under_compile(backend):
    # the reference's check was skipped while tracing, leaving an inductor index error
    if backend == "cpu" and not pyface._extension.loaded():
        pytest.skip("compiled extension not built")
    x, t, _, labels, cw = make((6, 6), label_dtype=torch.int64)
    loss = torch.compile(lambda labels: weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend=backend),
                         fullgraph=True)
    torch.testing.assert_close(loss(labels), reference(x, t, labels=labels, class_weights=cw))
    labels[1, 2, 3] = 6
    with pytest.raises(ValueError, match="labels holds 6, outside"):
        loss(labels)


def test_opcheck_of_the_compiled_label_check():
    _, _, _, labels, _ = make((6, 6), label_dtype=torch.int64)
    torch.library.opcheck(torch.ops.pyface.labels_in_range.default, ("weighted_l1_loss", labels, 6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_label_out_of_range_with_no_channels(backend):
    # an input with no channels was never read, so its labels were never checked (found by fuzzing)
    x = torch.empty(1, 0, 2, device=device_of(backend))
    labels = torch.tensor([[1, 0]], device=x.device)
    with pytest.raises(ValueError, match="labels holds 1"):
        weighted_l1_loss(x, x, labels=labels, class_weights=torch.rand(1, device=x.device), backend=backend)


def test_missing_extension_warns_once_and_falls_back():
    code = (
        "import sys, warnings; sys.modules['pyface._C'] = None\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    import pyface, importlib\n"
        "    import pyface.ops\n"
        "import torch\n"
        "msgs = [str(w.message) for w in seen if 'compiled extension' in str(w.message)]\n"
        "assert len(msgs) == 1 and 'pip install --no-build-isolation' in msgs[0], msgs\n"
        "assert pyface.backends()['cpu'] == ['reference'] or 'cpu' not in pyface.backends()['cpu']\n"
        "x = torch.rand(2, 3, 4, 4); print(float(pyface.ops.weighted_l1_loss(x, x + 1)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"
