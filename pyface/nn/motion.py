"""Keypoint-driven motion as modules, on pyface.ops: KeypointWarp (the fused warp with its
options held) and DenseMotion, the FOMM / face-vid2vid dense-motion block: keypoint heatmaps
and the feature warped by every keypoint's motion -> a small hourglass -> mask logits over
the K+1 motions (and an occlusion map) -> the fused keypoint_warp of the feature."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyface.nn.convolution import apply_conv, is_same_conv, same_conv, upsampled_conv
from pyface.ops import keypoint_heatmaps, keypoint_warp, sparse_motion_warp


class KeypointWarp(nn.Module):
    """pyface.ops.keypoint_warp with its options fixed: forward(feature, kp_source,
    kp_driving, mask, jacobian=None) -> output, or (output, deformation) with
    return_deformation."""

    def __init__(self, mask_logits: bool = True, align_corners: bool = False, padding_mode: str = "zeros",
                 return_deformation: bool = False, backend: str | None = None):
        super().__init__()
        self.mask_logits, self.align_corners, self.padding_mode = mask_logits, align_corners, padding_mode
        self.return_deformation, self.backend = return_deformation, backend

    def forward(self, feature: Tensor, kp_source: Tensor, kp_driving: Tensor, mask: Tensor,
                jacobian: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        return keypoint_warp(feature, kp_source, kp_driving, mask, jacobian, mask_logits=self.mask_logits,
                             align_corners=self.align_corners, padding_mode=self.padding_mode,
                             return_deformation=self.return_deformation, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"mask_logits={self.mask_logits}, align_corners={self.align_corners}, "
                f"padding_mode={self.padding_mode!r}, backend={self.backend!r}")


def _conv_block(dims: int, in_channels: int, out_channels: int) -> nn.Sequential:
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return nn.Sequential(conv(in_channels, out_channels, 3, padding=1), norm(out_channels), nn.ReLU(inplace=True))


def _fold_batch_norm(weight: Tensor, bias: Tensor | None, norm: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """The convolution (weight, bias) followed by norm with its running statistics, as one
    convolution: the normalization is then the affine map scale * y + shift per channel."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    return weight, shift if bias is None else bias * scale + shift


class Hourglass(nn.Module):
    """Encoder (conv-BN-ReLU, then 2x average pooling of H and W; depth is kept, as
    face-vid2vid's 3-D hourglass keeps it) and decoder (upsampling to the skip's size,
    conv-BN-ReLU, concatenation with the skip). Sizes need not be powers of two.

    On the CPU a 2-D hourglass runs channels-last: oneDNN's convolutions skip their layout
    reorders and nearest upsampling vectorises over the channels (FOMM's 64x64 hourglass in
    inference: 1.6x faster than channels-first on 2 cores). It returns contiguous features, or,
    with channels_last_output, the channels-last ones as computed, for a caller whose next layer
    is a convolution. Unless backend="reference" (every layer as written), two things are
    folded into the convolutions: a decoder's upsampling where it doubles H and W
    (pyface.nn.convolution.upsampled_conv), and BatchNorm's running statistics in eval mode (an
    affine map per channel)."""

    def __init__(self, dims: int, in_channels: int, block_expansion: int, num_blocks: int, max_features: int,
                 channels_last_output: bool = False, backend: str | None = None):
        super().__init__()
        self.dims, self.channels_last_output, self.backend = dims, channels_last_output, backend
        widths = [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down = nn.ModuleList(_conv_block(dims, c_in, c_out) for c_in, c_out in zip([in_channels, *widths], widths))
        up_out = [min(max_features, block_expansion * 2 ** i) for i in range(num_blocks)]  # deepest last
        self.up = nn.ModuleList()
        channels = widths[-1]
        for i in reversed(range(num_blocks)):
            self.up.append(_conv_block(dims, channels, up_out[i]))
            channels = up_out[i] + (widths[i - 1] if i > 0 else in_channels)
        self.out_channels = channels

    def _pool(self, x: Tensor) -> Tensor:
        kernel = (2, 2) if self.dims == 2 else (1, 2, 2)
        return F.avg_pool2d(x, kernel, ceil_mode=True) if self.dims == 2 else F.avg_pool3d(x, kernel, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.dims == 2 and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        skips = [x]
        for block in self.down:
            x = self._pool(self._block(block, x))
            skips.append(x)
        skips.pop()  # the deepest output is the decoder's input, not a skip
        for block in self.up:
            skip = skips.pop()
            x = torch.cat([self._block(block, x, upsample_to=skip.shape[2:]), skip], dim=1)
        return x if self.channels_last_output else x.contiguous()

    def _block(self, block: nn.Sequential, x: Tensor, upsample_to: torch.Size | None = None) -> Tensor:
        """block (conv, BatchNorm, ReLU) of x, or of x upsampled to upsample_to by nearest
        neighbour, with the folds of the class docstring."""
        if self.backend == "reference":
            return block(x if upsample_to is None else F.interpolate(x, size=upsample_to, mode="nearest"))
        conv, norm, relu = block
        doubled = upsample_to is not None and list(upsample_to) == [*x.shape[2:-2], 2 * x.shape[-2], 2 * x.shape[-1]]
        if upsample_to is not None and not doubled:
            x = F.interpolate(x, size=upsample_to, mode="nearest")
        folded = not norm.training and norm.track_running_stats
        weight, bias = _fold_batch_norm(conv.weight, conv.bias, norm) if folded else (conv.weight, conv.bias)
        if doubled:
            y = upsampled_conv(x, weight, bias)
        else:
            y = (F.conv2d if self.dims == 2 else F.conv3d)(x, weight, bias, padding=conv.padding)
        return relu(y if folded else norm(y))


class DenseMotion(nn.Module):
    """FOMM's dense-motion network on fused ops, 2-D (images, FOMM) or 3-D (feature volumes,
    face-vid2vid / LivePortrait).

    forward(feature (N, C, *S), kp_source, kp_driving (N, K, d), jacobian=None) returns a dict:
      "mask_logits" (N, K+1, *S)   the hourglass's scores of the K+1 motions (0 = background)
      "deformation" (N, *S, d)     sum_k softmax(mask)_k T_k(z)
      "deformed"    (N, C, *S)     the feature warped by it (pyface.ops.keypoint_warp)
      "occlusion"   (N, 1, H, W)   sigmoid occlusion map, when occlusion=True (3-D: pass depth=D)
    The hourglass sees keypoint_heatmaps (driving minus source Gaussians) and
    sparse_motion_warp (the feature under each motion) side by side, (K+1) * (C+1) channels,
    as FOMM builds them; neither input is built from repeated copies of the feature. The
    hourglass folds its decoder's upsampling and eval-mode BatchNorm into its convolutions, and
    the 7x7(x7) mask and occlusion convolutions go through pyface.nn.convolution.same_conv (on
    the CPU the 3-D mask's last axis by a DFT, the one-channel occlusion as tap products; in 2-D
    one convolution computes both); backend="reference" runs every layer as PyTorch does.
    """

    def __init__(self, feature_channels: int, num_keypoints: int, dims: int = 2, block_expansion: int = 32,
                 num_blocks: int = 3, max_features: int = 256, variance: float = 0.01, occlusion: bool = True,
                 depth: int | None = None, align_corners: bool = False, padding_mode: str = "zeros",
                 backend: str | None = None):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if dims == 3 and occlusion and depth is None:
            raise ValueError("a 3-D DenseMotion with occlusion needs the feature's depth (its occlusion conv "
                             "reads the depth-stacked hourglass features)")
        self.depth = depth
        self.feature_channels, self.num_keypoints, self.dims, self.variance = feature_channels, num_keypoints, dims, variance
        self.align_corners, self.padding_mode, self.backend = align_corners, padding_mode, backend
        slots = num_keypoints + 1
        self.hourglass = Hourglass(dims, slots * (feature_channels + 1), block_expansion, num_blocks, max_features,
                                   channels_last_output=True, backend=backend)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.mask = conv(self.hourglass.out_channels, slots, 7, padding=3)
        self.occlusion = None
        if occlusion:  # in 3-D over the depth-stacked features, as face-vid2vid computes it
            self.occlusion = nn.Conv2d(self.hourglass.out_channels * (depth if dims == 3 else 1), 1, 7, padding=3)
        self.warp = KeypointWarp(mask_logits=True, align_corners=align_corners, padding_mode=padding_mode,
                                 return_deformation=True, backend=backend)

    def _check(self, feature: Tensor, kp_source: Tensor, kp_driving: Tensor) -> None:
        if feature.dim() != self.dims + 2 or feature.shape[1] != self.feature_channels:
            kind = "(N, C, H, W)" if self.dims == 2 else "(N, C, D, H, W)"
            raise ValueError(f"DenseMotion: feature must be {kind} with C = {self.feature_channels}, "
                             f"got shape {tuple(feature.shape)}")
        if self.dims == 3 and self.occlusion is not None and feature.shape[2] != self.depth:
            raise ValueError(f"DenseMotion: feature depth must be {self.depth}, got shape {tuple(feature.shape)}")
        for name, kp in (("kp_source", kp_source), ("kp_driving", kp_driving)):
            if kp.dim() != 3 or kp.shape[1:] != (self.num_keypoints, self.dims):
                raise ValueError(f"DenseMotion: {name} must be (N, {self.num_keypoints}, {self.dims}), "
                                 f"got shape {tuple(kp.shape)}")

    def _motion_input(self, heatmaps: Tensor, warped: Tensor) -> Tensor:
        """(N, (K+1)(C+1), *S): each motion's heatmap, then the feature warped by it. For the
        channels-last 2-D hourglass on the CPU, both are written into a channels-last buffer at
        once, rather than concatenated and then copied to that layout."""
        if self.backend == "reference" or self.dims == 3 or warped.device.type != "cpu":
            return torch.cat([heatmaps.unsqueeze(2).to(warped.dtype), warped], dim=2).flatten(1, 2)
        n, slots, c, height, width = warped.shape
        buffer = warped.new_empty(n, height, width, slots, c + 1)
        buffer[..., 0] = heatmaps.movedim(1, -1)
        buffer[..., 1:] = warped.permute(0, 3, 4, 1, 2)
        return buffer.flatten(-2).movedim(-1, 1)

    def forward(self, feature: Tensor, kp_source: Tensor, kp_driving: Tensor,
                jacobian: Tensor | None = None) -> dict[str, Tensor]:
        self._check(feature, kp_source, kp_driving)
        n, c, *spatial = feature.shape
        heatmaps = keypoint_heatmaps(kp_driving, kp_source, spatial, variance=self.variance, backend=self.backend)
        warped = sparse_motion_warp(feature, kp_source, kp_driving, jacobian, align_corners=self.align_corners,
                                    padding_mode=self.padding_mode, backend=self.backend)
        hidden = self.hourglass(self._motion_input(heatmaps, warped))
        mask_logits, occlusion_logits = self._mask_and_occlusion(hidden)
        deformed, deformation = self.warp(feature, kp_source, kp_driving, mask_logits, jacobian)
        result = {"mask_logits": mask_logits, "deformation": deformation, "deformed": deformed}
        if occlusion_logits is not None:
            result["occlusion"] = torch.sigmoid(occlusion_logits)
        return result

    def _mask_and_occlusion(self, hidden: Tensor) -> tuple[Tensor, Tensor | None]:
        """The mask logits (contiguous) and the occlusion logits (or None) of the hourglass's
        features. In 2-D both are 7x7 convolutions of those features: unless backend="reference",
        one convolution computes both where the occlusion channel fits into the output channels
        that same_conv pads to a multiple of 8 anyway (FOMM: 11 + 1 of 16)."""
        slots = self.num_keypoints + 1
        if self.occlusion is None:
            return apply_conv(self.mask, hidden, self.backend).contiguous(), None
        if self.dims == 2 and self.backend != "reference" and slots % 8 and is_same_conv(self.occlusion):
            both = same_conv(hidden, torch.cat([self.mask.weight, self.occlusion.weight]),
                             torch.cat([self.mask.bias, self.occlusion.bias]))
            return both[:, :slots].contiguous(), both[:, slots:]
        stacked = hidden if self.dims == 2 else hidden.flatten(1, 2)
        return apply_conv(self.mask, hidden, self.backend).contiguous(), apply_conv(self.occlusion, stacked, self.backend)
