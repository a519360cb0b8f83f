"""The motion path as the FOMM family's own code computes it, for the eager and torch.compile
module rows (and as stand-ins for the official classes in tests/compat): the (N, K+1, *S, d)
sparse-motion grids, a (K+1)-fold copy of the source for grid_sample, the heatmaps on a
repeated grid, the mask-weighted sum of the grids and a second grid_sample of the feature.
The classes carry the official names and attributes and pyface.compat's layers (the same
weights as the module they are built from), so pyface.compat.accelerate recognises them as
it recognises the official ones."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyface.compat import _conventions, _motion, fomm, liveportrait
from pyface.reference.keypoint_heatmaps import keypoint_heatmaps
from pyface.reference.sparse_motion_warp import motion_batch


def random_weights(module: nn.Module, seed: int = 0) -> nn.Module:
    """Weights and BatchNorm statistics drawn from `seed` (fan-in scaled), so that no layer is an
    identity and every module built from the same config gets the same ones; returns `module`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point() or name.endswith("down.weight"):  # the anti-aliasing kernel is fixed
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) + 0.5)
            else:
                scale = (tensor[0].numel() if tensor.dim() > 1 else 1) ** -0.5
                tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * scale)
    return module


def hourglass_input(source: Tensor, kp_driving: Tensor, kp_source: Tensor, jacobian: Tensor | None,
                    variance: float) -> tuple[Tensor, Tensor, Tensor]:
    """(the hourglass's input, sparse_deformed (N, K+1, C, *S), the motions (N, K+1, *S, d))."""
    n, c, *spatial = source.shape
    slots = kp_source.shape[1] + 1
    repeated, motions = motion_batch(source, kp_source, kp_driving, jacobian)
    sparse_deformed = F.grid_sample(repeated, motions, align_corners=False).view(n, slots, c, *spatial)
    heatmap = keypoint_heatmaps(kp_driving, kp_source, spatial, variance=variance)
    inputs = torch.cat([heatmap.unsqueeze(2), sparse_deformed], dim=2).view(n, -1, *spatial)
    return inputs, sparse_deformed, motions.view(n, slots, *spatial, len(spatial))


def masked_warp(feature: Tensor, mask: Tensor, motions: Tensor) -> tuple[Tensor, Tensor]:
    """(feature warped, deformation): the mask-weighted sum of the motions, then grid_sample."""
    deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
    return F.grid_sample(feature, deformation, align_corners=False), deformation


def _dense_motion(net: nn.Module, source: Tensor, kp_driving, kp_source, variance: float):
    inputs, sparse_deformed, motions = hourglass_input(
        source, _conventions.value(kp_driving), _conventions.value(kp_source),
        _conventions.jacobian(kp_driving, kp_source), variance)
    prediction = net.hourglass(inputs)
    mask = F.softmax(net.mask(prediction), dim=1)
    deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
    return prediction, mask, deformation, sparse_deformed


def _adopt(double: nn.Module, built: nn.Module, attributes: tuple[str, ...]) -> None:
    for name, child in copy.deepcopy(built).named_children():
        double.add_module(name, child)
    for name in attributes:
        setattr(double, name, getattr(built, name))


class DenseMotionNetwork(nn.Module):
    """LivePortrait's DenseMotionNetwork, computed as its code computes it."""

    def __init__(self, built: liveportrait.DenseMotionNetwork):
        super().__init__()
        _adopt(self, built, ("num_kp", "flag_estimate_occlusion_map"))

    def forward(self, feature, kp_driving, kp_source) -> dict[str, Tensor]:
        compressed = F.relu(self.norm(self.compress(feature)))
        prediction, mask, deformation, _ = _dense_motion(self, compressed, kp_driving, kp_source, 0.01)
        out = {"mask": mask, "deformation": deformation}
        if self.flag_estimate_occlusion_map:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.flatten(1, 2)))
        return out


class WarpingNetwork(nn.Module):
    """LivePortrait's WarpingNetwork, computed as its code computes it."""

    def __init__(self, built: liveportrait.WarpingNetwork):
        super().__init__()
        _adopt(self, built, ("upscale", "flag_use_occlusion_map", "estimate_occlusion_map"))
        self.dense_motion_network = DenseMotionNetwork(built.dense_motion_network)

    def forward(self, feature_3d, kp_driving, kp_source) -> dict[str, Tensor | None]:
        dense = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        out = F.grid_sample(feature_3d, dense["deformation"], align_corners=False)
        out = self.fourth(self.third(out.flatten(1, 2)))
        occlusion_map = dense.get("occlusion_map")
        if self.flag_use_occlusion_map and occlusion_map is not None:
            out = out * occlusion_map
        return {"occlusion_map": occlusion_map, "deformation": dense["deformation"], "out": out}


class FommDenseMotionNetwork(nn.Module):
    """FOMM's DenseMotionNetwork, computed as its code computes it (keypoint dicts, jacobians)."""

    def __init__(self, built: fomm.DenseMotionNetwork):
        super().__init__()
        _adopt(self, built, ("num_kp", "scale_factor", "kp_variance"))

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, Tensor]:
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        prediction, mask, deformation, sparse_deformed = _dense_motion(self, source_image, kp_driving, kp_source,
                                                                       self.kp_variance)
        out = {"sparse_deformed": sparse_deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out


class FommOcclusionAwareGenerator(nn.Module):
    """FOMM's OcclusionAwareGenerator, computed as its code computes it."""

    def __init__(self, built: fomm.OcclusionAwareGenerator):
        super().__init__()
        _adopt(self, built, ("estimate_occlusion_map", "num_channels"))
        self.dense_motion_network = FommDenseMotionNetwork(built.dense_motion_network)

    def deform_input(self, inp: Tensor, deformation: Tensor) -> Tensor:
        return _conventions.deform_input(inp, deformation)

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, Tensor]:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        dense = self.dense_motion_network(source_image, kp_driving, kp_source)
        output_dict = {"mask": dense["mask"], "sparse_deformed": dense["sparse_deformed"]}
        out = self.deform_input(out, dense["deformation"])
        if "occlusion_map" in dense:
            output_dict["occlusion_map"] = dense["occlusion_map"]
            out = out * _motion.resize_like(dense["occlusion_map"], out)
        output_dict["deformed"] = self.deform_input(source_image, dense["deformation"])
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        output_dict["prediction"] = torch.sigmoid(self.final(out))
        return output_dict


# the official names, which accelerate reads
FommDenseMotionNetwork.__name__ = FommDenseMotionNetwork.__qualname__ = "DenseMotionNetwork"
FommOcclusionAwareGenerator.__name__ = FommOcclusionAwareGenerator.__qualname__ = "OcclusionAwareGenerator"
