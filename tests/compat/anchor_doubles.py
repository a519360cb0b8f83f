"""Stand-ins for the official modules, for tests that cannot import the official code (it is not
part of pyface): classes with the official names and attributes whose forwards compute the
motion the way the anchors' code does, in plain PyTorch (the (N, K+1, *S, d) sparse-motion
grids, a (K+1)-fold copy of the source for grid_sample, the mask-weighted sum of the grids, a
second grid_sample of the feature). Their layers are pyface.compat's, so their state dicts are
the official ones. tests/compat/compare_official.py runs the same checks against the official
code itself."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyface.compat import _conventions, fomm, liveportrait


def _anchor_dense_motion(net: nn.Module, source, kp_driving, kp_source, variance: float):
    """(hourglass prediction, softmaxed mask, deformation, sparse_deformed) as the anchors compute them."""
    n, c, *spatial = source.shape
    slots = net.num_kp + 1
    motions = _conventions.create_sparse_motions(source, kp_driving, kp_source)  # (N, K+1, *S, d)
    repeated = source.unsqueeze(1).expand(n, slots, c, *spatial).reshape(n * slots, c, *spatial)
    grids = motions.reshape(n * slots, *spatial, len(spatial))
    sparse_deformed = F.grid_sample(repeated, grids, align_corners=False).view(n, slots, c, *spatial)
    gaussians = (_conventions.kp2gaussian(kp_driving, spatial, variance)
                 - _conventions.kp2gaussian(kp_source, spatial, variance))
    heatmap = torch.cat([torch.zeros_like(gaussians[:, :1]), gaussians], dim=1)
    prediction = net.hourglass(torch.cat([heatmap.unsqueeze(2), sparse_deformed], dim=2).flatten(1, 2))
    mask = F.softmax(net.mask(prediction), dim=1)
    deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
    return prediction, mask, deformation, sparse_deformed


def _adopt(double: nn.Module, built: nn.Module, attributes: tuple[str, ...]) -> None:
    for name, child in built.named_children():
        double.add_module(name, child)
    for name in attributes:
        setattr(double, name, getattr(built, name))


class DenseMotionNetwork(nn.Module):
    """LivePortrait's DenseMotionNetwork as its code computes it."""

    def __init__(self, built: liveportrait.DenseMotionNetwork):
        super().__init__()
        _adopt(self, built, ("num_kp", "flag_estimate_occlusion_map"))

    def forward(self, feature, kp_driving, kp_source):
        compressed = F.relu(self.norm(self.compress(feature)))
        prediction, mask, deformation, _ = _anchor_dense_motion(self, compressed, kp_driving, kp_source, 0.01)
        out = {"mask": mask, "deformation": deformation}
        if self.flag_estimate_occlusion_map:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.flatten(1, 2)))
        return out


class WarpingNetwork(nn.Module):
    """LivePortrait's WarpingNetwork as its code computes it."""

    def __init__(self, built: liveportrait.WarpingNetwork):
        super().__init__()
        _adopt(self, built, ("upscale", "flag_use_occlusion_map", "estimate_occlusion_map"))
        self.dense_motion_network = DenseMotionNetwork(built.dense_motion_network)

    def forward(self, feature_3d, kp_driving, kp_source):
        dense = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        out = F.grid_sample(feature_3d, dense["deformation"], align_corners=False)
        out = self.fourth(self.third(out.flatten(1, 2)))
        occlusion_map = dense.get("occlusion_map")
        if self.flag_use_occlusion_map and occlusion_map is not None:
            out = out * occlusion_map
        return {"occlusion_map": occlusion_map, "deformation": dense["deformation"], "out": out}


class FommDenseMotionNetwork(nn.Module):
    """FOMM's DenseMotionNetwork as its code computes it (keypoint dicts with jacobians)."""

    def __init__(self, built: fomm.DenseMotionNetwork):
        super().__init__()
        _adopt(self, built, ("num_kp", "scale_factor", "kp_variance"))

    def forward(self, source_image, kp_driving, kp_source):
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        prediction, mask, deformation, sparse_deformed = _anchor_dense_motion(
            self, source_image, kp_driving, kp_source, self.kp_variance)
        out = {"sparse_deformed": sparse_deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out


FommDenseMotionNetwork.__name__ = "DenseMotionNetwork"  # the official name, which accelerate reads
