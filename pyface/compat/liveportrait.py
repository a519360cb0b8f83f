"""LivePortrait (KwaiVGI/LivePortrait) on pyface's kernels: AppearanceFeatureExtractor,
MotionExtractor, WarpingNetwork with its DenseMotionNetwork, SPADEDecoder and
StitchingRetargetingNetwork with the official class names, constructor arguments (as in
src/config/models.yaml), state-dict names and forward signatures, so that the released
checkpoints load with strict=True and give the official outputs. The warping network's motion
path runs on pyface.ops; `backend=` ("reference": the plain-PyTorch formulation) selects their
implementation. Keypoints are tensors (N, K, 3), as LivePortrait passes them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyface.compat import _motion, facevid2vid
from pyface.compat._blocks import DownBlock, ResBlock, SameBlock2d, SPADEImageDecoder, encode_volume
from pyface.compat._conventions import (
    create_deformed_feature,
    create_heatmap_representations,
    create_sparse_motions,
    deform_input,
    kp2gaussian,
    make_coordinate_grid,
    warp,
)

__all__ = ["AppearanceFeatureExtractor", "MotionExtractor", "WarpingNetwork", "DenseMotionNetwork", "SPADEDecoder",
           "StitchingRetargetingNetwork", "make_coordinate_grid", "kp2gaussian", "create_heatmap_representations",
           "create_sparse_motions", "create_deformed_feature", "deform_input", "warp"]


class AppearanceFeatureExtractor(nn.Module):
    """The source image's 3-D appearance feature volume: forward(source_image (N, 3, 256, 256))
    -> (N, reshape_channel, reshape_depth, 64, 64)."""

    def __init__(self, image_channel, block_expansion, num_down_blocks, max_features, reshape_channel, reshape_depth,
                 num_resblocks):
        super().__init__()
        self.image_channel, self.block_expansion, self.num_down_blocks = image_channel, block_expansion, num_down_blocks
        self.max_features, self.reshape_channel, self.reshape_depth = max_features, reshape_channel, reshape_depth
        self.first = SameBlock2d(image_channel, block_expansion, kernel_size=(3, 3), padding=(1, 1))
        widths = [min(max_features, block_expansion * 2 ** i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock(2, widths[i], widths[i + 1]) for i in range(num_down_blocks))
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1, stride=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock(3, reshape_channel, kernel_size=3, padding=1))

    def forward(self, source_image: Tensor) -> Tensor:
        return encode_volume(self, source_image)[1]


class DenseMotionNetwork(facevid2vid.DenseMotionNetwork):
    """face-vid2vid's dense motion network with keypoint tensors: forward(feature (N, C, D, H, W),
    kp_driving, kp_source (N, K, 3)) -> {"mask" (N, K+1, D, H, W), "deformation" (N, D, H, W, 3)
    [, "occlusion_map" (N, 1, H, W)]}."""

    def __init__(self, block_expansion, num_blocks, max_features, num_kp, feature_channel, reshape_depth, compress,
                 estimate_occlusion_map=True, *, backend: str | None = None):
        super().__init__(block_expansion, num_blocks, max_features, num_kp, feature_channel, reshape_depth, compress,
                         estimate_occlusion_map, backend=backend)
        self.flag_estimate_occlusion_map = estimate_occlusion_map

    def forward(self, feature: Tensor, kp_driving: Tensor, kp_source: Tensor) -> dict[str, Tensor]:
        return _motion.volume_dense_motion(self, feature, kp_driving, kp_source, None)[0]


class WarpingNetwork(nn.Module):
    """The feature volume warped by the implicit keypoints' dense motion, flattened to 2-D and
    masked by the occlusion map. forward(feature_3d (N, 32, 16, 64, 64), kp_driving, kp_source
    (N, K, 3)) -> {"occlusion_map", "deformation" (N, 16, 64, 64, 3), "out" (N, 256, 64, 64)}."""

    def __init__(self, num_kp, block_expansion, max_features, num_down_blocks, reshape_channel,
                 estimate_occlusion_map=False, dense_motion_params=None, *, backend: str | None = None, **kwargs):
        super().__init__()
        self.upscale = kwargs.get("upscale", 1)
        self.flag_use_occlusion_map = kwargs.get("flag_use_occlusion_map", True)
        if dense_motion_params is None:
            raise ValueError("WarpingNetwork needs dense_motion_params (its forward warps by the dense motion)")
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp, feature_channel=reshape_channel, estimate_occlusion_map=estimate_occlusion_map,
            backend=backend, **dense_motion_params)
        width = block_expansion * 2 ** num_down_blocks
        self.third = SameBlock2d(max_features, width, kernel_size=(3, 3), padding=(1, 1), lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1, stride=1)
        self.estimate_occlusion_map = estimate_occlusion_map

    def deform_input(self, inp: Tensor, deformation: Tensor) -> Tensor:
        return F.grid_sample(inp, deformation, align_corners=False)

    def forward(self, feature_3d: Tensor, kp_driving: Tensor, kp_source: Tensor) -> dict[str, Tensor | None]:
        dense, warped = _motion.volume_dense_motion(self.dense_motion_network, feature_3d, kp_driving, kp_source, None)
        occlusion_map = dense.get("occlusion_map")
        out = self.fourth(self.third(warped.flatten(1, 2)))
        if self.flag_use_occlusion_map and occlusion_map is not None:
            out = out * occlusion_map
        return {"occlusion_map": occlusion_map, "deformation": dense["deformation"], "out": out}


class SPADEDecoder(SPADEImageDecoder):
    """The warped feature (N, 256, 64, 64) to the image: six SPADE residual blocks, two 2x
    upsamplings, and with upscale 2 a pixel shuffle to (N, 3, 512, 512)."""

    def __init__(self, upscale=1, max_features=256, block_expansion=64, out_channels=64, num_down_blocks=2):
        super().__init__(upscale, max_features, block_expansion, out_channels, num_down_blocks)


class StitchingRetargetingNetwork(nn.Module):
    """An MLP (Linear, ReLU, ..., Linear): the stitching and the eye and lip retargeting modules."""

    def __init__(self, input_size, hidden_sizes, output_size):
        super().__init__()
        layers = []
        for width_in, width_out in zip([input_size, *hidden_sizes], hidden_sizes):
            layers += [nn.Linear(width_in, width_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(hidden_sizes[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def initialize_weights_to_zero(self) -> None:
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


# --- the motion extractor: a ConvNeXt V2 tiny with pose, expression and keypoint heads ----------


class LayerNorm(nn.Module):
    """LayerNorm over the channels, of (N, H, W, C) ("channels_last") or (N, C, H, W) input."""

    def __init__(self, normalized_shape, eps=1e-6, data_format="channels_last"):
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps, self.data_format, self.normalized_shape = eps, data_format, (normalized_shape,)

    def forward(self, x: Tensor) -> Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - mean) / torch.sqrt(variance + self.eps)) + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation of (N, H, W, C)."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        norms = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        return self.gamma * (x * (norms / (norms.mean(dim=-1, keepdim=True) + 1e-6))) + self.beta + x


class Block(nn.Module):
    """ConvNeXt V2 block: depthwise 7x7 -> LayerNorm -> Linear x4 -> GELU -> GRN -> Linear, residual."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        out = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        out = self.pwconv2(self.grn(self.act(self.pwconv1(out))))
        return x + out.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """The backbone (inference: no stochastic depth) with LivePortrait's heads. forward(x) ->
    {"pitch", "yaw", "roll" (num_bins logits), "t", "exp", "scale", "kp"}."""

    def __init__(self, in_chans=3, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_bins=66, num_kp=24, **_):
        super().__init__()
        self.depths = depths
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
            LayerNorm(dims[0], eps=1e-6, data_format="channels_first"))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList(nn.Sequential(*[Block(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], num_bins)
        self.fc_yaw = nn.Linear(dims[-1], num_bins)
        self.fc_roll = nn.Linear(dims[-1], num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        x = self.norm(x.mean([-2, -1]))
        return {"pitch": self.fc_pitch(x), "yaw": self.fc_yaw(x), "roll": self.fc_roll(x), "t": self.fc_t(x),
                "exp": self.fc_exp(x), "scale": self.fc_scale(x), "kp": self.fc_kp(x)}


class MotionExtractor(nn.Module):
    """Canonical keypoints, head pose, translation, expression and scale from an image
    (backbone "convnextv2_tiny", the only one LivePortrait ships). forward(x) -> the backbone's dict."""

    def __init__(self, **kwargs):
        super().__init__()
        backbone = kwargs.get("backbone", "convnextv2_tiny")
        if backbone != "convnextv2_tiny":
            raise ValueError(f"MotionExtractor: unknown backbone {backbone!r} (LivePortrait ships convnextv2_tiny)")
        self.detector = ConvNeXtV2(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), **kwargs)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.detector(x)
