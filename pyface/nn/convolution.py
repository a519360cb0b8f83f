"""Stride-1, zero-padded ("same") convolutions with large odd kernels, in fewer multiplications
or better-shaped products than oneDNN's direct CPU kernels. DenseMotion's 7x7(x7) mask and
occlusion convolutions are most of its time.

- spectral_last_axis_conv: the last axis by a real FFT. The correlation of a row of W points with
  a k-tap kernel is, over W + k - 1 points, a product per frequency, and a real row has
  (W + k - 1) // 2 + 1 distinct frequencies: each is one complex convolution over the other axes
  (one grouped oneDNN call, Gauss's three real products per complex one). For LivePortrait's
  7x7x7 mask convolution (W = 64) that is 3 x 35 real 7x7 convolutions per row instead of
  7 x 64 per-point 7x7 ones: 4.3x fewer multiplications.
- tap_products_conv: one output channel (the occlusion maps), where oneDNN's direct kernels run
  at a few GFLOP/s: one GEMM of every position's channels against every tap, then the taps'
  shifted sums.
same_conv picks between them and the direct convolution; apply_conv runs a Conv2d / Conv3d layer
through it.

- upsampled_conv: a 3x3 convolution of a nearest-2x-upsampled input (the hourglass decoders) as
  a 2x2 one of the input itself with four times the outputs, one per output parity, interleaved:
  2.25x fewer multiplications, and no upsampled tensor.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Measured on 2 CPU cores (float32): the spectral path pays for its transforms from about 5 taps
# on the last axis of a 3-D convolution; for 2-D ones each frequency's 1-D convolution is too
# small for oneDNN to run well, and the direct kernel stays faster.
_SPECTRAL_MIN_TAPS = 5
_TAP_PRODUCTS_MIN_TAPS = 9


def _direct(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """conv2d / conv3d padded by k // 2 per axis (an even k: one more output than input)."""
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    return conv(x, weight, bias, padding=[k // 2 for k in weight.shape[2:]])


def _check_operands(name: str, x: Tensor, weight: Tensor) -> None:
    if x.dim() not in (4, 5) or weight.dim() != x.dim() or weight.shape[1] != x.shape[1]:
        raise ValueError(f"{name}: x (N, C, *S) and weight (O, C, *K) with 2 or 3 spatial axes, got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")


def _cpu_rewrites_apply(x: Tensor) -> bool:
    """Whether this module's CPU formulations may replace the direct convolution: float32/float64
    on the CPU (half types' GEMMs are slower there), outside autocast (which casts a convolution
    as a whole) and outside torch.compile (whose unrolled loops of small products take minutes to
    compile)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not torch.compiler.is_compiling() and not torch.is_autocast_enabled("cpu"))


def same_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """conv2d / conv3d(x, weight, bias, padding=k // 2) for odd kernels (stride 1, one group),
    computed the fastest way measured for its shape on the CPU: tap products for one output
    channel, the last axis by a DFT for 3-D kernels, else the direct convolution, in 2-D with
    the output channels padded to a multiple of 8 (the direct one as it is where
    _cpu_rewrites_apply does not)."""
    _check_operands("same_conv", x, weight)
    kernel = weight.shape[2:]
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"same_conv: the kernel must be odd along every axis, got {tuple(kernel)}")
    if _cpu_rewrites_apply(x):
        taps = 1
        for k in kernel:
            taps *= k
        if weight.shape[0] == 1 and taps >= _TAP_PRODUCTS_MIN_TAPS:
            return tap_products_conv(x, weight, bias)
        if x.dim() == 5 and kernel[-1] >= _SPECTRAL_MIN_TAPS:
            return spectral_last_axis_conv(x, weight, bias)
        if x.dim() == 4 and weight.shape[0] > 8 and weight.shape[0] % 8:
            # oneDNN's 2-D kernels run a multiple of 8 output channels far faster: FOMM's 7x7 mask
            # convolution (76 -> 11 channels at 2x64x64) in 7.6 ms as 76 -> 16, against 11.0 ms
            o = weight.shape[0]
            padded = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, -o % 8))
            return _direct(x, padded, None if bias is None else F.pad(bias, (0, -o % 8)))[:, :o]
    return _direct(x, weight, bias)


def _dft_matrices(width: int, taps: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The real DFTs over length = width + taps - 1 points as matrices, three rows per frequency
    for Gauss's three-product complex multiplication: of a row of the input placed at offset
    taps // 2 (the zero padding, never stored) as [re + im, re, im]; of the taps as
    [re, re + im, re - im]; and the inverse, from the three products back to the row's points."""
    length = width + taps - 1
    bins = length // 2 + 1
    k = torch.arange(bins, dtype=torch.float64)
    turn = 2 * math.pi / length

    def cos_sin(positions: Tensor) -> tuple[Tensor, Tensor]:  # (B, points)
        angle = turn * k[:, None] * positions[None, :]
        return angle.cos(), angle.sin()

    cos, sin = cos_sin(torch.arange(width, dtype=torch.float64) + taps // 2)
    row = torch.stack([cos - sin, cos, -sin], 1).flatten(0, 1)  # re = sum x cos, im = -sum x sin
    cos, sin = cos_sin(torch.arange(taps, dtype=torch.float64))
    kernel = torch.stack([cos, cos - sin, cos + sin], 1).flatten(0, 1)
    # the inverse of a real spectrum: the bins between 0 and the Nyquist one stand for two;
    # x[l] = sum_b re_b a_b + im_b c_b with re = p1 - p3, im = p1 - p2
    twice = torch.full((bins,), 2.0, dtype=torch.float64)
    twice[0] = 1
    if length % 2 == 0:
        twice[-1] = 1
    cos, sin = cos_sin(torch.arange(width, dtype=torch.float64))
    a, c = cos * twice[:, None] / length, -sin * twice[:, None] / length
    inverse = torch.stack([a + c, -c, -a], 1).flatten(0, 1).t()  # (width, 3B)
    return tuple(m.to(dtype=like.dtype, device=like.device) for m in (row, kernel, inverse))


def spectral_last_axis_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The same-padded correlation of x with weight, the last axis by a real DFT (see the module).
    The transforms are GEMMs that also lay the data out as oneDNN wants it: each frequency's
    three inputs as channels-last planes, its three kernels as one grouped convolution's."""
    n, c, *spatial = x.shape
    o, _, *kernel = weight.shape
    width, taps = spatial[-1], kernel[-1]
    row_dft, kernel_dft, inverse = _dft_matrices(width, taps, x)
    bins = row_dft.shape[0] // 3
    # (N, *S', B, 3C): every row's spectrum as [re + im, re, im] x channels
    spectrum = torch.matmul(row_dft, x.movedim(1, -1).flatten(0, -3)).view(n, *spatial[:-1], bins, 3 * c)
    # oneDNN runs a multiple of 8 output channels far faster (142 -> 24 channels: 1.5x 142 -> 22)
    padded = -(-o // 8) * 8
    taps_first = F.pad(weight, (0,) * (2 * len(kernel) + 3) + (padded - o,)).movedim(-1, 0).flatten(1)
    # (B, 3 * O', C, *K'): every frequency's [re, re + im, re - im] kernels
    kernel_spectrum = (kernel_dft @ taps_first).view(bins, 3 * padded, c, *kernel[:-1])
    padding = [k // 2 for k in kernel[:-1]]
    conv = F.conv1d if len(spatial) == 2 else F.conv2d
    # per frequency the products (re + im) wr, re (wr + wi), im (wr - wi) of x and the conjugate
    # kernel. The frequencies are taken apart by unbind, whose backward stacks their gradients
    # once: a select per frequency had each of its 36 backwards write a zero tensor the size of
    # the whole spectrum and add it up (LivePortrait's DenseMotion forward+backward, timed in
    # turns with the module on the reference backend: 0.85x -> 1.99x it, 2.5 -> 1.19 s)
    frequencies = zip(spectrum.unbind(-2), kernel_spectrum.unbind(0))
    products = torch.stack([conv(row.movedim(-1, 1), taps, padding=padding, groups=3).movedim(1, -1)
                            for row, taps in frequencies], -2)  # (N, *S', B, 3 * O')
    out = torch.matmul(inverse, products.view(-1, 3 * bins, padded))  # (N * prod(S'), W, O')
    out = out.view(n, *spatial, padded)[..., :o].movedim(-1, 1)
    return out.contiguous() if bias is None else (out + bias.view(o, *([1] * len(spatial)))).contiguous()


def tap_products_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The same-padded correlation of x with weight as one GEMM and shifted sums (see the module)."""
    n, c, *spatial = x.shape
    o, _, *kernel = weight.shape
    # (taps x O, C) @ (N, C, positions): every position's product with every tap's weights; a
    # channels-last x is read in place as the transposed operand
    tap_weights = weight.permute(*range(2, weight.dim()), 0, 1).reshape(-1, c)
    products = torch.matmul(tap_weights, x.flatten(2)).view(n, *kernel, o, *spatial)
    out = x.new_zeros(n, o, *spatial) if bias is None else bias.view(o, *([1] * len(spatial))).expand(n, o, *spatial).clone()
    for tap in itertools.product(*(range(k) for k in kernel)):
        shifts = [t - k // 2 for t, k in zip(tap, kernel)]  # out[p] += products[tap][p + shift]
        if any(abs(s) >= size for s, size in zip(shifts, spatial)):
            continue  # this tap reads only the zero padding
        into = tuple(slice(max(0, -s), size - max(0, s)) for s, size in zip(shifts, spatial))
        read = tuple(slice(max(0, s), size + min(0, s)) for s, size in zip(shifts, spatial))
        out[(slice(None), slice(None), *into)] += products[(slice(None), *tap, slice(None), *read)]
    return out


def is_same_conv(layer: nn.Module) -> bool:
    """Whether layer is an nn.Conv2d / nn.Conv3d that same_conv computes: stride 1, one group,
    an odd kernel zero-padded by half its size."""
    if not isinstance(layer, (nn.Conv2d, nn.Conv3d)):
        return False
    kernel = layer.kernel_size
    return (layer.groups == 1 and layer.padding_mode == "zeros" and all(k % 2 == 1 for k in kernel)
            and layer.padding == tuple(k // 2 for k in kernel) and layer.stride == (1,) * len(kernel)
            and layer.dilation == (1,) * len(kernel))


def apply_conv(layer: nn.Module, x: Tensor, backend: str | None = None) -> Tensor:
    """layer(x), through same_conv when is_same_conv(layer) and backend is not "reference"
    (whose modules compute as PyTorch does)."""
    if backend != "reference" and is_same_conv(layer):
        return same_conv(x, layer.weight, layer.bias)
    return layer(x)


# Per axis, a 3-tap kernel read after nearest 2x upsampling is a 2-tap one of the input for each
# output parity: output 2p reads x[p - 1] by w0 and x[p] by w1 + w2 (its upsampled neighbours 2p,
# 2p + 1 are both x[p]); output 2p + 1 reads x[p] by w0 + w1 and x[p + 1] by w2.
_PARITY_TAPS = ((1, 0, 0), (0, 1, 1)), ((1, 1, 0), (0, 0, 1))
# The fewest input positions (H x W) where the parity kernels pay for their rearrangement, by the
# input's dimensions; measured on 2 CPU cores (float32, inference and forward+backward). FOMM's
# 2-D decoder: 128 -> 32 channels at 32x32 1.4x faster, 256 -> 64 at 16x16 1.3x, 256 -> 128 at
# 8x8 0.95x. LivePortrait's 3-D one (depth 16): 2.1-2.3x at 32x32 and 16x16, 1.3x at 8x8, 0.6x
# at 4x4 (1024 -> 256 channels: its 7M-weight kernels are rearranged on every call).
_UPSAMPLED_MIN_POSITIONS = {4: 16 * 16, 5: 8 * 8}


def _parity_kernels(weight: Tensor) -> Tensor:
    """(O, C, *K', 3, 3) -> (4 O, C, *K', 2, 2): the 2x2 kernels of the four (row, column) output
    parities, parity-major, channels-last in memory (as oneDNN reads a channels-last input's)."""
    o, c, *depth, _, _ = weight.shape
    per_axis = torch.tensor(_PARITY_TAPS, dtype=weight.dtype, device=weight.device)  # (parity, tap, 3)
    # (row parity, column parity, row tap, column tap) x (3 x 3): one GEMM for every kernel at once
    both = torch.einsum("aik,bjl->abijkl", per_axis, per_axis).reshape(16, 9)
    kernels = (both @ weight.permute(-2, -1, 0, *range(2, weight.dim() - 2), 1).reshape(9, -1))
    kernels = kernels.view(4, 4, o, *depth, c).movedim(1, -2)  # (parity, O, *K', row x column tap, C)
    return kernels.reshape(4 * o, *depth, 2, 2, c).movedim(-1, 1)


def upsampled_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """conv2d / conv3d(x upsampled 2x by nearest neighbour along its last two axes, weight, bias,
    padding=1) for 3x3 (2-D) and K x 3 x 3 (3-D, the depth not upsampled, K odd) kernels. On the
    CPU (float32/float64) with at least 16x16 (3-D: 8x8) input positions: one convolution of x
    padded by one with the 2x2 parity kernels, then the four parities interleaved (see the
    module); else (see _cpu_rewrites_apply) the upsampling and the direct convolution."""
    _check_operands("upsampled_conv", x, weight)
    if tuple(weight.shape[-2:]) != (3, 3) or (x.dim() == 5 and weight.shape[2] % 2 == 0):
        raise ValueError(f"upsampled_conv: the kernel must be 3x3 (3-D: K x 3 x 3, K odd), got {tuple(weight.shape[2:])}")
    n, _, *spatial = x.shape
    height, width = spatial[-2:]
    if not _cpu_rewrites_apply(x) or height * width < _UPSAMPLED_MIN_POSITIONS[x.dim()]:
        upsampled = F.interpolate(x, scale_factor=[1] * (x.dim() - 4) + [2, 2], mode="nearest")
        return _direct(upsampled, weight, bias)
    o = weight.shape[0]
    # (N, 4 O, *D, H + 1, W + 1), x padded by one around H and W: parity (a, b) of output
    # (2p + a, 2q + b) sits at (p + a, q + b)
    parities = _direct(x, _parity_kernels(weight), None if bias is None else bias.repeat(4))
    parities = parities.unflatten(1, (2, 2, o))
    channels_last = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    layout = channels_last if x.is_contiguous(memory_format=channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
    out = torch.empty(n, o, *spatial[:-2], 2 * height, 2 * width, dtype=x.dtype, device=x.device,
                      memory_format=layout)  # the input's layout, as oneDNN's output
    for a, b in itertools.product(range(2), range(2)):
        out[..., a::2, b::2] = parities[:, a, b, ..., a:a + height, b:b + width]
    return out
