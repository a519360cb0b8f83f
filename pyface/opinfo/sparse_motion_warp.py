"""sparse_motion_warp's description (docs/ops.md, sparse_motion_warp)."""
from __future__ import annotations

import itertools

import torch

import pyface
from pyface.opinfo import BadInput, BenchCase, OpInfo, Sample, generator, nbytes
from pyface.opinfo.keypoint_warp import bench_inputs
from pyface.opinfo.keypoint_warp import inputs as warp_inputs

SIZES = {2: (5, 7), 3: (3, 4, 6)}  # D != H != W


def inputs(dims=2, size=None, **options) -> dict:
    """keypoint_warp's inputs without the mask: feature (N, C, *S), keypoints, jacobians."""
    return warp_inputs(dims, sizes=(size or SIZES[dims], (1,) * dims), mask=False, **options)


def _sample(options: dict | None = None, **kw) -> Sample:
    return Sample(inputs(**kw), dict(options or {}))


def _on_the_border_bounds(dims: int, device: str) -> Sample:
    """torch's rule: a coordinate on a bound counts as clipped (found by fuzzing, bfloat16
    Triton). Identity motions on a 2-wide feature with align_corners put every position on a
    bound."""
    t = inputs(dims, size=(2,) * dims, jacobian=False, device=device)
    t["kp_source"].zero_()  # T_k(z) = z exactly, on the bounds in float32 as in float64
    t["kp_driving"].zero_()
    return Sample(t, {"align_corners": True, "padding_mode": "border"})


def _layout(device: str) -> Sample:
    t = inputs(2, device=device)
    t["feature"] = t["feature"].to(memory_format=torch.channels_last)
    t["jacobian"] = t["jacobian"].transpose(2, 3).contiguous().transpose(2, 3)
    return Sample(t)


def _opcheck(jacobian: bool):
    def calls(device: str, suffix: str) -> list[tuple]:
        t = inputs(2, jacobian=jacobian, device=device)
        forward = getattr(torch.ops.pyface, f"sparse_motion_warp_forward{suffix}").default
        backward = getattr(torch.ops.pyface, f"sparse_motion_warp_backward{suffix}").default
        args = (t["feature"], t["kp_source"], t["kp_driving"], t["jacobian"], False, 0)
        grad_output = torch.rand(forward(*args).shape, generator=generator(1)).to(device)
        return [(forward, tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)),
                (backward, (grad_output, *args[:4], False, 0, True, False))]

    return calls


def _bench_bytes(inputs: dict, with_backward: bool) -> int:
    feature, slots = nbytes(inputs["feature"]), inputs["kp_source"].shape[1] + 1
    forward = feature + slots * feature  # read the feature once, write K+1 warped copies
    backward = slots * feature + feature + feature  # read their gradient and the feature, write d/d feature
    return forward + (backward if with_backward else 0)


INFO = OpInfo(
    name="sparse_motion_warp",
    op=pyface.ops.sparse_motion_warp,
    reference=pyface.reference.sparse_motion_warp,
    samples={
        **{f"{dims}d-" + ("jacobian" if jac else "no-jacobian") + ("-align-corners" if align else "") + f"-{padding}": (
            lambda device, d=dims, j=jac, a=align, p=padding: _sample(
                {"align_corners": a, "padding_mode": p}, dims=d, jacobian=j, device=device))
           for dims in SIZES for jac in (False, True) for align, padding in itertools.product((False, True),
                                                                                             ("zeros", "border"))},
        **{f"3d-{k}-keypoints": (lambda device, k=k: _sample(dims=3, k=k, device=device)) for k in (1, 21)},
        **{f"{dims}d-on-the-border-bounds": (lambda device, d=dims: _on_the_border_bounds(d, device)) for dims in SIZES},
        "far-outside-the-grid": lambda device: _sample({"padding_mode": "border"}, dims=2, spread=3.0, device=device),
    },
    typed={"": lambda device, dtype: _sample(dims=3, dtype=dtype, device=device),
           "no-jacobian": lambda device, dtype: _sample(dims=3, jacobian=False, dtype=dtype, device=device)},
    layouts={"channels-last-feature-strided-jacobian": _layout},
    opcheck={("jacobian" if jac else "no-jacobian"): _opcheck(jac) for jac in (False, True)},
    gradcheck={"2d": lambda: _sample({"padding_mode": "border"}, dims=2, n=1, c=2, k=2, size=(3, 4),
                                     dtype=torch.float64),
               "3d": lambda: _sample({"padding_mode": "border"}, dims=3, n=1, c=2, k=2, size=(2, 3, 4),
                                     dtype=torch.float64),
               # the CPU's separable kernels (no jacobian), with both paddings
               "2d-no-jacobian": lambda: _sample(dims=2, n=1, c=2, k=2, size=(3, 4), jacobian=False,
                                                 dtype=torch.float64),
               "3d-no-jacobian": lambda: _sample({"padding_mode": "border", "align_corners": True}, dims=3, n=1, c=2,
                                                 k=2, size=(2, 3, 4), jacobian=False, dtype=torch.float64)},
    compiled={"": lambda device: _sample(dims=3, device=device)},
    valid=lambda: inputs(2),
    bad_inputs=(
        BadInput("keypoint dims differ from the feature's",
                 lambda a: dict(a, kp_source=torch.zeros(2, 4, 3), kp_driving=torch.zeros(2, 4, 3), jacobian=None),
                 ValueError, r"kp_source must be \(N, K, 2\)"),
        BadInput("keypoint shape mismatch", lambda a: dict(a, kp_driving=a["kp_driving"][:, :3]), ValueError,
                 "kp_driving shape"),
        BadInput("jacobian shape", lambda a: dict(a, jacobian=a["jacobian"][:, :2]), ValueError,
                 r"jacobian must be \(N, K, d, d\)"),
        BadInput("unknown padding mode", lambda a: dict(a, padding_mode="reflection"), ValueError,
                 "padding_mode must be one of"),
        BadInput("batch mismatch", lambda a: dict(a, feature=a["feature"][:1]), ValueError, "kp_source must be"),
        BadInput("feature neither 2-D nor 3-D", lambda a: dict(a, feature=a["feature"][0]), ValueError,
                 r"feature must be \(N, C, H, W\) or"),
        BadInput("integer keypoints", lambda a: dict(a, kp_source=a["kp_source"].long()), TypeError,
                 "kp_source must be float"),
        BadInput("mixed devices", lambda a: dict(a, kp_driving=a["kp_driving"].to("meta")), ValueError,
                 "all tensors must be on one device"),
    ),
    bench=(
        BenchCase(
            op="sparse_motion_warp",
            name="face-vid2vid",
            shape=(8, 4, 16, 64, 64),
            make=bench_inputs(15, with_jacobian=False, with_mask=False),
            grad_inputs=("feature", "kp_source", "kp_driving"),
            min_bytes=_bench_bytes,
            note="K = 15, output (N, 16, 4, 16, 64, 64)",
            positional=("feature", "kp_source", "kp_driving"),
            main_input="feature",
            cpu_batch=2,
            tolerance=2e-2,  # bilinear sampling at cell boundaries, as for keypoint_warp's cases
        ),
    ),
)
