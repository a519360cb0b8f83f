"""Drop-ins for the FOMM family on pyface's kernels.

- pyface.compat.fomm, .facevid2vid, .liveportrait: the official classes (same names, constructor
  arguments, state-dict names, forward signatures and outputs) with their motion paths on
  pyface.ops, and the anchors' motion functions with their argument order.
- accelerate(module) / restore(module): an official module from your own checkout switched to
  the fused motion path in place, and back.
"""
from pyface.compat import facevid2vid, fomm, liveportrait
from pyface.compat._accelerate import accelerate, restore

__all__ = ["accelerate", "restore", "fomm", "facevid2vid", "liveportrait"]
