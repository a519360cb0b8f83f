"""Pure-PyTorch references: the readable definition of every op, written the way the
anchor projects write it, with the same signatures as pyface.ops."""
from pyface.reference.global_local_attention import global_local_attention
from pyface.reference.keypoint_heatmaps import keypoint_heatmaps
from pyface.reference.keypoint_warp import keypoint_warp
from pyface.reference.softmax_pool import softmax_pool
from pyface.reference.sparse_motion_warp import sparse_motion_warp
from pyface.reference.weighted_l1_loss import weighted_l1_loss

__all__ = ["global_local_attention", "keypoint_heatmaps", "keypoint_warp", "softmax_pool", "sparse_motion_warp",
           "weighted_l1_loss"]
