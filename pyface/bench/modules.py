"""Whole motion modules and their motion paths: LivePortrait's WarpingNetwork and FOMM's dense
motion + generator as their official code computes them (eager, and under torch.compile),
against the same modules accelerated by pyface.compat.accelerate (the fused ops); and the motion
path alone (everything but the learned layers: heatmaps, sparse motions, mask softmax,
deformation, warp), both ways. Inference rows run under torch.inference_mode(). Before timing, each
implementation's outputs (and input gradients) are held to the eager module run in float64, as
the op rows are (pyface.bench.runner.judge); WarpingNetwork's to the eager float32 module's, as
its float64 3-D convolutions unfold their input past a CPU's memory (tests/compat checks it in
float64 at a smaller size). The float64 runs compute the convolutions that
pyface.nn.convolution.same_conv computes another way by it (_float64_truth)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pyface.bench import anchors
from pyface.bench.runner import Row, judge, mark_failed, time_group, timed_backends
from pyface.nn.convolution import is_same_conv, same_conv

TOLERANCE = 1e-4  # relative L2 of every output and input gradient against the truth


@dataclass(frozen=True)
class ModuleCase:
    name: str
    modes: tuple[str, ...]
    build: Callable[[torch.device, bool], tuple[Callable, Callable, dict]]  # -> (eager, pyface(backend), inputs)
    grad_inputs: tuple[str, ...]
    main_input: str
    note: str
    # the outputs the backward starts from (None: all); FOMM trains on "prediction" alone, and its
    # "deformed" (the image resampled for display) would add texel-edge flips of bilinear
    # sampling, where float32 rounding of the deformation moves a sample across a pixel edge
    trained_outputs: tuple[str, ...] | None = None
    float64_truth: bool = True  # else the truth is the eager float32 module
    # The generator's input gradient reaches the hourglass through the warp's sampling positions,
    # where bilinear sampling's gradient jumps at pixel edges: float32 rounding of the deformation,
    # in any order of summation, moves a few samples across one. That is up to about 1e-3 of the
    # gradient's norm here, for torch.compile of the eager module as for pyface (the eager module
    # happens to round as float64 does more often, as it sums in the same order).
    backward_tolerance: float = TOLERANCE


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _keypoints(n: int, k: int, d: int, seed: int, device) -> torch.Tensor:
    return (torch.rand(n, k, d, generator=_generator(seed)) * 1.6 - 0.8).to(device)


def _accelerated(eager: nn.Module) -> Callable[[str], nn.Module]:
    from pyface.compat import accelerate

    return lambda backend: accelerate(copy.deepcopy(eager), backend=backend)


def _warping_network(device: torch.device, quick: bool):
    from pyface.compat import liveportrait

    side = 32 if quick else 64
    built = liveportrait.WarpingNetwork(num_kp=21, block_expansion=64, max_features=512, num_down_blocks=2,
                                        reshape_channel=32, estimate_occlusion_map=True, dense_motion_params={
                                            "block_expansion": 32, "max_features": 1024, "num_blocks": 5,
                                            "reshape_depth": 16, "compress": 4})
    eager = anchors.WarpingNetwork(anchors.random_weights(built)).to(device).eval()
    inputs = {"feature_3d": torch.randn(1, 32, 16, side, side, generator=_generator(1)).to(device),
              "kp_driving": _keypoints(1, 21, 3, 2, device), "kp_source": _keypoints(1, 21, 3, 3, device)}
    return eager, _accelerated(eager), inputs


def _fomm_generator(device: torch.device, quick: bool):
    from pyface.compat import fomm

    side, n = (128, 1) if quick else (256, 1 if device.type == "cpu" else 8)
    built = fomm.OcclusionAwareGenerator(num_channels=3, num_kp=10, block_expansion=64, max_features=512,
                                         num_down_blocks=2, num_bottleneck_blocks=6, estimate_occlusion_map=True,
                                         estimate_jacobian=True, dense_motion_params={
                                             "block_expansion": 64, "max_features": 1024, "num_blocks": 5,
                                             "scale_factor": 0.25})
    eager = anchors.FommOcclusionAwareGenerator(anchors.random_weights(built)).to(device).eval()
    inputs = {"source_image": torch.rand(n, 3, side, side, generator=_generator(1)).to(device),
              "kp_driving": _fomm_keypoints(n, 2, device), "kp_source": _fomm_keypoints(n, 3, device)}
    return eager, _accelerated(eager), inputs


def _fomm_keypoints(n: int, seed: int, device) -> dict:
    jacobian = torch.eye(2) + 0.2 * torch.randn(n, 10, 2, 2, generator=_generator(seed + 10))
    return {"value": _keypoints(n, 10, 2, seed, device), "jacobian": jacobian.to(device)}


class _MotionPath(nn.Module):
    """The motion path around the learned layers, given the mask's logits: the hourglass's input
    from the source and the keypoints, the mask's softmax, the deformation and the warped feature."""

    def __init__(self, fused: bool, variance: float = 0.01, backend: str | None = None):
        super().__init__()
        self.fused, self.variance, self.backend = fused, variance, backend

    def forward(self, source, feature, kp_driving, kp_source, mask_logits, jacobian=None):
        from pyface.compat import _motion

        mask = torch.softmax(mask_logits, dim=1)
        if self.fused:
            hourglass_input, _ = _motion.hourglass_input(source, kp_driving, kp_source, jacobian, self.variance,
                                                         backend=self.backend)
            warped, deformation = _motion.masked_warp(feature, mask, kp_driving, kp_source, jacobian,
                                                      backend=self.backend)
        else:
            hourglass_input, _, motions = anchors.hourglass_input(source, kp_driving, kp_source, jacobian,
                                                                  self.variance)
            warped, deformation = anchors.masked_warp(feature, mask, motions)
        return {"hourglass_input": hourglass_input, "mask": mask, "deformation": deformation, "warped": warped}


def _liveportrait_motion_path(device: torch.device, quick: bool):
    side = 32 if quick else 64
    inputs = {"source": torch.randn(1, 4, 16, side, side, generator=_generator(1)).to(device),
              "feature": torch.randn(1, 32, 16, side, side, generator=_generator(2)).to(device),
              "kp_driving": _keypoints(1, 21, 3, 3, device), "kp_source": _keypoints(1, 21, 3, 4, device),
              "mask_logits": torch.randn(1, 22, 16, side, side, generator=_generator(5)).to(device)}
    return _MotionPath(fused=False), lambda backend: _MotionPath(fused=True, backend=backend), inputs


def _fomm_motion_path(device: torch.device, quick: bool):
    n = 1 if quick else (2 if device.type == "cpu" else 16)
    side = 32 if quick else 64
    kp_driving, kp_source = _fomm_keypoints(n, 2, device), _fomm_keypoints(n, 3, device)
    inputs = {"source": torch.rand(n, 3, side, side, generator=_generator(1)).to(device),
              "feature": torch.randn(n, 256, side, side, generator=_generator(2)).to(device),
              "kp_driving": kp_driving["value"], "kp_source": kp_source["value"],
              "mask_logits": torch.randn(n, 11, side, side, generator=_generator(5)).to(device),
              "jacobian": torch.linalg.solve(kp_driving["jacobian"], kp_source["jacobian"], left=False)}
    return _MotionPath(fused=False), lambda backend: _MotionPath(fused=True, backend=backend), inputs


def _dense_motion(dims: int):
    """pyface.nn.DenseMotion at FOMM's size (2-D: the 3-channel image at 64x64, 10 keypoints with
    jacobians, batch 2 on the CPU) or LivePortrait's (3-D: the 4 compressed channels at 16x64x64,
    21 keypoints, batch 1); its default hourglass. eager = the module on the reference backend."""
    def build(device: torch.device, quick: bool):
        from pyface.nn import DenseMotion

        side = 32 if quick else 64
        if dims == 2:
            n = 1 if quick else (2 if device.type == "cpu" else 16)
            config = {"feature_channels": 3, "num_keypoints": 10, "dims": 2}
            inputs = {"feature": torch.rand(n, 3, side, side, generator=_generator(1)).to(device),
                      "kp_source": _keypoints(n, 10, 2, 2, device), "kp_driving": _keypoints(n, 10, 2, 3, device),
                      "jacobian": _fomm_keypoints(n, 4, device)["jacobian"]}
        else:
            n = 1 if device.type == "cpu" else 4
            config = {"feature_channels": 4, "num_keypoints": 21, "dims": 3, "depth": 16}
            inputs = {"feature": torch.randn(n, 4, 16, side, side, generator=_generator(1)).to(device),
                      "kp_source": _keypoints(n, 21, 3, 2, device), "kp_driving": _keypoints(n, 21, 3, 3, device)}
        eager = anchors.random_weights(DenseMotion(**config, backend="reference")).to(device).eval()

        def with_backend(backend: str) -> nn.Module:
            module = DenseMotion(**config, backend=backend).to(device).eval()
            module.load_state_dict(eager.state_dict())
            return module

        return eager, with_backend, inputs

    return build


def module_cases() -> list[ModuleCase]:
    return [
        ModuleCase("LivePortrait-WarpingNetwork", ("inference",), _warping_network, (), "feature_3d",
                   "batch 1, feature 32x16x64x64, 21 keypoints; pyface = the module after pyface.compat.accelerate",
                   float64_truth=False),
        ModuleCase("FOMM-generator", ("inference", "forward+backward"), _fomm_generator, ("source_image",), "source_image",
                   "dense motion + OcclusionAwareGenerator at 256x256, 10 keypoints with jacobians (batch 1 on the "
                   "CPU, 8 on CUDA), trained on its prediction; pyface = the module after pyface.compat.accelerate",
                   trained_outputs=("prediction",), backward_tolerance=2e-3),
        ModuleCase("LivePortrait-motion-path", ("inference", "forward+backward"), _liveportrait_motion_path,
                   ("source", "feature", "kp_driving", "kp_source", "mask_logits"), "feature",
                   "heatmaps, sparse motions, mask softmax, deformation and warp of WarpingNetwork, no learned layers"),
        ModuleCase("FOMM-motion-path", ("inference", "forward+backward"), _fomm_motion_path,
                   ("source", "feature", "kp_driving", "kp_source", "mask_logits", "jacobian"), "feature",
                   "the same for FOMM's dense motion and generator warp at 64x64 (batch 2 on the CPU, 16 on CUDA)"),
        ModuleCase("DenseMotion-FOMM", ("inference", "forward+backward"), _dense_motion(2),
                   ("feature", "kp_source", "kp_driving", "jacobian"), "feature",
                   "pyface.nn.DenseMotion, 2-D, 3x64x64, 10 keypoints with jacobians (batch 2 on the CPU); eager = "
                   "the same module on the reference backend"),
        # Its gradients reach the feature and keypoints through the warps' sampling positions, where
        # bilinear sampling's gradient jumps at texel edges: float32 runs that round differently
        # disagree by ~7e-3 here, as the keypoint_warp op case at this size does against float64
        # (its bound: 2e-2)
        ModuleCase("DenseMotion-LivePortrait", ("inference", "forward+backward"), _dense_motion(3),
                   ("feature", "kp_source", "kp_driving"), "feature",
                   "pyface.nn.DenseMotion, 3-D, 4x16x64x64, 21 keypoints (batch 1 on the CPU); eager = the same "
                   "module on the reference backend", backward_tolerance=2e-2),
    ]


class _SameConv(nn.Module):
    """A float64 truth's convolution layer computed by same_conv (see _float64_truth)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return same_conv(x, self.layer.weight, self.layer.bias)


def _float64_truth(eager: nn.Module) -> nn.Module:
    """eager in float64, its same-padded convolutions through same_conv: float64 F.conv3d and
    F.conv2d unfold their input (25 GB for DenseMotion's 7x7x7 mask convolution at 16x64x64,
    3.6 GB for its occlusion one), where same_conv's DFT and tap-product paths do not; in float64
    they are the same sums (1e-14 apart, tests/test_convolution.py)."""
    truth = copy.deepcopy(eager).double()
    for parent in list(truth.modules()):
        for name, child in list(parent.named_children()):
            if is_same_conv(child):
                setattr(parent, name, _SameConv(child))
    return truth


def _outputs(result) -> dict[str, torch.Tensor]:
    return {key: value for key, value in result.items() if isinstance(value, torch.Tensor)}


def _leaves(inputs: dict, grad_inputs: tuple[str, ...], dtype: torch.dtype | None = None) -> dict:
    def fresh(name, value):
        if isinstance(value, dict):
            return {key: fresh(name, item) for key, item in value.items()}
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.detach().to(dtype or value.dtype, copy=True).requires_grad_(name in grad_inputs)
        return value

    return {name: fresh(name, value) for name, value in inputs.items()}


def _upstreams(outputs: dict[str, torch.Tensor], keys: tuple[str, ...] | None) -> dict[str, torch.Tensor]:
    generator = _generator(9)
    return {key: (torch.rand(value.shape, generator=generator) + 0.5).to(value.device, value.dtype)
            for key, value in outputs.items() if value.requires_grad and (keys is None or key in keys)}


def _run(module: Callable, inputs: dict, grad_inputs: tuple[str, ...], upstreams: dict,
         dtype: torch.dtype | None = None):
    """(outputs, input gradients) of one forward (and backward with grad_inputs), in `dtype`."""
    leaves = _leaves(inputs, grad_inputs, dtype)
    upstreams = {key: value.to(dtype or value.dtype) for key, value in upstreams.items()}
    if not grad_inputs:
        with torch.no_grad():
            return _outputs(module(**leaves)), []
    outputs = _outputs(module(**leaves))
    torch.autograd.backward([outputs[k] for k in upstreams], [upstreams[k] for k in upstreams])
    return {k: v.detach() for k, v in outputs.items()}, [leaves[name].grad for name in grad_inputs]


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float("inf") if not torch.isfinite(got).all() else ((got - want).norm() / want.norm()).item()


def _error(got, want) -> float:
    (outputs, grads), (want_outputs, want_grads) = got, want
    return max([_relative(outputs[k], want_outputs[k]) for k in want_outputs] +
               [_relative(g, w) for g, w in zip(grads, want_grads)])


def _step(module: Callable, inputs: dict, grad_inputs: tuple[str, ...], upstreams: dict) -> Callable[[], object]:
    leaves = _leaves(inputs, grad_inputs)

    if not grad_inputs:
        def inference():
            with torch.inference_mode():
                return module(**leaves)
        return inference

    def forward_backward():
        for value in leaves.values():
            if isinstance(value, torch.Tensor):
                value.grad = None
        outputs = _outputs(module(**leaves))
        torch.autograd.backward([outputs[k] for k in upstreams], [upstreams[k] for k in upstreams])

    return forward_backward


def run_module_case(case: ModuleCase, device: torch.device, quick: bool,
                    on_row: Callable[[Row], None] = lambda row: None) -> list[Row]:
    eager, make_pyface, inputs = case.build(device, quick)
    torch.compiler.reset()  # a fresh recompile budget, as for the op cases
    impls = {"eager": eager, "torch.compile": torch.compile(eager)}
    for backend in timed_backends(device):
        impls[f"pyface[{backend}]"] = make_pyface(backend)
    rows: list[Row] = []
    for mode in case.modes:
        grad_inputs = case.grad_inputs if mode == "forward+backward" else ()
        upstreams = _upstreams(_outputs(eager(**_leaves(inputs, grad_inputs))), case.trained_outputs) \
            if grad_inputs else {}
        if case.float64_truth:
            truth = _run(_float64_truth(eager), inputs, grad_inputs, upstreams, torch.float64)
            eager_error = _error(_run(eager, inputs, grad_inputs, upstreams), truth)
        else:
            truth, eager_error = _run(eager, inputs, grad_inputs, upstreams), 0.0
        group, steps = {}, {}
        for impl, module in impls.items():
            row = group[impl] = Row(op="module", case=case.name, shape=tuple(inputs[case.main_input].shape),
                                    batch_scaled=False, dtype="float32", mode=mode, impl=impl)
            try:
                row.max_rel_error = _error(_run(module, inputs, grad_inputs, upstreams), truth)
                tolerance = case.backward_tolerance if grad_inputs else TOLERANCE
                row.tolerance = judge(f"{case.name} {mode} {impl}", row.max_rel_error, tolerance, lambda: eager_error)
                steps[impl] = _step(module, inputs, grad_inputs, upstreams)
            except Exception as error:  # reported as a failed row; the run goes on
                mark_failed(row, error)
        time_group(group, steps, device, quick)
        for row in group.values():
            on_row(row)
        rows += group.values()
    return rows
