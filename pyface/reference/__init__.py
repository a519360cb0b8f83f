"""Pure-PyTorch references: the readable definition of every op, written the way the
anchor projects write it, with the same signatures as pyface.ops."""
from pyface.reference.weighted_l1_loss import weighted_l1_loss

__all__ = ["weighted_l1_loss"]
