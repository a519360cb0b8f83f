"""keypoint_warp's description (docs/ops.md, keypoint_warp)."""
from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

import pyface
from pyface.opinfo import BadInput, BenchCase, OpInfo, Sample, generator, nbytes

SIZES = {2: ((5, 6), (7, 8)), 3: ((4, 5, 6), (3, 7, 8))}  # (input, output) spatial sizes, D != H != W


def inputs(dims=2, n=2, c=3, k=4, sizes=None, jacobian=True, logits=True, spread=1.2, dtype=torch.float32, seed=0,
           device="cpu", mask=True) -> dict:
    """feature (N, C, *S_in); keypoints in [-spread, spread] (spread > 1 puts some outside
    the grid); (mask) a mask (N, K+1, *S_out) of logits or of weights in [0, 1); jacobians
    near the identity, or None."""
    g = generator(seed)
    size_in, size_out = sizes or SIZES[dims]
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    tensors = {
        "feature": torch.randn(n, c, *size_in, generator=g, dtype=torch.float64),
        "kp_source": (rand(n, k, dims) * 2 - 1) * spread,
        "kp_driving": (rand(n, k, dims) * 2 - 1) * spread,
    }
    if mask:
        tensors["mask"] = torch.randn(n, k + 1, *size_out, generator=g, dtype=torch.float64) if logits \
            else rand(n, k + 1, *size_out)
    tensors["jacobian"] = torch.eye(dims, dtype=torch.float64) + \
        0.3 * torch.randn(n, k, dims, dims, generator=g, dtype=torch.float64) if jacobian else None
    return {name: None if t is None else t.to(device, dtype) for name, t in tensors.items()}


def _sample(options: dict | None = None, **kw) -> Sample:
    return Sample(inputs(**kw), {"return_deformation": True, **(options or {})})


def _on_the_border_bounds(dims: int, device: str) -> Sample:
    """torch's rule: a coordinate on a bound counts as clipped; the kernels once counted it
    inside. Identity motions on a 2-wide output grid with align_corners put every position on
    a bound (and none on an inner cell edge, where float32 and float64 may round to either
    side of the bilinear kink)."""
    t = inputs(dims, jacobian=False, logits=False, sizes=(SIZES[dims][0], (2,) * dims), device=device)
    t["mask"].zero_()[:, 0] = 1  # all weight on the identity: deformation = z exactly
    t["kp_source"].zero_()  # T_k(z) = z exactly, on the bounds in float32 as in float64
    t["kp_driving"].zero_()
    return Sample(t, {"return_deformation": True, "align_corners": True, "padding_mode": "border"})


def _layout(device: str) -> Sample:
    t = inputs(2, device=device)
    t["feature"] = t["feature"].to(memory_format=torch.channels_last)
    t["mask"] = t["mask"].transpose(2, 3).contiguous().transpose(2, 3)
    t["kp_source"] = t["kp_source"].transpose(0, 1).contiguous().transpose(0, 1)
    return Sample(t, {"return_deformation": True, "mask_logits": True})


def _opcheck(jacobian: bool):
    def calls(device: str, suffix: str) -> list[tuple]:
        t = inputs(2, jacobian=jacobian, device=device)
        forward = getattr(torch.ops.pyface, f"keypoint_warp_forward{suffix}").default
        backward = getattr(torch.ops.pyface, f"keypoint_warp_backward{suffix}").default
        inference = getattr(torch.ops.pyface, f"keypoint_warp_inference{suffix}").default
        args = (t["feature"], t["kp_source"], t["kp_driving"], t["mask"], t["jacobian"], True, False, 0)
        output, deformation, motion_weights = forward(*args)
        grad_output = torch.rand(output.shape, generator=generator(1)).to(device)
        grad_deformation = torch.rand(deformation.shape, generator=generator(2)).to(device)
        return [(forward, tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)),
                *((backward, (grad_output, gd, *args[:5], deformation, motion_weights, True, False, 0, True, False))
                  for gd in (None, grad_deformation)),
                *((inference, (*args, returned)) for returned in (False, True))]

    return calls


def _gradcheck(dims: int) -> Sample:
    sizes = ((3, 4), (3, 3)) if dims == 2 else ((2, 3, 4), (2, 2, 3))
    return _sample({"mask_logits": True, "padding_mode": "border"}, dims=dims, n=1, c=2, k=2, sizes=sizes,
                   dtype=torch.float64)


def bench_inputs(keypoints: int, with_jacobian: bool, with_mask: bool = True) -> Callable:
    """The bench's inputs of a warp of `keypoints` keypoints: a feature of the case's shape,
    keypoints within the grid, mask logits (with_mask) and jacobians near the identity."""
    def make(shape, device, dtype):
        n, c, *spatial = shape
        t = inputs(len(spatial), n=n, c=c, k=keypoints, sizes=(tuple(spatial), tuple(spatial)), jacobian=with_jacobian,
                   spread=0.9, dtype=dtype, device=device, mask=with_mask)
        if not with_jacobian:
            del t["jacobian"]
        return {**t, "mask_logits": True} if with_mask else t

    return make


def _bench_bytes(inputs: dict, with_backward: bool) -> int:
    feature, mask = nbytes(inputs["feature"]), nbytes(inputs["mask"])  # the output has the feature's size here
    forward = feature + mask + feature  # read feature and mask, write the output
    backward = feature + feature + feature + mask  # read d/d output and the feature, write d/d feature and d/d mask
    return forward + (backward if with_backward else 0)


def _bench_case(name, shape, keypoints, with_jacobian, cpu_batch=None, tags=()):
    grads = ("feature", "kp_source", "kp_driving", "mask") + (("jacobian",) if with_jacobian else ())
    return BenchCase(
        op="keypoint_warp",
        name=name,
        shape=shape,
        make=bench_inputs(keypoints, with_jacobian),
        grad_inputs=grads,
        min_bytes=_bench_bytes,
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


INFO = OpInfo(
    name="keypoint_warp",
    op=pyface.ops.keypoint_warp,
    reference=pyface.reference.keypoint_warp,
    samples={
        **{f"{dims}d-" + ("jacobian" if jac else "no-jacobian") + ("-logits" if logits else "-weights") +
           ("-align-corners" if align else "") + f"-{padding}": (
               lambda device, d=dims, j=jac, lg=logits, a=align, p=padding: _sample(
                   {"mask_logits": lg, "align_corners": a, "padding_mode": p}, dims=d, jacobian=j, logits=lg,
                   device=device))
           for dims in SIZES for jac, logits in ((False, False), (True, True), (True, False))
           for align, padding in itertools.product((False, True), ("zeros", "border"))},
        **{f"3d-{k}-keypoints": (lambda device, k=k: _sample({"mask_logits": True}, dims=3, k=k, device=device))
           for k in (1, 21)},
        **{f"far-outside-the-grid-{padding}": (lambda device, p=padding: _sample(
            {"mask_logits": True, "padding_mode": p}, dims=2, spread=3.0, device=device)) for padding in ("zeros", "border")},
        **{f"{dims}d-on-the-border-bounds": (lambda device, d=dims: _on_the_border_bounds(d, device)) for dims in SIZES},
        # a 64x64 deformation driving a 128x128 output, scaled down
        "output-larger-than-input": lambda device: _sample({"mask_logits": True}, dims=2, sizes=((4, 4), (9, 11)),
                                                           device=device),
        # with C = 0 the backward once returned zeros early, though the deformation it also
        # returns depends on the keypoints and the mask
        **{f"{dims}d-no-channels": (lambda device, d=dims: _sample({"mask_logits": True}, dims=d, c=0, device=device))
           for dims in SIZES},
    },
    typed={"": lambda device, dtype: _sample({"mask_logits": True}, dims=3, dtype=dtype, device=device)},
    layouts={"channels-last-feature-strided-mask-and-keypoints": _layout},
    opcheck={("jacobian" if jac else "no-jacobian"): _opcheck(jac) for jac in (False, True)},
    gradcheck={f"{dims}d": (lambda d=dims: _gradcheck(d)) for dims in SIZES},
    compiled={"": lambda device: Sample(inputs(3, device=device), {"mask_logits": True})},
    valid=lambda: inputs(2),
    bad_inputs=(
        BadInput("mask channels", lambda a: dict(a, mask=a["mask"][:, 1:]), ValueError, r"mask must be \(N, K\+1"),
        BadInput("keypoint dims differ from the feature's",
                 lambda a: dict(a, kp_source=torch.zeros(2, 4, 3), kp_driving=torch.zeros(2, 4, 3)),
                 ValueError, r"kp_source must be \(N, K, 2\)"),
        BadInput("keypoint shape mismatch", lambda a: dict(a, kp_driving=a["kp_driving"][:, :3]), ValueError,
                 "kp_driving shape"),
        BadInput("jacobian shape", lambda a: dict(a, jacobian=a["jacobian"][..., :1]), ValueError,
                 r"jacobian must be \(N, K, d, d\)"),
        BadInput("unknown padding mode", lambda a: dict(a, padding_mode="reflection"), ValueError,
                 "padding_mode must be one of"),
        BadInput("batch mismatch", lambda a: dict(a, feature=a["feature"][:1]), ValueError, "kp_source must be"),
        BadInput("integer feature", lambda a: dict(a, feature=a["feature"].long()), TypeError, "feature must be float"),
        BadInput("mixed devices", lambda a: dict(a, mask=a["mask"].to("meta")), ValueError,
                 "all tensors must be on one device"),
    ),
    bench=(
        _bench_case("FOMM vox-256", (16, 256, 64, 64), 10, with_jacobian=True),
        # the CPU run takes batch 1, the size the issue measured eager and torch.compile at
        _bench_case("face-vid2vid", (8, 32, 16, 64, 64), 15, with_jacobian=False, cpu_batch=1, tags=("quick",)),
        _bench_case("LivePortrait", (8, 32, 16, 64, 64), 21, with_jacobian=False, cpu_batch=2),
    ),
)
