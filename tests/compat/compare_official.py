"""pyface.compat against the official code itself (issue 18): each official class is built with
its official config and random weights (BatchNorm statistics included), its state dict is loaded
strictly into the pyface.compat class of the same name, both run on the same inputs, and the
worst relative difference of every output and of the gradients of the inputs and weights is
printed. Needs local copies of the official repositories (not part of pyface), laid out as for
write_official_manifests.py, and pyyaml:

    python tests/compat/compare_official.py OFFICIAL_DIR [--dtype float64|float32] [--only fomm]

The official modules run with their own motion path (grid_sample on repeated copies); the
compat modules with pyface's fused ops (--backend reference for the plain-PyTorch one).
`accelerate` is checked too: the official instance, accelerated in place, against itself."""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from write_official_manifests import FACEVID2VID, FOMM, LIVEPORTRAIT, import_from  # noqa: E402

import pyface.compat  # noqa: E402
from pyface.compat import facevid2vid, fomm, liveportrait  # noqa: E402

ARGS = argparse.Namespace(classes=None, train=False)


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Random weights, biases and BatchNorm statistics, so that no layer is a no-op."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("weight_u", "weight_v")):
                tensor.copy_(torch.nn.functional.normalize(torch.randn(tensor.shape, generator=generator), dim=0))
            elif name.endswith("down.weight"):  # the anti-aliasing kernel is fixed, not learned
                continue
            else:
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in ** 0.5)


def _leaves(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)


def _named(value, prefix=""):
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _named(value[key], f"{prefix}.{key}" if prefix else key)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def run(module, inputs, train: bool):
    """Outputs, and the gradients of a fixed random projection of them (inputs, then weights)."""
    module.train(train)
    inputs = copy.deepcopy(inputs)
    leaves = [t for t in _leaves(inputs) if t.is_floating_point()]
    for t in leaves:
        t.requires_grad_(True)
    module.zero_grad(set_to_none=True)
    outputs = module(*inputs)
    generator = torch.Generator().manual_seed(7)
    named = list(_named(outputs))
    loss = sum((value * torch.randn(value.shape, generator=generator, dtype=value.dtype)).sum()
               for _, value in named if value.requires_grad)
    loss.backward()
    grads = [t.grad for t in leaves] + [p.grad for p in module.parameters() if p.grad is not None]
    return {name: value.detach() for name, value in named}, grads


def report(label: str, mode: str, expected, got) -> float:
    (expected, expected_grads), (got, got_grads) = expected, got
    assert set(expected) == set(got), f"{label}: outputs {sorted(got)} != official {sorted(expected)}"
    worst_output = max(relative(got[k], expected[k]) for k in expected)
    assert len(got_grads) == len(expected_grads), f"{label}: gradient count differs"
    # A gradient that is zero in exact arithmetic (a conv bias just before a BatchNorm in training
    # mode) is rounding noise in both codes: measure each against the largest gradient's scale.
    floor = torch.finfo(expected_grads[0].dtype).eps ** 0.5 * max(e.norm().item() for e in expected_grads)
    worst_grad = max(((g - e).norm() / max(e.norm().item(), floor)).item()
                     for g, e in zip(got_grads, expected_grads))
    print(f"{label:52s} {mode:5s} outputs {worst_output:.1e}  gradients {worst_grad:.1e}  "
          f"({len(expected)} outputs, {len(expected_grads)} gradients)", flush=True)
    return max(worst_output, worst_grad)


def check(label, official, ours_class, kwargs, inputs, dtype, generator, backend, train_too=True):
    if ARGS.classes and label not in ARGS.classes:
        return 0.0
    train_too = train_too and ARGS.train
    randomize(official, generator)
    official = official.to(dtype)
    ours = ours_class(**kwargs).to(dtype)
    ours.load_state_dict(official.state_dict(), strict=True)
    for module in ours.modules():
        if hasattr(module, "backend"):
            module.backend = backend
    expected = run(official, inputs, train=False)
    worst = report(label, "eval", expected, run(ours, inputs, train=False))
    accelerated = pyface.compat.accelerate(official, backend=backend)  # in place
    worst = max(worst, report(label + " (accelerate)", "eval", expected, run(accelerated, inputs, train=False)))
    restored = pyface.compat.restore(accelerated)
    assert not hasattr(type(restored), "_pyface_accelerated_from") and not hasattr(restored, "backend"), label
    if train_too:  # last: training mode moves the BatchNorm statistics
        worst = max(worst, report(label, "train", run(official, inputs, train=True), run(ours, inputs, train=True)))
    return worst


def kp_dict(n, k, d, dtype, generator, jacobian=True):
    kp = {"value": (torch.rand(n, k, d, generator=generator, dtype=dtype) * 1.6 - 0.8)}
    if jacobian:
        kp["jacobian"] = torch.eye(d, dtype=dtype) + 0.2 * torch.randn(n, k, d, d, generator=generator, dtype=dtype)
    return kp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("official", type=Path)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--only", choices=["fomm", "facevid2vid", "liveportrait"])
    parser.add_argument("--backend", default=None, help="pyface backend of the compat modules (default: best)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="image side (a multiple of 128); feature volumes "
                        "are a quarter of it (float64 3-D convolutions on the CPU need --size 128)")
    parser.add_argument("--train", action="store_true", help="also compare in training mode (BatchNorm on the batch)")
    parser.add_argument("--classes", nargs="*", help="only these classes (for example fomm.KPDetector)")
    args = parser.parse_args()
    global ARGS
    ARGS = args
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    root = args.official
    worst = {}
    n = args.batch

    if args.only in (None, "fomm"):
        config = yaml.safe_load((root / FOMM / "config/vox-256.yaml").read_text())["model_params"]
        common = config["common_params"]
        keypoints, dense, generator = import_from(root, FOMM, ["modules.keypoint_detector", "modules.dense_motion",
                                                               "modules.generator"])
        image = torch.rand(n, 3, args.size, args.size, generator=g, dtype=dtype)
        kp_d, kp_s = kp_dict(n, 10, 2, dtype, g), kp_dict(n, 10, 2, dtype, g)
        kwargs = {**config["kp_detector_params"], **common}
        worst["fomm.KPDetector"] = check("fomm.KPDetector", keypoints.KPDetector(**kwargs), fomm.KPDetector, kwargs,
                                         (image,), dtype, g, args.backend)
        kwargs = {**config["generator_params"]["dense_motion_params"], "num_kp": 10, "num_channels": 3,
                  "estimate_occlusion_map": True}
        worst["fomm.DenseMotionNetwork"] = check("fomm.DenseMotionNetwork", dense.DenseMotionNetwork(**kwargs),
                                                 fomm.DenseMotionNetwork, kwargs, (image, kp_d, kp_s), dtype, g,
                                                 args.backend)
        kwargs = {**config["generator_params"], **common}
        worst["fomm.OcclusionAwareGenerator"] = check(
            "fomm.OcclusionAwareGenerator", generator.OcclusionAwareGenerator(**kwargs), fomm.OcclusionAwareGenerator,
            kwargs, (image, kp_d, kp_s), dtype, g, args.backend)

    if args.only in (None, "facevid2vid"):
        config = yaml.safe_load((root / FACEVID2VID / "config/vox-256.yaml").read_text())["model_params"]
        common = config["common_params"]
        keypoints, dense, generator = import_from(root, FACEVID2VID, ["modules.keypoint_detector",
                                                                      "modules.dense_motion", "modules.generator"])
        image = torch.rand(n, 3, args.size, args.size, generator=g, dtype=dtype)
        kwargs = {**config["kp_detector_params"], **common}
        worst["facevid2vid.KPDetector"] = check("facevid2vid.KPDetector", keypoints.KPDetector(**kwargs),
                                                facevid2vid.KPDetector, kwargs, (image,), dtype, g, args.backend)
        kwargs = {**config["he_estimator_params"], **common}
        worst["facevid2vid.HEEstimator"] = check("facevid2vid.HEEstimator", keypoints.HEEstimator(**kwargs),
                                                 facevid2vid.HEEstimator, kwargs, (image,), dtype, g, args.backend)
        kp_d, kp_s = kp_dict(n, 15, 3, dtype, g), kp_dict(n, 15, 3, dtype, g)
        feature = torch.randn(n, 32, 16, args.size // 4, args.size // 4, generator=g, dtype=dtype)
        kwargs = {**config["generator_params"]["dense_motion_params"], "num_kp": 15, "feature_channel": 32,
                  "estimate_occlusion_map": True}
        worst["facevid2vid.DenseMotionNetwork"] = check(
            "facevid2vid.DenseMotionNetwork", dense.DenseMotionNetwork(**kwargs), facevid2vid.DenseMotionNetwork,
            kwargs, (feature, kp_d, kp_s), dtype, g, args.backend)
        kwargs = {**config["generator_params"], **common}
        for name in ("OcclusionAwareGenerator", "OcclusionAwareSPADEGenerator"):
            worst[f"facevid2vid.{name}"] = check(
                f"facevid2vid.{name}", getattr(generator, name)(**kwargs), getattr(facevid2vid, name), kwargs,
                (image, kp_d, kp_s), dtype, g, args.backend)

    if args.only in (None, "liveportrait"):
        config = yaml.safe_load((root / LIVEPORTRAIT / "src/config/models.yaml").read_text())["model_params"]
        appearance, motion, warping, spade, stitching = import_from(root, LIVEPORTRAIT, [
            "src.modules.appearance_feature_extractor", "src.modules.motion_extractor",
            "src.modules.warping_network", "src.modules.spade_generator", "src.modules.stitching_retargeting_network"])
        image = torch.rand(n, 3, args.size, args.size, generator=g, dtype=dtype)
        kwargs = config["appearance_feature_extractor_params"]
        worst["liveportrait.AppearanceFeatureExtractor"] = check(
            "liveportrait.AppearanceFeatureExtractor", appearance.AppearanceFeatureExtractor(**kwargs),
            liveportrait.AppearanceFeatureExtractor, kwargs, (image,), dtype, g, args.backend)
        kwargs = config["motion_extractor_params"]
        worst["liveportrait.MotionExtractor"] = check(
            "liveportrait.MotionExtractor", motion.MotionExtractor(**kwargs), liveportrait.MotionExtractor, kwargs,
            (image,), dtype, g, args.backend)
        kp_d = torch.rand(n, 21, 3, generator=g, dtype=dtype) * 1.6 - 0.8
        kp_s = torch.rand(n, 21, 3, generator=g, dtype=dtype) * 1.6 - 0.8
        feature = torch.randn(n, 32, 16, args.size // 4, args.size // 4, generator=g, dtype=dtype)
        kwargs = config["warping_module_params"]
        worst["liveportrait.WarpingNetwork"] = check(
            "liveportrait.WarpingNetwork", warping.WarpingNetwork(**kwargs), liveportrait.WarpingNetwork, kwargs,
            (feature, kp_d, kp_s), dtype, g, args.backend)
        dense_kwargs = {**kwargs["dense_motion_params"], "num_kp": 21, "feature_channel": 32,
                        "estimate_occlusion_map": True}
        worst["liveportrait.DenseMotionNetwork"] = check(
            "liveportrait.DenseMotionNetwork", warping.DenseMotionNetwork(**dense_kwargs),
            liveportrait.DenseMotionNetwork, dense_kwargs, (feature, kp_d, kp_s), dtype, g, args.backend)
        kwargs = config["spade_generator_params"]
        warped = torch.randn(n, 256, args.size // 4, args.size // 4, generator=g, dtype=dtype)
        worst["liveportrait.SPADEDecoder"] = check(
            "liveportrait.SPADEDecoder", spade.SPADEDecoder(**kwargs), liveportrait.SPADEDecoder, kwargs, (warped,),
            dtype, g, args.backend, train_too=False)
        for part, kwargs in config["stitching_retargeting_module_params"].items():
            x = torch.randn(n, kwargs["input_size"], generator=g, dtype=dtype)
            worst[f"liveportrait.StitchingRetargetingNetwork[{part}]"] = check(
                f"liveportrait.StitchingRetargetingNetwork[{part}]", stitching.StitchingRetargetingNetwork(**kwargs),
                liveportrait.StitchingRetargetingNetwork, kwargs, (x,), dtype, g, args.backend)

    print(f"worst over {len(worst)} classes: {max(worst.values()):.1e} ({max(worst, key=worst.get)})")


if __name__ == "__main__":
    main()
