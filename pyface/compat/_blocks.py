"""The layers the FOMM family builds its networks from, with the attribute names the official
checkpoints use (conv, norm, pool, down_blocks, up_blocks, ...), so that their state dicts load
strictly. 2-D and 3-D variants are one class with `dims`; the 3-D pooling and upsampling keep
the depth, as face-vid2vid and LivePortrait do. No pyface op is used here: these are the
learned layers, and the motion path that runs on pyface's kernels is in _motion.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _batch_norm(dims: int):
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d


def _halve_hw(dims: int):
    """Pooling/upsampling factors: H and W only (the 3-D volumes keep their depth)."""
    return (2, 2) if dims == 2 else (1, 2, 2)


class SameBlock2d(nn.Module):
    """conv -> BatchNorm -> ReLU (LeakyReLU with lrelu), resolution kept."""

    def __init__(self, in_features: int, out_features: int, groups: int = 1, kernel_size=3, padding=1,
                 lrelu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.ac = nn.LeakyReLU() if lrelu else nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.ac(self.norm(self.conv(x)))


class DownBlock(nn.Module):
    """conv -> BatchNorm -> ReLU -> 2x average pooling of H and W."""

    def __init__(self, dims: int, in_features: int, out_features: int, kernel_size=3, padding=1, groups: int = 1):
        super().__init__()
        self.conv = _conv(dims)(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = _batch_norm(dims)(out_features, affine=True)
        self.pool = (nn.AvgPool2d if dims == 2 else nn.AvgPool3d)(kernel_size=_halve_hw(dims))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock(nn.Module):
    """2x nearest upsampling of H and W -> conv -> BatchNorm -> ReLU."""

    def __init__(self, dims: int, in_features: int, out_features: int, kernel_size=3, padding=1, groups: int = 1):
        super().__init__()
        self.dims = dims
        self.conv = _conv(dims)(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = _batch_norm(dims)(out_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=_halve_hw(self.dims))
        return F.relu(self.norm(self.conv(x)))


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(norm(conv(relu(norm(x))))))."""

    def __init__(self, dims: int, in_features: int, kernel_size=3, padding=1):
        super().__init__()
        conv, norm = _conv(dims), _batch_norm(dims)
        self.conv1 = conv(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = conv(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = norm(in_features, affine=True)
        self.norm2 = norm(in_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2 ** level)


class Encoder(nn.Module):
    def __init__(self, dims: int, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock(dims, in_features if i == 0 else _width(block_expansion, max_features, i),
                      _width(block_expansion, max_features, i + 1))
            for i in range(num_blocks))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Upsampling blocks, each followed by concatenation with the encoder's output of that size.
    The 3-D decoders (face-vid2vid, LivePortrait) end with one more conv -> BatchNorm -> ReLU."""

    def __init__(self, dims: int, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock(dims, (1 if i == num_blocks - 1 else 2) * _width(block_expansion, max_features, i + 1),
                    _width(block_expansion, max_features, i))
            for i in reversed(range(num_blocks)))
        self.out_filters = block_expansion + in_features
        if dims == 3:
            self.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
            self.norm = nn.BatchNorm3d(self.out_filters, affine=True)

    def forward(self, skips: list[Tensor]) -> Tensor:
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        if hasattr(self, "conv"):
            out = F.relu(self.norm(self.conv(out)))
        return out


class Hourglass(nn.Module):
    def __init__(self, dims: int, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256):
        super().__init__()
        self.encoder = Encoder(dims, block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(dims, block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur (sigma = (1/scale - 1) / 2, a depthwise conv) then every (1/scale)-th pixel."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        taps = torch.exp(-((torch.arange(size, dtype=torch.float32) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
        kernel = taps[:, None] * taps[None, :]
        kernel = (kernel / kernel.sum()).expand(channels, 1, size, size).contiguous()
        self.register_buffer("weight", kernel)
        self.groups, self.scale, self.int_inv_scale = channels, scale, int(1 / scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1.0:
            return x
        out = F.conv2d(F.pad(x, (self.ka, self.kb, self.ka, self.kb)), self.weight, groups=self.groups)
        return out[:, :, ::self.int_inv_scale, ::self.int_inv_scale]


class SPADE(nn.Module):
    """Instance norm (no affine), then a per-pixel scale and shift predicted from the label map."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128):
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        hidden = self.mlp_shared(F.interpolate(segmap, size=x.shape[2:], mode="nearest"))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(hidden)) + self.mlp_beta(hidden)


class SPADEResnetBlock(nn.Module):
    """Two SPADE -> LeakyReLU(0.2) -> conv steps, spectrally normalised convs, and a learned
    shortcut when the width changes."""

    def __init__(self, fin: int, fout: int, norm_G: str, label_nc: int, use_se: bool = False, dilation: int = 1):
        super().__init__()
        self.learned_shortcut = fin != fout
        middle = min(fin, fout)
        self.use_se = use_se
        wrap = spectral_norm if "spectral" in norm_G else (lambda layer: layer)
        self.conv_0 = wrap(nn.Conv2d(fin, middle, kernel_size=3, padding=dilation, dilation=dilation))
        self.conv_1 = wrap(nn.Conv2d(middle, fout, kernel_size=3, padding=dilation, dilation=dilation))
        if self.learned_shortcut:
            self.conv_s = wrap(nn.Conv2d(fin, fout, kernel_size=1, bias=False))
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(middle, label_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class SPADEImageDecoder(nn.Module):
    """LivePortrait's and face-vid2vid's SPADEDecoder: the warped feature (its own label map) to the
    image through six SPADE residual blocks and two 2x upsamplings; with upscale 2, a pixel
    shuffle doubles the image's size."""

    def __init__(self, upscale=1, max_features=256, block_expansion=64, out_channels=64, num_down_blocks=2):
        super().__init__()
        self.upscale = upscale
        channels = min(max_features, block_expansion * 2 ** num_down_blocks)
        norm_G = "spadespectralinstance"
        self.fc = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        for i in range(6):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(2 * channels, 2 * channels, norm_G, channels))
        self.up_0 = SPADEResnetBlock(2 * channels, channels, norm_G, channels)
        self.up_1 = SPADEResnetBlock(channels, out_channels, norm_G, channels)
        self.up = nn.Upsample(scale_factor=2)
        if upscale is None or upscale <= 1:
            self.conv_img = nn.Conv2d(out_channels, 3, 3, padding=1)
        else:
            self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * 4, kernel_size=3, padding=1),
                                          nn.PixelShuffle(upscale_factor=2))

    def forward(self, feature: Tensor) -> Tensor:
        x = self.fc(feature)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_1(self.up(self.up_0(self.up(x), feature)), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 2e-1)))


def encode_volume(module: nn.Module, image: Tensor) -> tuple[Tensor, Tensor]:
    """face-vid2vid's and LivePortrait's appearance encoder, on `module`'s official attributes
    (first, down_blocks, second, reshape_channel, reshape_depth, resblocks_3d): the image's 2-D
    encoding (N, C*D, H, W), and the feature volume (N, C, D, H, W) it is read as, after the
    3-D residual blocks."""
    out = module.first(image)
    for block in module.down_blocks:
        out = block(out)
    out = module.second(out)
    n, _, h, w = out.shape
    return out, module.resblocks_3d(out.view(n, module.reshape_channel, module.reshape_depth, h, w))


def coordinate_grid(spatial_size, dtype: torch.dtype, device) -> Tensor:
    """(*spatial_size, d): every position's coordinates on the [-1, 1] grid, ordered (x, y[, z])
    (x along the last axis), computed as the official code computes them (2 i / (n - 1) - 1)."""
    axes = [2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1 for n in spatial_size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)


def softmax_keypoints(prediction: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """The keypoint detectors' heads: a softmax over each channel's positions at `temperature`,
    and the expected coordinate under it. Returns (heatmap (N, K, *S), value (N, K, d))."""
    n, k, *spatial = prediction.shape
    heatmap = F.softmax(prediction.reshape(n, k, -1) / temperature, dim=2).reshape(prediction.shape)
    grid = coordinate_grid(spatial, prediction.dtype, prediction.device)
    value = (heatmap.unsqueeze(-1) * grid).sum(dim=tuple(range(2, 2 + len(spatial))))
    return heatmap, value


def heatmap_jacobian(heatmap: Tensor, jacobian_map: Tensor, num_jacobian_maps: int) -> Tensor:
    """Each keypoint's jacobian: its jacobian map's entries averaged under its heatmap.
    heatmap (N, K, *S), jacobian_map (N, maps * d * d, *S) -> (N, K, d, d)."""
    n, k, *spatial = heatmap.shape
    d = len(spatial)
    entries = jacobian_map.reshape(n, num_jacobian_maps, d * d, *spatial)
    jacobian = (heatmap.unsqueeze(2) * entries).reshape(n, k, d * d, -1).sum(-1)
    return jacobian.reshape(n, k, d, d)


class KeypointDetector(nn.Module):
    """The keypoint detectors' heads (FOMM's 2-D, face-vid2vid's 3-D), built after the subclass's
    `predictor`, in the official order: kp, jacobian, down."""

    def _build_heads(self, dims: int, num_kp: int, image_channels: int, temperature: float, estimate_jacobian: bool,
                     scale_factor: float, single_jacobian_map: bool, kernel_size, padding) -> None:
        conv = _conv(dims)
        self.kp = conv(self.predictor.out_filters, num_kp, kernel_size=kernel_size, padding=padding)
        self.jacobian = None
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = conv(self.predictor.out_filters, dims * dims * self.num_jacobian_maps,
                                 kernel_size=kernel_size, padding=padding)
            with torch.no_grad():  # every keypoint starts with the identity jacobian
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.eye(dims).flatten().repeat(self.num_jacobian_maps))
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(image_channels, scale_factor)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """{"value" (N, K, d)[, "jacobian" (N, K, d, d)]} from an image."""
        if self.scale_factor != 1:
            x = self.down(x)
        feature_map = self.predictor(x)
        heatmap, value = softmax_keypoints(self.kp(feature_map), self.temperature)
        out = {"value": value}
        if self.jacobian is not None:
            out["jacobian"] = heatmap_jacobian(heatmap, self.jacobian(feature_map), self.num_jacobian_maps)
        return out
