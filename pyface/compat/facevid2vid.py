"""face-vid2vid (Wang et al.) as the widely used re-implementation
zhanglonghao1992/One-Shot_Free-View_Neural_Talking_Head_Synthesis builds it, on pyface's kernels:
KPDetector, HEEstimator, DenseMotionNetwork, OcclusionAwareGenerator and
OcclusionAwareSPADEGenerator with the official class names, constructor arguments, state-dict
names and forward signatures, so that its vox-256 checkpoints load with strict=True and give its
outputs. The appearance feature volume is computed inside the generators, as there. The 3-D
dense-motion path runs on pyface.ops; `backend=` ("reference": the plain-PyTorch formulation)
selects their implementation. Keypoints are dicts {"value": (N, K, 3)[, "jacobian": (N, K, 3, 3)
or None]}, as the official code passes them."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyface.compat import _motion
from pyface.compat._blocks import (
    DownBlock,
    Hourglass,
    KeypointDetector,
    ResBlock,
    SameBlock2d,
    SPADEImageDecoder,
    UpBlock,
    encode_volume,
)
from pyface.compat._conventions import (
    create_deformed_feature,
    create_heatmap_representations,
    create_sparse_motions,
    deform_input,
    jacobian,
    kp2gaussian,
    make_coordinate_grid,
    warp,
)

__all__ = ["KPDetector", "HEEstimator", "DenseMotionNetwork", "OcclusionAwareGenerator",
           "OcclusionAwareSPADEGenerator", "SPADEDecoder", "make_coordinate_grid", "kp2gaussian",
           "create_heatmap_representations", "create_sparse_motions", "create_deformed_feature", "deform_input",
           "warp"]

KP = dict


class KPHourglass(nn.Module):
    """2-D downsampling, a 1x1 conv to reshape_features channels read as a (C / depth, depth)
    volume, then 3-D upsampling of H and W."""

    def __init__(self, block_expansion, in_features, reshape_features, reshape_depth, num_blocks=3, max_features=256):
        super().__init__()
        width = [min(max_features, block_expansion * 2 ** i) for i in range(num_blocks + 1)]
        self.down_blocks = nn.Sequential()
        for i in range(num_blocks):
            self.down_blocks.add_module(f"down{i}", DownBlock(2, in_features if i == 0 else width[i], width[i + 1]))
        self.conv = nn.Conv2d(width[num_blocks], reshape_features, kernel_size=1)
        self.up_blocks = nn.Sequential()
        for i in range(num_blocks):
            self.up_blocks.add_module(f"up{i}", UpBlock(3, width[num_blocks - i], width[num_blocks - i - 1]))
        self.reshape_depth = reshape_depth
        self.out_filters = width[0]

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(self.down_blocks(x))
        n, c, h, w = out.shape
        return self.up_blocks(out.view(n, c // self.reshape_depth, self.reshape_depth, h, w))


class KPDetector(KeypointDetector):
    """Canonical 3-D keypoints (and jacobians) from an image. forward(x) -> {"value" (N, K, 3)
    [, "jacobian" (N, K, 3, 3)]}."""

    def __init__(self, block_expansion, feature_channel, num_kp, image_channel, max_features, reshape_channel,
                 reshape_depth, num_blocks, temperature, estimate_jacobian=False, scale_factor=1,
                 single_jacobian_map=False):
        super().__init__()
        self.predictor = KPHourglass(block_expansion, image_channel, reshape_channel, reshape_depth, num_blocks,
                                     max_features)
        self._build_heads(3, num_kp, image_channel, temperature, estimate_jacobian, scale_factor, single_jacobian_map,
                          kernel_size=3, padding=1)


class ResBottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 convs with BatchNorm, and a strided 1x1 shortcut when stride > 1."""

    def __init__(self, in_features, stride):
        super().__init__()
        quarter = in_features // 4
        self.conv1 = nn.Conv2d(in_features, quarter, kernel_size=1)
        self.conv2 = nn.Conv2d(quarter, quarter, kernel_size=3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(quarter, in_features, kernel_size=1)
        self.norm1 = nn.BatchNorm2d(quarter, affine=True)
        self.norm2 = nn.BatchNorm2d(quarter, affine=True)
        self.norm3 = nn.BatchNorm2d(in_features, affine=True)
        self.stride = stride
        if stride != 1:
            self.skip = nn.Conv2d(in_features, in_features, kernel_size=1, stride=stride)
            self.norm4 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        if self.stride != 1:
            x = self.norm4(self.skip(x))
        return F.relu(out + x)


def _bottlenecks(prefix: str, width: int, count: int) -> nn.Sequential:
    """`count` stride-1 bottlenecks named as the official checkpoints name them (b1_0, b1_1, ...)."""
    return nn.Sequential(OrderedDict((f"{prefix}{i}", ResBottleneck(width, 1)) for i in range(count)))


class HEEstimator(nn.Module):
    """Head pose (yaw, pitch, roll as num_bins logits), translation and expression offsets from an
    image. forward(x) -> {"yaw", "pitch", "roll", "t", "exp"}. As in the official code, "yaw" is
    read from fc_roll and "roll" from fc_yaw, so checkpoints give the official angles."""

    def __init__(self, block_expansion, feature_channel, num_kp, image_channel, max_features, num_bins=66,
                 estimate_jacobian=True):
        super().__init__()
        self.conv1 = nn.Conv2d(image_channel, block_expansion, kernel_size=7, padding=3, stride=2)
        self.norm1 = nn.BatchNorm2d(block_expansion, affine=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(block_expansion, 256, kernel_size=1)
        self.norm2 = nn.BatchNorm2d(256, affine=True)
        self.block1 = _bottlenecks("b1_", 256, 3)
        self.conv3 = nn.Conv2d(256, 512, kernel_size=1)
        self.norm3 = nn.BatchNorm2d(512, affine=True)
        self.block2 = ResBottleneck(512, 2)
        self.block3 = _bottlenecks("b3_", 512, 3)
        self.conv4 = nn.Conv2d(512, 1024, kernel_size=1)
        self.norm4 = nn.BatchNorm2d(1024, affine=True)
        self.block4 = ResBottleneck(1024, 2)
        self.block5 = _bottlenecks("b5_", 1024, 5)
        self.conv5 = nn.Conv2d(1024, 2048, kernel_size=1)
        self.norm5 = nn.BatchNorm2d(2048, affine=True)
        self.block6 = ResBottleneck(2048, 2)
        self.block7 = _bottlenecks("b7_", 2048, 2)
        self.fc_roll = nn.Linear(2048, num_bins)
        self.fc_pitch = nn.Linear(2048, num_bins)
        self.fc_yaw = nn.Linear(2048, num_bins)
        self.fc_t = nn.Linear(2048, 3)
        self.fc_exp = nn.Linear(2048, 3 * num_kp)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = self.maxpool(F.relu(self.norm1(self.conv1(x))))
        out = self.block1(F.relu(self.norm2(self.conv2(out))))
        out = self.block3(self.block2(F.relu(self.norm3(self.conv3(out)))))
        out = self.block5(self.block4(F.relu(self.norm4(self.conv4(out)))))
        out = self.block7(self.block6(F.relu(self.norm5(self.conv5(out)))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return {"yaw": self.fc_roll(out), "pitch": self.fc_pitch(out), "roll": self.fc_yaw(out),
                "t": self.fc_t(out), "exp": self.fc_exp(out)}


class DenseMotionNetwork(nn.Module):
    """The dense 3-D motion. forward(feature (N, C, D, H, W), kp_driving, kp_source) -> {"mask"
    (N, K+1, D, H, W), "deformation" (N, D, H, W, 3)[, "occlusion_map" (N, 1, H, W)]}."""

    def __init__(self, block_expansion, num_blocks, max_features, num_kp, feature_channel, reshape_depth, compress,
                 estimate_occlusion_map=False, *, backend: str | None = None):
        super().__init__()
        self.hourglass = Hourglass(3, block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress, affine=True)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)
        self.num_kp = num_kp
        self.backend = backend

    def forward(self, feature: Tensor, kp_driving: KP, kp_source: KP) -> dict[str, Tensor]:
        return _motion.volume_dense_motion(self, feature, kp_driving["value"], kp_source["value"],
                                           jacobian(kp_driving, kp_source))[0]


class _VolumeGenerator(nn.Module):
    """What face-vid2vid's two generators share: the image encoded to a feature volume, warped by
    the dense motion (one fused pass), flattened back to 2-D and masked by the occlusion map."""

    def _build_encoder(self, image_channel, feature_channel, num_kp, block_expansion, max_features, num_down_blocks,
                       reshape_channel, reshape_depth, num_resblocks, estimate_occlusion_map, dense_motion_params,
                       first_kernel, backend):
        self.dense_motion_network = None
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp, feature_channel=feature_channel, estimate_occlusion_map=estimate_occlusion_map,
                backend=backend, **dense_motion_params)
        pad = first_kernel // 2
        self.first = SameBlock2d(image_channel, block_expansion, kernel_size=(first_kernel,) * 2, padding=(pad, pad))
        widths = [min(max_features, block_expansion * 2 ** i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock(2, widths[i], widths[i + 1]) for i in range(num_down_blocks))
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1, stride=1)
        self.reshape_channel, self.reshape_depth = reshape_channel, reshape_depth
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock(3, reshape_channel, kernel_size=3, padding=1))
        out_features = block_expansion * 2 ** num_down_blocks
        self.third = SameBlock2d(max_features, out_features, kernel_size=(3, 3), padding=(1, 1), lrelu=True)
        self.fourth = nn.Conv2d(out_features, out_features, kernel_size=1, stride=1)
        self.estimate_occlusion_map = estimate_occlusion_map
        self.image_channel = image_channel

    def deform_input(self, inp: Tensor, deformation: Tensor) -> Tensor:
        return _motion.deform_input(inp, deformation)

    def _warped_feature(self, source_image: Tensor, kp_driving: KP, kp_source: KP) -> tuple[Tensor, dict]:
        out, feature_3d = encode_volume(self, source_image)
        output_dict = {}
        if self.dense_motion_network is None:
            return out, output_dict
        dense, warped = _motion.volume_dense_motion(self.dense_motion_network, feature_3d, kp_driving["value"],
                                                    kp_source["value"], jacobian(kp_driving, kp_source))
        output_dict["mask"] = dense["mask"]
        out = self.fourth(self.third(warped.flatten(1, 2)))
        if "occlusion_map" in dense:
            output_dict["occlusion_map"] = dense["occlusion_map"]
            out = out * _motion.resize_like(dense["occlusion_map"], out)
        return out, output_dict


class OcclusionAwareGenerator(_VolumeGenerator):
    """forward(source_image, kp_driving, kp_source) -> {"prediction"[, "mask", "occlusion_map"]}:
    the warped volume decoded by 2-D residual and upsampling blocks."""

    def __init__(self, image_channel, feature_channel, num_kp, block_expansion, max_features, num_down_blocks,
                 reshape_channel, reshape_depth, num_resblocks, estimate_occlusion_map=False, dense_motion_params=None,
                 estimate_jacobian=False, *, backend: str | None = None):
        super().__init__()
        self._build_encoder(image_channel, feature_channel, num_kp, block_expansion, max_features, num_down_blocks,
                            reshape_channel, reshape_depth, num_resblocks, estimate_occlusion_map, dense_motion_params,
                            7, backend)
        out_features = block_expansion * 2 ** num_down_blocks
        self.resblocks_2d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_2d.add_module(f"2dr{i}", ResBlock(2, out_features, kernel_size=3, padding=1))
        widths = [max(block_expansion, block_expansion * 2 ** i) for i in range(num_down_blocks + 1)]
        self.up_blocks = nn.ModuleList(UpBlock(2, widths[i + 1], widths[i]) for i in reversed(range(num_down_blocks)))
        self.final = nn.Conv2d(block_expansion, image_channel, kernel_size=(7, 7), padding=(3, 3))

    def forward(self, source_image: Tensor, kp_driving: KP, kp_source: KP) -> dict[str, Tensor]:
        out, output_dict = self._warped_feature(source_image, kp_driving, kp_source)
        out = self.resblocks_2d(out)
        for block in self.up_blocks:
            out = block(out)
        output_dict["prediction"] = torch.sigmoid(self.final(out))
        return output_dict


class SPADEDecoder(SPADEImageDecoder):
    """face-vid2vid's SPADE decoder (no arguments): 256 -> 512 channels, six SPADE residual
    blocks, two 2x upsamplings, sigmoid image."""

    def __init__(self):
        super().__init__(upscale=1, max_features=256, block_expansion=64, out_channels=64, num_down_blocks=2)


class OcclusionAwareSPADEGenerator(_VolumeGenerator):
    """forward(source_image, kp_driving, kp_source) -> {"prediction"[, "mask", "occlusion_map"]}:
    the warped volume decoded by the SPADE decoder."""

    def __init__(self, image_channel, feature_channel, num_kp, block_expansion, max_features, num_down_blocks,
                 reshape_channel, reshape_depth, num_resblocks, estimate_occlusion_map=False, dense_motion_params=None,
                 estimate_jacobian=False, *, backend: str | None = None):
        super().__init__()
        self._build_encoder(image_channel, feature_channel, num_kp, block_expansion, max_features, num_down_blocks,
                            reshape_channel, reshape_depth, num_resblocks, estimate_occlusion_map, dense_motion_params,
                            3, backend)
        self.decoder = SPADEDecoder()

    def forward(self, source_image: Tensor, kp_driving: KP, kp_source: KP) -> dict[str, Tensor]:
        out, output_dict = self._warped_feature(source_image, kp_driving, kp_source)
        output_dict["prediction"] = self.decoder(out)
        return output_dict
