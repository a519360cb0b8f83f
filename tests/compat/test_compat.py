"""pyface.compat (issue 18): the official state-dict names and shapes (committed manifests, written
from the official code by write_official_manifests.py), the fused motion path against the same
modules on the reference backend (float64, outputs and every gradient), accelerate/restore on
stand-ins for the official classes, the anchors' functions, and export (torch.export,
AOTInductor in a fresh process, ONNX in onnxruntime). compare_official.py runs the comparison
against the official code itself, which is not part of pyface."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pyface.compat
from pyface.bench import anchors
from pyface.compat import facevid2vid, fomm, liveportrait

MANIFESTS = json.loads((Path(__file__).parent / "official_manifests.json").read_text())

# The official vox-256 / LivePortrait configs (config/vox-256.yaml, src/config/models.yaml).
FOMM_COMMON = {"num_kp": 10, "num_channels": 3, "estimate_jacobian": True}
FOMM_KP = {"temperature": 0.1, "block_expansion": 32, "max_features": 1024, "scale_factor": 0.25, "num_blocks": 5}
FOMM_GENERATOR = {"block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "num_bottleneck_blocks": 6,
                  "estimate_occlusion_map": True, "dense_motion_params": {
                      "block_expansion": 64, "max_features": 1024, "num_blocks": 5, "scale_factor": 0.25}}
FV_COMMON = {"num_kp": 15, "image_channel": 3, "feature_channel": 32, "estimate_jacobian": False}
FV_KP = {"temperature": 0.1, "block_expansion": 32, "max_features": 1024, "scale_factor": 0.25, "num_blocks": 5,
         "reshape_channel": 16384, "reshape_depth": 16}
FV_HE = {"block_expansion": 64, "max_features": 2048, "num_bins": 66}
FV_GENERATOR = {"block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "reshape_channel": 32,
                "reshape_depth": 16, "num_resblocks": 6, "estimate_occlusion_map": True, "dense_motion_params": {
                    "block_expansion": 32, "max_features": 1024, "num_blocks": 5, "reshape_depth": 16, "compress": 4}}
LP_APPEARANCE = {"image_channel": 3, "block_expansion": 64, "num_down_blocks": 2, "max_features": 512,
                 "reshape_channel": 32, "reshape_depth": 16, "num_resblocks": 6}
LP_WARPING = {"num_kp": 21, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "reshape_channel": 32,
              "estimate_occlusion_map": True, "dense_motion_params": {
                  "block_expansion": 32, "max_features": 1024, "num_blocks": 5, "reshape_depth": 16, "compress": 4}}
LP_STITCHING = {"stitching": {"input_size": 126, "hidden_sizes": [128, 128, 64], "output_size": 65},
                "lip": {"input_size": 65, "hidden_sizes": [128, 128, 64], "output_size": 63},
                "eye": {"input_size": 66, "hidden_sizes": [256, 256, 128, 128, 64], "output_size": 63}}


def _official_builds():
    yield "fomm.KPDetector", lambda: fomm.KPDetector(**FOMM_KP, **FOMM_COMMON)
    yield "fomm.OcclusionAwareGenerator", lambda: fomm.OcclusionAwareGenerator(**FOMM_GENERATOR, **FOMM_COMMON)
    yield "fomm.DenseMotionNetwork", lambda: fomm.OcclusionAwareGenerator(
        **FOMM_GENERATOR, **FOMM_COMMON).dense_motion_network
    yield "facevid2vid.KPDetector", lambda: facevid2vid.KPDetector(**FV_KP, **FV_COMMON)
    yield "facevid2vid.HEEstimator", lambda: facevid2vid.HEEstimator(**FV_HE, **FV_COMMON)
    yield "facevid2vid.OcclusionAwareGenerator", lambda: facevid2vid.OcclusionAwareGenerator(**FV_GENERATOR, **FV_COMMON)
    yield "facevid2vid.DenseMotionNetwork", lambda: facevid2vid.DenseMotionNetwork(
        num_kp=15, feature_channel=32, estimate_occlusion_map=True, **FV_GENERATOR["dense_motion_params"])
    yield "facevid2vid.OcclusionAwareSPADEGenerator", lambda: facevid2vid.OcclusionAwareSPADEGenerator(
        **FV_GENERATOR, **FV_COMMON)
    yield "liveportrait.AppearanceFeatureExtractor", lambda: liveportrait.AppearanceFeatureExtractor(**LP_APPEARANCE)
    yield "liveportrait.MotionExtractor", lambda: liveportrait.MotionExtractor(num_kp=21, backbone="convnextv2_tiny")
    yield "liveportrait.WarpingNetwork", lambda: liveportrait.WarpingNetwork(**LP_WARPING)
    yield "liveportrait.DenseMotionNetwork", lambda: liveportrait.DenseMotionNetwork(
        num_kp=21, feature_channel=32, estimate_occlusion_map=True, **LP_WARPING["dense_motion_params"])
    yield "liveportrait.SPADEDecoder", lambda: liveportrait.SPADEDecoder(
        upscale=2, block_expansion=64, max_features=512, num_down_blocks=2)
    for part, kwargs in LP_STITCHING.items():
        yield f"liveportrait.StitchingRetargetingNetwork[{part}]", lambda kwargs=kwargs: \
            liveportrait.StitchingRetargetingNetwork(**kwargs)


def test_every_official_class_has_a_manifest():
    assert sorted(name for name, _ in _official_builds()) == sorted(MANIFESTS)


@pytest.mark.parametrize("name, build", list(_official_builds()), ids=[name for name, _ in _official_builds()])
def test_state_dict_matches_the_official_one(name, build):
    module = build()
    got = {key: list(tensor.shape) for key, tensor in module.state_dict().items()}
    assert list(got.items()) == list(MANIFESTS[name].items())  # in the official order (optimizer states follow it)
    # and an official state dict (these names and shapes) loads strictly
    official = {key: torch.randn(shape) if shape else torch.tensor(3) for key, shape in MANIFESTS[name].items()}
    module.load_state_dict(official, strict=True)


# --- the fused motion path against the reference backend, on small configs ---------------------


def _kp(n, k, d, seed, jacobian=True):
    generator = torch.Generator().manual_seed(seed)
    kp = {"value": torch.rand(n, k, d, generator=generator, dtype=torch.float64) * 1.6 - 0.8}
    if jacobian:
        kp["jacobian"] = (torch.eye(d, dtype=torch.float64)
                          + 0.2 * torch.randn(n, k, d, d, generator=generator, dtype=torch.float64))
    return kp


def _outputs_and_gradients(module, inputs):
    """Every tensor output, and the gradients of a random projection of them with respect to
    the floating inputs and the parameters."""
    inputs = copy.deepcopy(inputs)
    leaves = [t for t in _tensors(inputs) if t.is_floating_point()]
    for leaf in leaves:
        leaf.requires_grad_(True)
    module.zero_grad(set_to_none=True)
    outputs = module(*inputs)
    outputs = outputs if isinstance(outputs, dict) else {"out": outputs}
    named = sorted((key, value) for key, value in outputs.items() if isinstance(value, torch.Tensor))
    generator = torch.Generator().manual_seed(1)
    sum((value * torch.randn(value.shape, generator=generator, dtype=value.dtype)).sum()
        for _, value in named).backward()
    grads = [leaf.grad for leaf in leaves] + [p.grad for p in module.parameters()]
    return {key: value.detach() for key, value in named}, grads


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _tensors(value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _assert_same(got, expected, rtol=1e-10):
    (outputs, grads), (expected_outputs, expected_grads) = got, expected
    assert outputs.keys() == expected_outputs.keys()
    for key in outputs:
        torch.testing.assert_close(outputs[key], expected_outputs[key], rtol=rtol, atol=rtol, msg=key)
    assert len(grads) == len(expected_grads)
    for i, (grad, expected_grad) in enumerate(zip(grads, expected_grads)):
        assert (grad is None) == (expected_grad is None), i
        if grad is not None:
            torch.testing.assert_close(grad, expected_grad, rtol=rtol, atol=rtol, msg=f"gradient {i}")


def _set_backend(module, backend):
    for child in module.modules():
        if hasattr(child, "backend"):
            child.backend = backend
    return module


def _small_cases():
    image = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fomm_motion = {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "scale_factor": 0.5}
    yield "fomm.DenseMotionNetwork", lambda: fomm.DenseMotionNetwork(
        num_kp=3, num_channels=3, estimate_occlusion_map=True, **fomm_motion), (image, _kp(2, 3, 2, 3), _kp(2, 3, 2, 4))
    for down in (1, 2):  # the feature at the deformation's size (one fused warp), then at half of it (resized)
        yield f"fomm.OcclusionAwareGenerator[{down} down]", lambda down=down: fomm.OcclusionAwareGenerator(
            num_channels=3, num_kp=3, block_expansion=4, max_features=16, num_down_blocks=down,
            num_bottleneck_blocks=1, estimate_occlusion_map=True, dense_motion_params=fomm_motion,
            estimate_jacobian=True), (image, _kp(2, 3, 2, 5), _kp(2, 3, 2, 6))
    volume_motion = {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "reshape_depth": 4, "compress": 2}
    feature = torch.randn(2, 4, 4, 8, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    yield "facevid2vid.DenseMotionNetwork", lambda: facevid2vid.DenseMotionNetwork(
        num_kp=3, feature_channel=4, estimate_occlusion_map=True, **volume_motion), \
        (feature, _kp(2, 3, 3, 8), _kp(2, 3, 3, 9))
    yield "facevid2vid.OcclusionAwareGenerator", lambda: facevid2vid.OcclusionAwareGenerator(
        image_channel=3, feature_channel=4, num_kp=3, block_expansion=4, max_features=16, num_down_blocks=1,
        reshape_channel=4, reshape_depth=4, num_resblocks=1, estimate_occlusion_map=True,
        dense_motion_params=volume_motion), (image[:, :, :16], _kp(2, 3, 3, 10), _kp(2, 3, 3, 11))
    yield "liveportrait.WarpingNetwork", lambda: liveportrait.WarpingNetwork(
        num_kp=3, block_expansion=4, max_features=16, num_down_blocks=1, reshape_channel=4,
        estimate_occlusion_map=True, dense_motion_params=volume_motion), \
        (feature, _kp(2, 3, 3, 12)["value"], _kp(2, 3, 3, 13)["value"])


@pytest.mark.parametrize("name, build, inputs", list(_small_cases()), ids=[c[0] for c in _small_cases()])
def test_fused_motion_path_matches_the_reference_backend(name, build, inputs):
    module = anchors.random_weights(build().double())
    for train in (False, True):
        module.train(train)
        reference = _outputs_and_gradients(_set_backend(copy.deepcopy(module), "reference"), inputs)
        _assert_same(_outputs_and_gradients(_set_backend(copy.deepcopy(module), None), inputs), reference)


# --- accelerate / restore, on stand-ins for the official classes --------------------------------


def _doubles():
    volume_motion = {"block_expansion": 4, "max_features": 16, "num_blocks": 2, "reshape_depth": 4, "compress": 2}
    feature = torch.randn(2, 4, 4, 8, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    yield "liveportrait.WarpingNetwork", lambda: anchors.WarpingNetwork(anchors.random_weights(liveportrait.WarpingNetwork(
        num_kp=3, block_expansion=4, max_features=16, num_down_blocks=1, reshape_channel=4,
        estimate_occlusion_map=True, dense_motion_params=volume_motion).double())), \
        (feature, _kp(2, 3, 3, 12)["value"], _kp(2, 3, 3, 13)["value"])
    image = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    yield "fomm.DenseMotionNetwork", lambda: anchors.FommDenseMotionNetwork(anchors.random_weights(fomm.DenseMotionNetwork(
        block_expansion=4, max_features=16, num_blocks=2, scale_factor=0.5, num_kp=3, num_channels=3,
        estimate_occlusion_map=True).double())), (image, _kp(2, 3, 2, 3), _kp(2, 3, 2, 4))


@pytest.mark.parametrize("name, build, inputs", list(_doubles()), ids=[c[0] for c in _doubles()])
def test_accelerate_keeps_the_outputs_and_restore_undoes_it(name, build, inputs):
    official = build().eval()
    official_class = type(official)
    keys = list(official.state_dict())
    expected = _outputs_and_gradients(official, inputs)

    assert pyface.compat.accelerate(official) is official
    assert type(official) is not official_class and isinstance(official, official_class)
    assert type(official).__name__ == official_class.__name__
    assert list(official.state_dict()) == keys
    _assert_same(_outputs_and_gradients(official, inputs), expected)
    pyface.compat.accelerate(official, backend="reference")  # again: only the backend changes
    assert all(child.backend == "reference" for child in official.modules() if hasattr(type(child), "_pyface_accelerated_from"))
    _assert_same(_outputs_and_gradients(official, inputs), expected)

    assert pyface.compat.restore(official) is official
    assert type(official) is official_class and not hasattr(official, "backend")
    assert all(type(child).__module__ != "pyface.compat._accelerate" for child in official.modules())
    _assert_same(_outputs_and_gradients(official, inputs), expected, rtol=0)


def test_accelerate_walks_submodules_and_leaves_the_rest_alone():
    build, inputs = next((b, i) for name, b, i in _doubles() if name == "liveportrait.WarpingNetwork")
    warping = build()
    head = torch.nn.Linear(4, 4)
    model = torch.nn.ModuleDict({"warp": warping, "head": head})
    pyface.compat.accelerate(model)
    assert type(model) is torch.nn.ModuleDict and type(head) is torch.nn.Linear
    assert hasattr(type(warping), "_pyface_accelerated_from")
    assert hasattr(type(warping.dense_motion_network), "_pyface_accelerated_from")
    assert type(warping.third) is pyface.compat._blocks.SameBlock2d  # learned layers are not touched
    pyface.compat.restore(model)
    assert type(warping) is anchors.WarpingNetwork


def test_accelerate_ignores_a_namesake_without_the_official_attributes():
    class WarpingNetwork(torch.nn.Module):  # same name, another model
        def forward(self, x):
            return x

    module = WarpingNetwork()
    pyface.compat.accelerate(module)
    assert type(module) is WarpingNetwork and not hasattr(module, "backend")


def test_accelerate_on_pyface_compat_modules_only_sets_the_backend():
    module = liveportrait.WarpingNetwork(num_kp=3, block_expansion=4, max_features=16, num_down_blocks=1,
                                         reshape_channel=4, dense_motion_params={
                                             "block_expansion": 4, "max_features": 16, "num_blocks": 2,
                                             "reshape_depth": 4, "compress": 2})
    pyface.compat.accelerate(module, backend="reference")
    assert type(module) is liveportrait.WarpingNetwork
    assert module.dense_motion_network.backend == "reference"


# --- the anchors' functions ---------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
def test_convention_helpers_agree_with_the_anchors_formulation(dims):
    generator = torch.Generator().manual_seed(3)
    spatial = (5, 7) if dims == 2 else (3, 5, 7)
    feature = torch.randn(2, 3, *spatial, generator=generator, dtype=torch.float64)
    kp_driving, kp_source = _kp(2, 4, dims, 20), _kp(2, 4, dims, 21)
    motions = fomm.create_sparse_motions(feature, kp_driving, kp_source)
    assert motions.shape == (2, 5, *spatial, dims)
    repeated = feature.unsqueeze(1).expand(2, 5, *feature.shape[1:]).flatten(0, 1)
    expected = F.grid_sample(repeated, motions.flatten(0, 1), align_corners=False).view(2, 5, 3, *spatial)
    torch.testing.assert_close(facevid2vid.create_deformed_feature(feature, kp_driving, kp_source), expected)
    torch.testing.assert_close(fomm.create_deformed_source_image(feature, kp_driving, kp_source), expected)

    gaussians = fomm.kp2gaussian(kp_driving, spatial, 0.01) - fomm.kp2gaussian(kp_source, spatial, 0.01)
    heatmaps = fomm.create_heatmap_representations(feature, kp_driving, kp_source)
    assert heatmaps.shape == (2, 5, 1, *spatial)
    torch.testing.assert_close(heatmaps[:, 1:, 0], gaussians)
    assert heatmaps[:, 0].abs().max() == 0

    mask = torch.softmax(torch.randn(2, 5, *spatial, generator=generator, dtype=torch.float64), dim=1)
    deformation = (motions * mask.unsqueeze(-1)).sum(1)
    warped, got_deformation = fomm.warp(feature, mask, kp_driving, kp_source)
    torch.testing.assert_close(got_deformation, deformation)
    torch.testing.assert_close(warped, fomm.deform_input(feature, deformation))


def test_create_deformed_feature_refuses_the_sparse_motions():
    feature = torch.randn(1, 2, 4, 5, 6)
    motions = torch.zeros(1, 4, 4, 5, 6, 3)
    with pytest.raises(TypeError, match="not the sparse motions"):
        liveportrait.create_deformed_feature(feature, motions, motions)


def test_deform_input_resizes_the_deformation_as_the_anchors_do():
    feature = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    deformation = torch.rand(1, 4, 4, 2, dtype=torch.float64) * 2 - 1
    resized = F.interpolate(deformation.permute(0, 3, 1, 2), size=(8, 8), mode="bilinear").permute(0, 2, 3, 1)
    torch.testing.assert_close(fomm.deform_input(feature, deformation), F.grid_sample(feature, resized))


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="dense_motion_params"):
        liveportrait.WarpingNetwork(num_kp=3, block_expansion=4, max_features=16, num_down_blocks=1, reshape_channel=4)
    with pytest.raises(ValueError, match="unknown backbone"):
        liveportrait.MotionExtractor(num_kp=21, backbone="convnextv2_base")


# --- export: LivePortrait's WarpingNetwork at its real size --------------------------------------


@pytest.fixture(scope="module")
def real_warping_network():
    torch.manual_seed(0)
    module = anchors.random_weights(liveportrait.WarpingNetwork(**LP_WARPING)).eval()
    generator = torch.Generator().manual_seed(5)
    inputs = (torch.randn(1, 32, 16, 64, 64, generator=generator),
              torch.rand(1, 21, 3, generator=generator) * 1.6 - 0.8,
              torch.rand(1, 21, 3, generator=generator) * 1.6 - 0.8)
    with torch.no_grad():
        expected = module(*inputs)
    program = torch.export.export(module, inputs)
    return module, inputs, expected, program


def test_torch_export_calls_the_pyface_ops(real_warping_network):
    _, inputs, expected, program = real_warping_network
    called = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert {"pyface.keypoint_heatmaps_forward.default", "pyface.sparse_motion_warp_forward.default",
            "pyface.keypoint_warp_forward.default"} <= called
    with torch.no_grad():
        got = program.module()(*inputs)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_aot_inductor_package_runs_in_a_fresh_process(real_warping_network, tmp_path):
    _, inputs, expected, program = real_warping_network
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "warping.pt2"))
    torch.save({"inputs": inputs, "expected": expected}, tmp_path / "io.pt")
    script = f"""
import torch, pyface  # pyface registers the ops the package calls
io = torch.load({str(tmp_path / "io.pt")!r})
got = torch._inductor.aoti_load_package({package!r})(*io["inputs"])
print(max((got[k] - io["expected"][k]).abs().max().item() for k in io["expected"]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-4


def test_onnx_export_runs_in_onnxruntime(real_warping_network, tmp_path):
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    import pyface.export

    _, inputs, expected, program = real_warping_network
    onnx_program = pyface.export.to_onnx(program, inputs, tmp_path / "warping.onnx")
    operators = {node.op_type for node in onnx_program.model_proto.graph.node}
    assert "GridSample" in operators and not any(node.domain.startswith("pyface")
                                                  for node in onnx_program.model_proto.graph.node)
    session = onnxruntime.InferenceSession(str(tmp_path / "warping.onnx"), providers=["CPUExecutionProvider"])
    feeds = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs)}
    got = dict(zip(["occlusion_map", "deformation", "out"], session.run(None, feeds)))
    # two libraries' float32 convolutions: their rounding grows with the magnitude of the sums,
    # so the bound scales with the largest value (`out`, up to 5.6, differed by 1.7e-4 on an
    # AVX2-only host, where oneDNN and onnxruntime pick other kernels than with AVX-512)
    for key in expected:
        largest = max(expected[key].abs().max().item(), 1.0)
        torch.testing.assert_close(torch.from_numpy(got[key]), expected[key], rtol=1e-4, atol=1e-4 * largest)
