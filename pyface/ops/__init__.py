"""The public ops. Each accepts backend=None | "cpu" | "cuda" | "triton" | "reference"."""
from pyface.ops.weighted_l1_loss import weighted_l1_loss

__all__ = ["weighted_l1_loss"]
