"""Models built on pyface.ops and pyface.nn."""
from pyface.models.glamor import GLAMORNet
from pyface.models.style_aware import KeypointExtractor, PoseExpressionNet, StyleMapping, StyleMappingLoss

__all__ = ["GLAMORNet", "KeypointExtractor", "PoseExpressionNet", "StyleMapping", "StyleMappingLoss"]
