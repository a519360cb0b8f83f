"""First Order Motion Model (Siarohin et al., AliaksandrSiarohin/first-order-model) on pyface's
kernels: KPDetector, DenseMotionNetwork and OcclusionAwareGenerator with the official class
names, constructor arguments, state-dict names and forward signatures, so that

    generator = OcclusionAwareGenerator(**config["generator_params"], **config["common_params"])
    generator.load_state_dict(checkpoint["generator"], strict=True)

works with an official vox-256 checkpoint and gives the official outputs. The dense-motion path
(heatmaps, sparse motions, mask, deformation, feature warp) runs on pyface.ops; `backend=`
("reference" for the plain-PyTorch formulation) selects their implementation, and
`align_corners=True` reproduces checkpoints trained under torch < 1.3, whose grid_sample
sampled that way.

The anchors' motion functions (kp2gaussian, create_sparse_motions, ...) are here too, with their
argument order and keypoint dicts
({"value": (N, K, 2), "jacobian": (N, K, 2, 2)})."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pyface.compat import _motion
from pyface.compat._blocks import (
    AntiAliasInterpolation2d,
    DownBlock,
    Hourglass,
    KeypointDetector,
    ResBlock,
    SameBlock2d,
    UpBlock,
)
from pyface.compat._conventions import create_deformed_feature as create_deformed_source_image
from pyface.compat._conventions import (
    create_heatmap_representations,
    create_sparse_motions,
    deform_input,
    jacobian,
    kp2gaussian,
    make_coordinate_grid,
    warp,
)

__all__ = ["KPDetector", "DenseMotionNetwork", "OcclusionAwareGenerator", "make_coordinate_grid", "kp2gaussian",
           "create_heatmap_representations", "create_sparse_motions", "create_deformed_source_image", "deform_input",
           "warp"]

KP = dict  # {"value": (N, K, 2)[, "jacobian": (N, K, 2, 2)]}


class KPDetector(KeypointDetector):
    """Keypoints (and their jacobians) from an image: an hourglass, a softmax heatmap per
    keypoint at `temperature`, and its expected position. forward(x) -> {"value"[, "jacobian"]}."""

    def __init__(self, block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                 estimate_jacobian=False, scale_factor=1, single_jacobian_map=False, pad=0):
        super().__init__()
        self.predictor = Hourglass(2, block_expansion, num_channels, num_blocks, max_features)
        self._build_heads(2, num_kp, num_channels, temperature, estimate_jacobian, scale_factor, single_jacobian_map,
                          kernel_size=(7, 7), padding=pad)


def _dense_motion(net: nn.Module, source_image: Tensor, kp_driving: KP, kp_source: KP,
                  feature: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor | None]:
    """FOMM's DenseMotionNetwork forward on `net` (ours or an official instance), and `feature`
    warped by the deformation in the same pass when it has the deformation's size."""
    if net.scale_factor != 1:
        source_image = net.down(source_image)
    motion = _motion.dense_motion(net, source_image, kp_driving["value"], kp_source["value"],
                                  jacobian(kp_driving, kp_source), net.kp_variance, feature,
                                  getattr(net, "align_corners", False))
    out = {key: motion[key] for key in ("sparse_deformed", "mask", "deformation")}
    if net.occlusion is not None:
        out["occlusion_map"] = torch.sigmoid(net.occlusion(motion["prediction"]))
    return out, motion["warped"]


class DenseMotionNetwork(nn.Module):
    """The dense motion from the sparse keypoint motions. forward(source_image, kp_driving,
    kp_source) -> {"sparse_deformed" (N, K+1, C, h, w), "mask" (N, K+1, h, w), "deformation"
    (N, h, w, 2)[, "occlusion_map" (N, 1, h, w)]}, at the image's size times scale_factor."""

    def __init__(self, block_expansion, num_blocks, max_features, num_kp, num_channels, estimate_occlusion_map=False,
                 scale_factor=1, kp_variance=0.01, *, backend: str | None = None, align_corners: bool = False):
        super().__init__()
        self.hourglass = Hourglass(2, block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
                          if estimate_occlusion_map else None)
        self.num_kp, self.scale_factor, self.kp_variance = num_kp, scale_factor, kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)
        self.backend, self.align_corners = backend, align_corners

    def forward(self, source_image: Tensor, kp_driving: KP, kp_source: KP) -> dict[str, Tensor]:
        return _dense_motion(self, source_image, kp_driving, kp_source)[0]


class OcclusionAwareGenerator(nn.Module):
    """Encoder -> the feature warped by the dense motion and masked by the occlusion map ->
    residual bottleneck -> decoder. forward(source_image, kp_driving, kp_source) ->
    {"prediction", and with a dense-motion network "mask", "sparse_deformed", "deformed"
    (the image warped by the deformation)[, "occlusion_map"]}."""

    def __init__(self, num_channels, num_kp, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks,
                 estimate_occlusion_map=False, dense_motion_params=None, estimate_jacobian=False, *,
                 backend: str | None = None, align_corners: bool = False):
        super().__init__()
        self.dense_motion_network = None
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp, num_channels=num_channels, estimate_occlusion_map=estimate_occlusion_map,
                backend=backend, align_corners=align_corners, **dense_motion_params)
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        widths = [min(max_features, block_expansion * 2 ** i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock(2, widths[i], widths[i + 1]) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(UpBlock(2, widths[i + 1], widths[i]) for i in reversed(range(num_down_blocks)))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock(2, widths[-1], kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels
        self.align_corners = align_corners

    def deform_input(self, inp: Tensor, deformation: Tensor) -> Tensor:
        return _motion.deform_input(inp, deformation, getattr(self, "align_corners", False))

    def forward(self, source_image: Tensor, kp_driving: KP, kp_source: KP) -> dict[str, Tensor]:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        output_dict = {}
        if self.dense_motion_network is not None:
            dense, warped = _dense_motion(self.dense_motion_network, source_image, kp_driving, kp_source, feature=out)
            output_dict["mask"], output_dict["sparse_deformed"] = dense["mask"], dense["sparse_deformed"]
            deformation = dense["deformation"]
            out = warped if warped is not None else self.deform_input(out, deformation)
            if "occlusion_map" in dense:
                output_dict["occlusion_map"] = dense["occlusion_map"]
                out = out * _motion.resize_like(dense["occlusion_map"], out)
            output_dict["deformed"] = self.deform_input(source_image, deformation)
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        output_dict["prediction"] = torch.sigmoid(self.final(out))
        return output_dict
