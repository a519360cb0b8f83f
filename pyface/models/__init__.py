"""Models built on pyface.ops and pyface.nn."""
from pyface.models.glamor import GLAMORNet

__all__ = ["GLAMORNet"]
