"""pyface.nn.convolution: the spectral and tap-product convolutions give PyTorch's same-padded
convolution (values and gradients) on fresh inputs, odd sizes, kernels wider than the input,
channels-last and non-contiguous inputs; same_conv and apply_conv refuse or pass on what they
do not compute; upsampled_conv is the convolution of the nearest-upsampled input."""
import helpers
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyface.nn import convolution
from pyface.nn.convolution import apply_conv, same_conv, spectral_last_axis_conv, tap_products_conv, upsampled_conv

PATHS = [spectral_last_axis_conv, tap_products_conv]
# (N, C, O, spatial, kernel): odd and even sizes, a kernel wider than its axis, 2-D and 3-D
SHAPES = [
    (2, 3, 4, (5, 9, 11), (3, 5, 7)),
    (1, 4, 1, (6, 7), (7, 5)),
    (2, 5, 3, (4, 3, 2), (7, 7, 7)),
    (1, 3, 9, (8, 9, 10), (3, 3, 3)),
    (3, 2, 2, (5, 8), (1, 3)),
]


def direct(x, weight, bias):
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    return conv(x, weight, bias, padding=[k // 2 for k in weight.shape[2:]])


def operands(n, c, o, spatial, kernel, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *spatial, generator=g, dtype=dtype)
    weight = torch.randn(o, c, *kernel, generator=g, dtype=dtype) / (c * len(kernel)) ** 0.5
    return x, weight, torch.randn(o, generator=g, dtype=dtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_the_direct_convolution(path, shape, dtype):
    x, weight, bias = operands(*shape, dtype)
    want = direct(x, weight, bias)
    got = path(x, weight, bias)
    assert got.shape == want.shape and got.dtype == dtype and got.is_contiguous()
    helpers.assert_close_to_largest(got, want, dtype)
    helpers.assert_close_to_largest(path(x, weight, None), direct(x, weight, None), dtype)


@pytest.mark.parametrize("path", PATHS)
def test_channels_last_and_strided_inputs(path):
    x, weight, bias = operands(2, 6, 1, (9, 8), (7, 7), torch.float32)
    want = direct(x, weight, bias)
    helpers.assert_close_to_largest(path(x.contiguous(memory_format=torch.channels_last), weight, bias), want,
                                    torch.float32)
    wide = torch.randn(2, 12, 9, 16)
    wide[:, ::2, :, ::2] = x
    helpers.assert_close_to_largest(path(wide[:, ::2, :, ::2], weight, bias), want, torch.float32)  # every other
    x3, weight3, bias3 = operands(1, 5, 3, (4, 6, 7), (3, 5, 5), torch.float32)
    helpers.assert_close_to_largest(path(x3.contiguous(memory_format=torch.channels_last_3d), weight3, bias3),
                                    direct(x3, weight3, bias3), torch.float32)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(2, 3, 2, (4, 5), (3, 5)), (1, 2, 1, (3, 4, 3), (3, 3, 5))], ids=str)
def test_gradcheck(path, shape):
    x, weight, bias = (t.requires_grad_() for t in operands(*shape, torch.float64, seed=1))
    assert torch.autograd.gradcheck(path, (x, weight, bias))


def test_gradcheck_padded_outputs():
    x, weight, bias = (t.requires_grad_() for t in operands(1, 2, 9, (4, 5), (3, 3), torch.float64, seed=5))
    assert torch.autograd.gradcheck(same_conv, (x, weight, bias))


def test_float32_gradients_match_the_direct_convolution():
    x, weight, bias = operands(1, 8, 5, (6, 10, 12), (7, 7, 7), torch.float32, seed=2)
    grad = torch.randn(1, 5, 6, 10, 12)
    want = torch.autograd.grad(direct(*(t.requires_grad_() for t in (x, weight, bias))), (x, weight, bias), grad)
    for path in PATHS:
        got = torch.autograd.grad(path(x, weight, bias), (x, weight, bias), grad)
        for a, b in zip(got, want):
            helpers.assert_close_to_largest(a, b, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 6, 1, (9, 8), (7, 7)), (1, 6, 4, (5, 9, 8), (7, 7, 7)),
                                   (2, 6, 4, (9, 8), (7, 7)), (2, 6, 11, (9, 8), (7, 5))],
                         ids=["one output", "3-D", "2-D", "2-D, outputs padded to 16"])
def test_same_conv_is_the_convolution(shape, dtype):
    x, weight, bias = (t.to(dtype) for t in operands(*shape, torch.float32, seed=3))
    helpers.assert_close_to_largest(same_conv(x, weight, bias), direct(x, weight, bias), dtype)


def test_same_conv_bad_inputs():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="odd along every axis"):
        same_conv(x, torch.randn(2, 3, 4, 3))
    with pytest.raises(ValueError, match=r"weight \(O, C, \*K\)"):
        same_conv(x, torch.randn(2, 4, 3, 3))  # channels differ
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        same_conv(torch.randn(1, 3, 8), torch.randn(2, 3, 3))


def test_apply_conv():
    torch.manual_seed(4)
    x = torch.randn(2, 6, 9, 8)
    layer = nn.Conv2d(6, 1, 7, padding=3)
    assert torch.equal(apply_conv(layer, x, "reference"), layer(x))  # the reference is PyTorch's own
    helpers.assert_close_to_largest(apply_conv(layer, x), layer(x), torch.float32)
    for other in (nn.Conv2d(6, 1, 7, padding=3, stride=2), nn.Conv2d(6, 1, 7, padding=2),
                  nn.Conv2d(6, 2, 7, padding=3, groups=2), nn.Conv2d(6, 1, 6, padding=3),
                  nn.Conv2d(6, 1, 7, padding=3, padding_mode="reflect")):
        assert torch.equal(apply_conv(other, x), other(x))  # not same-padded odd stride-1 convolutions


@pytest.mark.parametrize("shape", [(1, 6, 1, (9, 8), (7, 7)), (1, 6, 4, (5, 9, 8), (7, 7, 7))],
                         ids=["one output", "3-D"])
def test_same_conv_under_autocast_is_the_autocast_convolution(shape):
    x, weight, bias = operands(*shape, torch.float32, seed=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = same_conv(x, weight, bias), direct(x, weight, bias)
    assert got.dtype == want.dtype == torch.bfloat16
    assert torch.equal(got, want)


def upsampled_then_conv(x, weight, bias):
    """What upsampled_conv computes, as written: the upsampled tensor, then the convolution."""
    upsampled = F.interpolate(x, scale_factor=[1] * (x.dim() - 4) + [2, 2], mode="nearest")
    return direct(upsampled, weight, bias)


# (N, C, O, spatial, kernel): the parity path from 16x16 (3-D: 8x8) input positions on (odd
# sizes), the upsample-then-convolve one below that
UPSAMPLED_SHAPES = [
    (2, 5, 6, (16, 17), (3, 3)),
    (1, 4, 3, (3, 9, 8), (3, 3, 3)),
    (1, 3, 5, (2, 16, 19), (1, 3, 3)),
    (2, 3, 4, (5, 7), (3, 3)),
    (1, 3, 2, (3, 5, 7), (3, 3, 3)),
]


@pytest.mark.parametrize("shape", UPSAMPLED_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
def test_upsampled_conv_is_the_convolution_of_the_upsampled_input(shape, dtype, channels_last):
    x, weight, bias = operands(*shape, dtype)
    layout = torch.contiguous_format
    if channels_last:
        layout = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        x = x.contiguous(memory_format=layout)
    got, want = upsampled_conv(x, weight, bias), upsampled_then_conv(x, weight, bias)
    helpers.assert_close_to_largest(got, want, dtype)
    # the input's layout, for the next convolution (PyTorch's 3-D upsampling returns contiguous)
    assert got.is_contiguous(memory_format=layout) or got.stride() == want.stride()


def test_upsampled_conv_gradcheck(monkeypatch):
    monkeypatch.setattr(convolution, "_UPSAMPLED_MIN_POSITIONS", {4: 1, 5: 1})  # the parity path on small inputs
    for shape in [(1, 2, 3, (3, 4), (3, 3)), (1, 2, 2, (3, 2, 3), (3, 3, 3))]:
        x, weight, bias = (t.requires_grad_() for t in operands(*shape, torch.float64, seed=6))
        assert torch.autograd.gradcheck(upsampled_conv, (x, weight, bias))
        assert torch.autograd.gradcheck(upsampled_conv, (x.detach().transpose(-1, -2).requires_grad_(), weight, None))


def test_upsampled_conv_under_autocast_is_the_autocast_convolution():
    x, weight, bias = operands(2, 5, 6, (16, 17), (3, 3), torch.float32, seed=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = upsampled_conv(x, weight, bias), upsampled_then_conv(x, weight, bias)
    assert got.dtype == want.dtype == torch.bfloat16
    assert torch.equal(got, want)


def test_upsampled_conv_bad_inputs():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="must be 3x3"):
        upsampled_conv(x, torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="K odd"):
        upsampled_conv(torch.randn(1, 3, 2, 8, 8), torch.randn(2, 3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"weight \(O, C, \*K\)"):
        upsampled_conv(x, torch.randn(2, 4, 3, 3))  # channels differ
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        upsampled_conv(torch.randn(1, 3, 8), torch.randn(2, 3, 3))
