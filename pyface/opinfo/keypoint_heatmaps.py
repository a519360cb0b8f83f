"""keypoint_heatmaps's description (docs/ops.md, keypoint_heatmaps)."""
from __future__ import annotations

import math

import torch

import pyface
from pyface.opinfo import BadInput, BenchCase, OpInfo, Sample, generator

SIZES = {2: (9, 13), 3: (5, 6, 7)}


def inputs(dims=2, n=2, k=3, spread=1.2, dtype=torch.float32, device="cpu", seed=0) -> dict:
    """Keypoints in [-spread, spread]: spread > 1 puts some outside the grid, as keypoint
    detectors give them."""
    g = generator(seed)
    kp = lambda: (torch.rand(n, k, dims, generator=g, dtype=torch.float64) * 2 - 1) * spread  # noqa: E731
    return {"kp_driving": kp().to(device, dtype), "kp_source": kp().to(device, dtype)}


def _sample(spatial_size, variance=0.05, **kw) -> Sample:
    return Sample(inputs(len(spatial_size), **kw), {"spatial_size": tuple(spatial_size), "variance": variance})


def _opcheck(dims: int):
    def calls(device: str, suffix: str) -> list[tuple]:
        forward = getattr(torch.ops.pyface, f"keypoint_heatmaps_forward{suffix}").default
        backward = getattr(torch.ops.pyface, f"keypoint_heatmaps_backward{suffix}").default
        t = inputs(dims, device=device)
        size = list(SIZES[dims])
        grad = torch.rand(2, 4, *size, generator=generator(1)).to(device)
        return [(forward, (t["kp_driving"].clone().requires_grad_(), t["kp_source"].clone().requires_grad_(), size,
                           0.05)),
                (backward, (grad, t["kp_driving"], t["kp_source"], 0.05))]

    return calls


def _layout(device: str) -> Sample:
    t = inputs(2, k=4, device=device)
    t = {name: kp.transpose(0, 1).contiguous().transpose(0, 1) for name, kp in t.items()}
    return Sample(t, {"spatial_size": (8, 10), "variance": 0.05})


def _bench_inputs(shape, device, dtype):
    n, slots, *spatial = shape
    t = inputs(len(spatial), n=n, k=slots - 1, spread=1.1, dtype=dtype, device=device)
    return {**t, "spatial_size": tuple(spatial)}


def _bench_bytes(inputs: dict, with_backward: bool) -> int:
    n, k, _ = inputs["kp_driving"].shape
    maps = n * (k + 1) * math.prod(inputs["spatial_size"]) * inputs["kp_driving"].element_size()
    return maps * (2 if with_backward else 1)  # write the maps; backward reads their gradient


def _valid() -> dict:
    return {**inputs(2), "spatial_size": (8, 8)}


INFO = OpInfo(
    name="keypoint_heatmaps",
    op=pyface.ops.keypoint_heatmaps,
    reference=pyface.reference.keypoint_heatmaps,
    samples={
        **{f"{dims}d-{k}-keypoints": (lambda device, d=dims, k=k: _sample(SIZES[d], k=k, device=device))
           for dims in SIZES for k in (1, 21)},
        # K = 0 leaves the background slot alone; the Triton kernel once read a keypoint that
        # did not exist (a crash in the interpreter)
        **{f"{dims}d-no-keypoints": (lambda device, d=dims: _sample(SIZES[d], k=0, device=device)) for dims in SIZES},
        **{"axes-" + "x".join(map(str, size)): (lambda device, s=size: _sample(s, device=device))
           for size in ((1, 1), (1, 17), (16, 1), (3, 1, 4), (1, 8, 8))},
        "far-outside-the-grid": lambda device: _sample((12, 12), variance=0.01, spread=3.0, device=device),
    },
    typed={"": lambda device, dtype: _sample((4, 6, 8), dtype=dtype, device=device)},
    layouts={"transposed_keypoints": _layout},
    opcheck={f"{dims}d": _opcheck(dims) for dims in SIZES},
    gradcheck={"2d": lambda: _sample((4, 5), variance=0.1, k=2, dtype=torch.float64),
               "3d": lambda: _sample((3, 4, 5), variance=0.1, k=2, dtype=torch.float64)},
    compiled={"": lambda device: _sample((4, 6, 8), device=device)},
    valid=_valid,
    bad_inputs=(
        BadInput("shape mismatch", lambda a: dict(a, kp_source=a["kp_source"][:, :2]), ValueError, "kp_source shape"),
        BadInput("keypoint dims", lambda a: dict(a, kp_driving=a["kp_driving"][..., :1], kp_source=a["kp_source"][..., :1],
                                                 spatial_size=(8,)), ValueError, r"kp_driving must be \(N, K, d\)"),
        BadInput("spatial size of other dims", lambda a: dict(a, spatial_size=(8, 8, 8)), ValueError,
                 "spatial_size must be 2 positive ints"),
        BadInput("non-positive size", lambda a: dict(a, spatial_size=(8, 0)), ValueError,
                 "spatial_size must be 2 positive ints"),
        BadInput("non-positive variance", lambda a: dict(a, variance=0.0), ValueError,
                 "variance must be a positive number"),
        BadInput("integer keypoints", lambda a: dict(a, kp_driving=a["kp_driving"].long()), TypeError,
                 "kp_driving must be float"),
        BadInput("dtype mismatch", lambda a: dict(a, kp_source=a["kp_source"].double()), TypeError,
                 "kp_source must have kp_driving's dtype"),
        BadInput("mixed devices", lambda a: dict(a, kp_source=a["kp_source"].to("meta")), ValueError,
                 "all tensors must be on one device"),
    ),
    bench=(
        BenchCase(
            op="keypoint_heatmaps",
            name="face-vid2vid",
            shape=(8, 16, 16, 64, 64),  # the maps: (N, K+1, D, H, W), K = 15
            make=_bench_inputs,
            grad_inputs=("kp_driving", "kp_source"),
            min_bytes=_bench_bytes,
            note="kp (N, 15, 3), maps (N, 16, 16, 64, 64)",
            tags=("quick",),
            positional=("kp_driving", "kp_source", "spatial_size"),
            main_input="kp_driving",
            work_shape=lambda inputs: (*inputs["kp_driving"].shape[:1], inputs["kp_driving"].shape[1] + 1,
                                       *inputs["spatial_size"]),
        ),
    ),
)
