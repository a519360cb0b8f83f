"""The motion path the three DenseMotionNetworks share, on pyface's ops: the keypoint heatmaps and
the source sampled under each keypoint's motion (the hourglass's input), the mask over the K+1
motions, and the dense deformation with the feature warped by it in one fused pass.

The official code builds the (N, K+1, *S, d) sparse-motion grids, a (K+1)-fold copy of the source
for grid_sample, and the mask-weighted sum of the grids, then samples the feature in a second
pass. Here keypoint_heatmaps, sparse_motion_warp and keypoint_warp form the motions on the spot.
`net.backend` ("reference" for the plain-PyTorch formulation) is passed to every op."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyface.ops import keypoint_heatmaps, keypoint_warp, sparse_motion_warp


def relative_jacobian(jacobian_source: Tensor | None, jacobian_driving: Tensor | None) -> Tensor | None:
    """J_s J_d^-1, the jacobian pyface's warps take; the anchors pass J_s and J_d and form it inside."""
    if jacobian_source is None or jacobian_driving is None:
        return None
    return torch.matmul(jacobian_source, torch.inverse(jacobian_driving))


def hourglass_input(source: Tensor, kp_driving: Tensor, kp_source: Tensor, jacobian: Tensor | None,
                    variance: float, align_corners: bool = False,
                    backend: str | None = None) -> tuple[Tensor, Tensor]:
    """The hourglass's input (N, (K+1)(C+1), *S), each motion's heatmap beside the source sampled
    under it, and the latter, sparse_deformed (N, K+1, C, *S)."""
    heatmap = keypoint_heatmaps(kp_driving, kp_source, tuple(source.shape[2:]), variance=variance, backend=backend)
    sparse_deformed = sparse_motion_warp(source, kp_source, kp_driving, jacobian, align_corners=align_corners,
                                         backend=backend)
    return torch.cat([heatmap.unsqueeze(2).to(source.dtype), sparse_deformed], dim=2).flatten(1, 2), sparse_deformed


def masked_warp(feature: Tensor, mask: Tensor, kp_driving: Tensor, kp_source: Tensor, jacobian: Tensor | None,
                align_corners: bool = False, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """(feature warped, deformation (N, *S, d)) by the mask-weighted motions, in one fused pass."""
    return keypoint_warp(feature, kp_source, kp_driving, mask, jacobian, align_corners=align_corners,
                         return_deformation=True, backend=backend)


def dense_motion(net: nn.Module, source: Tensor, kp_driving: Tensor, kp_source: Tensor, jacobian: Tensor | None,
                 variance: float, feature: Tensor | None = None, align_corners: bool = False) -> dict[str, Tensor]:
    """source (N, C, *S): what the motions are estimated from (FOMM: the downsampled image;
    face-vid2vid / LivePortrait: the compressed feature volume). kp_* (N, K, d) in the anchors'
    (x, y[, z]) order; jacobian (N, K, d, d) = J_s J_d^-1 or None.

    Returns "sparse_deformed" (N, K+1, C, *S), "prediction" (the hourglass's output), "mask"
    (N, K+1, *S, softmax over the motions), "deformation" (N, *S, d) and "warped": `feature`
    warped by the deformation when it has the size S (one fused pass), else None (the caller
    resizes the deformation, as the anchors do)."""
    backend = getattr(net, "backend", None)
    inputs, sparse_deformed = hourglass_input(source, kp_driving, kp_source, jacobian, variance, align_corners,
                                              backend)
    prediction = net.hourglass(inputs)
    mask = F.softmax(net.mask(prediction), dim=1)
    # The deformation comes with a warp; without a feature of this size, the (cheaper) source is warped.
    same_size = feature is not None and tuple(feature.shape[2:]) == tuple(source.shape[2:])
    warped, deformation = masked_warp(feature if same_size else source, mask, kp_driving, kp_source, jacobian,
                                      align_corners, backend)
    return {"sparse_deformed": sparse_deformed, "prediction": prediction, "mask": mask,
            "deformation": deformation, "warped": warped if same_size else None}


def deform_input(inp: Tensor, deformation: Tensor, align_corners: bool = False) -> Tensor:
    """grid_sample(inp, deformation), the deformation resized (bi/trilinearly) to inp's size first
    when the two differ: the anchors' OcclusionAwareGenerator.deform_input."""
    spatial = tuple(inp.shape[2:])
    if tuple(deformation.shape[1:-1]) != spatial:
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
        channels_first = deformation.movedim(-1, 1)
        deformation = F.interpolate(channels_first, size=spatial, mode=mode).movedim(1, -1)
    return F.grid_sample(inp, deformation, align_corners=align_corners)


def resize_like(occlusion_map: Tensor, out: Tensor) -> Tensor:
    """The occlusion map bilinearly resized to out's H, W when they differ (as the anchors do)."""
    if occlusion_map.shape[2:] != out.shape[2:]:
        return F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear")
    return occlusion_map


def volume_dense_motion(net: nn.Module, feature: Tensor, kp_driving: Tensor, kp_source: Tensor,
                        jacobian: Tensor | None) -> tuple[dict[str, Tensor], Tensor]:
    """face-vid2vid's and LivePortrait's DenseMotionNetwork on feature (N, C, D, H, W): the motions
    are estimated from the compressed feature (net.compress -> net.norm -> ReLU) and the full
    feature is warped in the same pass. Returns ({"mask", "deformation"[, "occlusion_map"]},
    the warped feature)."""
    compressed = F.relu(net.norm(net.compress(feature)))
    motion = dense_motion(net, compressed, kp_driving, kp_source, jacobian, 0.01, feature=feature)
    out = {"mask": motion["mask"], "deformation": motion["deformation"]}
    if net.occlusion is not None:  # a 2-D conv over the depth-stacked hourglass features
        prediction = motion["prediction"]
        out["occlusion_map"] = torch.sigmoid(net.occlusion(prediction.flatten(1, 2)))
    return out, motion["warped"]
