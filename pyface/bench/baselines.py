"""What the eager and torch.compile rows time for the two warps: the code the FOMM family
writes, plain grid_sample on the reference's motions. pyface.reference adds its rule for
positions that are not finite (NaN, one more pass over the output, about a third of the
reference's CPU forward at the FOMM size); the users pyface is measured against do not
write that pass, so the baselines leave it out. On finite inputs the two agree exactly."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pyface.reference.keypoint_warp import mask_weighted_deformation
from pyface.reference.sparse_motion_warp import motion_batch


def keypoint_warp(feature, kp_source, kp_driving, mask, jacobian=None, *, mask_logits=False, align_corners=False,
                  padding_mode="zeros", return_deformation=False) -> Tensor | tuple[Tensor, Tensor]:
    deformation = mask_weighted_deformation(kp_source, kp_driving, mask, jacobian, mask_logits)
    output = F.grid_sample(feature, deformation, mode="bilinear", padding_mode=padding_mode,
                           align_corners=align_corners)
    return (output, deformation) if return_deformation else output


def sparse_motion_warp(feature, kp_source, kp_driving, jacobian=None, *, align_corners=False, padding_mode="zeros") -> Tensor:
    repeated, motions = motion_batch(feature, kp_source, kp_driving, jacobian)
    warped = F.grid_sample(repeated, motions, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
    n, k = kp_source.shape[:2]
    return warped.view(n, k + 1, *feature.shape[1:])
