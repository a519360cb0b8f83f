"""The public ops. Each accepts backend=None | "cpu" | "cuda" | "triton" | "reference"."""
from pyface.ops.global_local_attention import global_local_attention
from pyface.ops.keypoint_heatmaps import keypoint_heatmaps
from pyface.ops.keypoint_warp import keypoint_warp
from pyface.ops.softmax_pool import softmax_pool
from pyface.ops.sparse_motion_warp import sparse_motion_warp
from pyface.ops.weighted_l1_loss import weighted_l1_loss

__all__ = ["global_local_attention", "keypoint_heatmaps", "keypoint_warp", "softmax_pool", "sparse_motion_warp",
           "weighted_l1_loss"]
