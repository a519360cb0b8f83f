"""accelerate / restore: an official FOMM, face-vid2vid or LivePortrait module (from the user's
own checkout) switched in place to the motion path on pyface's kernels, and back.

A module is recognised by its class name and the attributes its forward reads; its class is
swapped for a subclass whose forward is the pyface.compat one (which reads only those
attributes), so its parameters, buffers, hooks and state-dict names stay as they are. restore
swaps the official class back."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

_ACCELERATED_FROM = "_pyface_accelerated_from"  # class attribute of a swapped-in class: the official one


def _has(*names: str) -> Callable[[nn.Module], bool]:
    return lambda module: all(hasattr(module, name) for name in names)


def _rules() -> list[tuple[str, Callable[[nn.Module], bool], type]]:
    """(official class name, how to tell the project's module by its attributes, our class)."""
    from pyface.compat import facevid2vid, fomm, liveportrait

    return [
        ("DenseMotionNetwork", lambda m: _has("hourglass", "mask", "occlusion", "kp_variance", "scale_factor")(m)
         and not hasattr(m, "compress"), fomm.DenseMotionNetwork),
        ("DenseMotionNetwork", lambda m: _has("hourglass", "mask", "compress", "norm", "flag_estimate_occlusion_map")(m),
         liveportrait.DenseMotionNetwork),
        ("DenseMotionNetwork", lambda m: _has("hourglass", "mask", "compress", "norm", "occlusion")(m)
         and not hasattr(m, "flag_estimate_occlusion_map"), facevid2vid.DenseMotionNetwork),
        ("OcclusionAwareGenerator", _has("dense_motion_network", "first", "down_blocks", "bottleneck", "up_blocks",
                                         "final"), fomm.OcclusionAwareGenerator),
        ("OcclusionAwareGenerator", _has("dense_motion_network", "first", "down_blocks", "second", "resblocks_3d",
                                         "third", "fourth", "resblocks_2d", "up_blocks", "final", "reshape_channel",
                                         "reshape_depth"), facevid2vid.OcclusionAwareGenerator),
        ("OcclusionAwareSPADEGenerator", _has("dense_motion_network", "first", "down_blocks", "second",
                                              "resblocks_3d", "third", "fourth", "decoder", "reshape_channel",
                                              "reshape_depth"), facevid2vid.OcclusionAwareSPADEGenerator),
        ("WarpingNetwork", _has("dense_motion_network", "third", "fourth", "flag_use_occlusion_map"),
         liveportrait.WarpingNetwork),
    ]


_SWAPPED: dict[tuple[type, type], type] = {}


def _swapped_class(official: type, ours: type) -> type:
    key = (official, ours)
    if key not in _SWAPPED:
        _SWAPPED[key] = type(official.__name__, (ours, official), {
            _ACCELERATED_FROM: official, "__module__": official.__module__,
            "__doc__": f"{official.__module__}.{official.__qualname__} with its motion path on pyface's kernels "
                       f"(pyface.compat.accelerate; pyface.compat.restore undoes it)",
        })
    return _SWAPPED[key]


def _is_ours(module: nn.Module) -> bool:
    return type(module).__module__.startswith("pyface.compat")


def accelerate(module: nn.Module, backend: str | None = None) -> nn.Module:
    """Switches every official FOMM / face-vid2vid / LivePortrait dense-motion network, generator
    and warping network in `module` (itself included) to pyface's fused motion path, in place,
    and returns `module`. backend: the pyface backend of the ops (None: the best one built;
    "reference": the plain-PyTorch formulation). Weights, buffers and outputs (to float rounding)
    are unchanged; other modules are left alone. Modules from pyface.compat only take `backend`."""
    rules = _rules()
    for child in module.modules():
        if not _is_ours(child) and not hasattr(type(child), _ACCELERATED_FROM):
            ours = next((cls for name, matches, cls in rules if type(child).__name__ == name and matches(child)), None)
            if ours is None:
                continue
            child.__class__ = _swapped_class(type(child), ours)
        elif not hasattr(child, "backend"):  # ours, without a motion path (an accelerated one has it)
            continue
        child.backend = backend
    return module


def restore(module: nn.Module) -> nn.Module:
    """Undoes accelerate on every module in `module`, in place, and returns `module`."""
    for child in module.modules():
        official = getattr(type(child), _ACCELERATED_FROM, None)
        if official is not None:
            child.__class__ = official
            del child.backend
    return module
