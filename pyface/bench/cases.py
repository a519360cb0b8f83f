"""The benchmark cases: one list drives `pyface bench` and the pytest-benchmark tests.

A case builds fresh random inputs (never zeros) for a device and dtype, says which of them
carry gradients, and how many bytes the op must move at the least, which turns a time into
an achieved bandwidth.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import pyface
from pyface.bench import baselines

# CPU runs scale the batch so the input stays near this many elements (and say so).
CPU_ELEMENT_BUDGET = 4 * 2**20
QUICK_ELEMENT_BUDGET = 2**18


@dataclass(frozen=True)
class Case:
    op: str
    name: str
    shape: tuple[int, ...]  # the main input's shape in docs/ops.md; shape[0] is the batch
    make: Callable[[tuple[int, ...], torch.device, torch.dtype], dict]  # shape -> kwargs of the op
    grad_inputs: tuple[str, ...]  # inputs that require grad in forward+backward
    min_bytes: Callable[[dict, bool], int]  # (inputs, with_backward) -> bytes moved at the least
    note: str = ""
    tags: tuple[str, ...] = field(default=())
    positional: tuple[str, ...] = ("input", "target")  # inputs passed by position, in order
    main_input: str = "input"  # the input whose shape is `shape`
    cpu_batch: int | None = None  # the batch of a full CPU run, when not set by the element budget
    # The correctness check's relative error bound, when the dtype's default does not fit the
    # op (see the warping cases).
    tolerance: float | None = None
    # The shape the report shows, when the main input's does not describe the work (the
    # heatmaps' keypoints say less than the maps written).
    work_shape: Callable[[dict], tuple[int, ...]] | None = None

    def batch_for(self, device: torch.device, quick: bool) -> int:
        if device.type == "cpu" and not quick and self.cpu_batch is not None:
            return self.cpu_batch
        budget = QUICK_ELEMENT_BUDGET if quick else (CPU_ELEMENT_BUDGET if device.type == "cpu" else None)
        if budget is None:
            return self.shape[0]
        per_sample = math.prod(self.shape[1:])
        return max(1, min(self.shape[0], budget // per_sample))

    def inputs(self, device: torch.device, dtype: torch.dtype, quick: bool = False) -> dict:
        shape = (self.batch_for(device, quick), *self.shape[1:])
        return self.make(shape, device, dtype)


def _nbytes(t) -> int:
    return 0 if t is None else t.numel() * t.element_size()


# --- weighted L1 loss (docs/ops.md) ----------------------------------------------------------


def _l1_inputs(with_weight: bool, with_labels: bool, num_classes: int = 19):
    def make(shape, device, dtype):
        generator = torch.Generator().manual_seed(0)
        n, _, *spatial = shape

        def rand(*size):
            return torch.rand(*size, generator=generator).to(device=device, dtype=dtype)

        kwargs = {"input": rand(*shape), "target": rand(*shape)}
        if with_weight:
            kwargs["weight"] = rand(n, 1, *spatial) + 0.5  # an attention map + beta, as ATVGnet uses it
        if with_labels:
            kwargs["labels"] = torch.randint(0, num_classes, (n, *spatial), generator=generator, dtype=torch.uint8).to(device)
            kwargs["class_weights"] = pyface.nn.StyleAwarePhotometricLoss().class_weights.to(device)
        return kwargs

    return make


def _l1_bytes(inputs: dict, with_backward: bool) -> int:
    read = sum(_nbytes(inputs.get(k)) for k in ("input", "target", "weight", "labels"))
    return read + (_nbytes(inputs["input"]) if with_backward else 0)  # + the input gradient


def _l1_case(name, shape, with_weight, with_labels, tags=()):
    return Case(
        op="weighted_l1_loss",
        name=name,
        shape=shape,
        make=_l1_inputs(with_weight, with_labels),
        grad_inputs=("input",),
        min_bytes=_l1_bytes,
        note=("weight (N,1,H,W)" if with_weight else "") + ("labels (N,H,W) uint8" if with_labels else ""),
        tags=tags,
    )


CASES: list[Case] = [
    _l1_case("ATVGnet", (160, 3, 128, 128), with_weight=True, with_labels=False),
    _l1_case("style-aware 256", (8, 3, 256, 256), with_weight=False, with_labels=True, tags=("quick",)),
    _l1_case("style-aware 512", (8, 3, 512, 512), with_weight=False, with_labels=True),
    _l1_case("large", (32, 3, 512, 512), with_weight=False, with_labels=True),
]

# --- spatial softmax attention pooling (docs/ops.md) -----------------------------------------


def _random_normal(generator, device, dtype, *size, scale=1.0):
    return (torch.randn(*size, generator=generator) * scale).to(device=device, dtype=dtype)


def _softmax_pool_inputs(shape, device, dtype):
    generator = torch.Generator().manual_seed(0)
    n, _, *spatial = shape
    return {
        "scores": _random_normal(generator, device, dtype, n, *spatial, scale=2.0),
        "values": _random_normal(generator, device, dtype, *shape),
    }


def _softmax_pool_bytes(inputs: dict, with_backward: bool) -> int:
    values = _nbytes(inputs["values"])
    return values * (2 if with_backward else 1)  # read the values; backward reads them again and writes their gradient


def _gla_inputs(face_dim: int, hidden: int):
    def make(shape, device, dtype):
        generator = torch.Generator().manual_seed(0)
        n, context_dim, *_ = shape
        inputs_dim = face_dim + context_dim
        return {
            "face": _random_normal(generator, device, dtype, n, face_dim),
            "context": _random_normal(generator, device, dtype, *shape).relu(),  # a ReLU feature map
            "w1": _random_normal(generator, device, dtype, hidden, inputs_dim, scale=inputs_dim ** -0.5),
            "b1": _random_normal(generator, device, dtype, hidden, scale=0.1),
            "w2": _random_normal(generator, device, dtype, hidden, scale=hidden ** -0.5),
            "b2": _random_normal(generator, device, dtype, 1),
            # GLAMOR-Net's BatchNorm, folded as in eval mode
            "hidden_scale": (torch.rand(hidden, generator=generator) + 0.5).to(device=device, dtype=dtype),
            "hidden_shift": _random_normal(generator, device, dtype, hidden, scale=0.1),
        }

    return make


def _gla_bytes(inputs: dict, with_backward: bool) -> int:
    context = _nbytes(inputs["context"])
    return context * (3 if with_backward else 1)  # read it; backward reads it again and writes its gradient


GLA_GRAD_INPUTS = ("face", "context", "w1", "b1", "w2", "hidden_scale", "hidden_shift")


def _gla_case(name, n, face_dim, context_dim, side, hidden, cpu_batch=None, tags=()):
    return Case(
        op="global_local_attention",
        name=name,
        shape=(n, context_dim, side, side),
        make=_gla_inputs(face_dim, hidden),
        grad_inputs=GLA_GRAD_INPUTS,
        min_bytes=_gla_bytes,
        note=f"face ({n}, {face_dim}), hidden {hidden}, folded BatchNorm",
        tags=tags,
        positional=("face", "context", "w1", "b1", "w2", "b2"),
        main_input="context",
        cpu_batch=cpu_batch,
    )


CASES += [
    # the CPU run takes batch 64, the size the issue measured eager and torch.compile at
    _gla_case("GLAMOR-Net", 256, 256, 256, 7, 128, cpu_batch=64, tags=("quick",)),
    _gla_case("scaled", 64, 512, 2048, 14, 512),
    Case(
        op="softmax_pool",
        name="CLIP-size",
        shape=(256, 2048, 7, 7),
        make=_softmax_pool_inputs,
        grad_inputs=("scores", "values"),
        min_bytes=_softmax_pool_bytes,
        note="scores (N, 7, 7)",
        tags=("quick",),
        positional=("scores", "values"),
        main_input="values",
    ),
]

# --- keypoint heatmaps (docs/ops.md) ---------------------------------------------------------


def _heatmap_inputs(shape, device, dtype):
    generator = torch.Generator().manual_seed(0)
    n, slots, *spatial = shape

    def keypoints():  # some outside [-1, 1], as keypoint detectors give them
        return ((torch.rand(n, slots - 1, len(spatial), generator=generator) * 2 - 1) * 1.1).to(device, dtype)

    return {"kp_driving": keypoints(), "kp_source": keypoints(), "spatial_size": tuple(spatial)}


def _heatmap_bytes(inputs: dict, with_backward: bool) -> int:
    n, k, _ = inputs["kp_driving"].shape
    maps = n * (k + 1) * math.prod(inputs["spatial_size"]) * inputs["kp_driving"].element_size()
    return maps * (2 if with_backward else 1)  # write the maps; backward reads their gradient


CASES += [
    Case(
        op="keypoint_heatmaps",
        name="face-vid2vid",
        shape=(8, 16, 16, 64, 64),  # the maps: (N, K+1, D, H, W), K = 15
        make=_heatmap_inputs,
        grad_inputs=("kp_driving", "kp_source"),
        min_bytes=_heatmap_bytes,
        note="kp (N, 15, 3), maps (N, 16, 16, 64, 64)",
        tags=("quick",),
        positional=("kp_driving", "kp_source", "spatial_size"),
        main_input="kp_driving",
        work_shape=lambda inputs: (*inputs["kp_driving"].shape[:1], inputs["kp_driving"].shape[1] + 1,
                                   *inputs["spatial_size"]),
    ),
]

# --- keypoint-driven warping (docs/ops.md) ---------------------------------------------------


def _warp_inputs(keypoints: int, with_jacobian: bool):
    def make(shape, device, dtype):
        generator = torch.Generator().manual_seed(0)
        n, _, *spatial = shape
        dims = len(spatial)

        def uniform(*size, scale=1.0):
            return ((torch.rand(*size, generator=generator) * 2 - 1) * scale).to(device, dtype)

        inputs = {
            "feature": torch.randn(*shape, generator=generator).to(device, dtype),
            "kp_source": uniform(n, keypoints, dims, scale=0.9),
            "kp_driving": uniform(n, keypoints, dims, scale=0.9),
            "mask": torch.randn(n, keypoints + 1, *spatial, generator=generator).to(device, dtype),  # logits
            "mask_logits": True,
        }
        if with_jacobian:
            inputs["jacobian"] = (torch.eye(dims) + uniform(n, keypoints, dims, dims, scale=0.2).cpu()).to(device, dtype)
        return inputs

    return make


def _warp_bytes(inputs: dict, with_backward: bool) -> int:
    feature, mask = _nbytes(inputs["feature"]), _nbytes(inputs["mask"])  # the output has the feature's size here
    forward = feature + mask + feature  # read feature and mask, write the output
    backward = feature + feature + feature + mask  # read d/d output and the feature, write d/d feature and d/d mask
    return forward + (backward if with_backward else 0)


def _warp_case(name, shape, keypoints, with_jacobian, cpu_batch=None, tags=()):
    grads = ("feature", "kp_source", "kp_driving", "mask") + (("jacobian",) if with_jacobian else ())
    return Case(
        op="keypoint_warp",
        name=name,
        shape=shape,
        make=_warp_inputs(keypoints, with_jacobian),
        grad_inputs=grads,
        min_bytes=_warp_bytes,
        note=f"K = {keypoints}, mask logits" + (", jacobians" if with_jacobian else ""),
        tags=tags,
        positional=("feature", "kp_source", "kp_driving", "mask"),
        main_input="feature",
        cpu_batch=cpu_batch,
        # Bilinear sampling is not differentiable across cell boundaries: a sample within
        # float32 rounding of one can land on the other side than in float64 and change its
        # gradient by O(1). One such point among 65K moves the keypoint and mask gradients
        # by ~5e-3 relative, for eager PyTorch as much as for pyface. The tests check these
        # gradients tightly on small grids and in float64.
        tolerance=2e-2,
    )


CASES += [
    _warp_case("FOMM vox-256", (16, 256, 64, 64), 10, with_jacobian=True),
    # the CPU run takes batch 1, the size the issue measured eager and torch.compile at
    _warp_case("face-vid2vid", (8, 32, 16, 64, 64), 15, with_jacobian=False, cpu_batch=1, tags=("quick",)),
    _warp_case("LivePortrait", (8, 32, 16, 64, 64), 21, with_jacobian=False, cpu_batch=2),
]


def _sparse_inputs(keypoints: int):
    warp_inputs = _warp_inputs(keypoints, with_jacobian=False)

    def make(shape, device, dtype):
        inputs = warp_inputs(shape, device, dtype)
        del inputs["mask"], inputs["mask_logits"]
        return inputs

    return make


def _sparse_bytes(inputs: dict, with_backward: bool) -> int:
    feature, slots = _nbytes(inputs["feature"]), inputs["kp_source"].shape[1] + 1
    forward = feature + slots * feature  # read the feature once, write K+1 warped copies
    backward = slots * feature + feature + feature  # read their gradient and the feature, write d/d feature
    return forward + (backward if with_backward else 0)


CASES += [
    Case(
        op="sparse_motion_warp",
        name="face-vid2vid",
        shape=(8, 4, 16, 64, 64),
        make=_sparse_inputs(15),
        grad_inputs=("feature", "kp_source", "kp_driving"),
        min_bytes=_sparse_bytes,
        note="K = 15, output (N, 16, 4, 16, 64, 64)",
        positional=("feature", "kp_source", "kp_driving"),
        main_input="feature",
        cpu_batch=2,
        tolerance=2e-2,  # bilinear sampling at cell boundaries, as for keypoint_warp above
    ),
]

# The op each case's name refers to: pyface's public op and the eager reference (the float64
# truth of every row); BASELINES: what the eager and torch.compile rows time, where that is
# not the reference itself.
BASELINES = {"keypoint_warp": baselines.keypoint_warp, "sparse_motion_warp": baselines.sparse_motion_warp}
OPS = {
    "weighted_l1_loss": (pyface.ops.weighted_l1_loss, pyface.reference.weighted_l1_loss),
    "global_local_attention": (pyface.ops.global_local_attention, pyface.reference.global_local_attention),
    "softmax_pool": (pyface.ops.softmax_pool, pyface.reference.softmax_pool),
    "keypoint_heatmaps": (pyface.ops.keypoint_heatmaps, pyface.reference.keypoint_heatmaps),
    "keypoint_warp": (pyface.ops.keypoint_warp, pyface.reference.keypoint_warp),
    "sparse_motion_warp": (pyface.ops.sparse_motion_warp, pyface.reference.sparse_motion_warp),
}


def select(ops: list[str] | None = None, quick: bool = False) -> list[Case]:
    chosen = [c for c in CASES if ops is None or c.op in ops]
    return [c for c in chosen if "quick" in c.tags] if quick else chosen
