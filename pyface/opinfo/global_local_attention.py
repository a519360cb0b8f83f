"""global_local_attention's description (docs/ops.md, global_local_attention)."""
from __future__ import annotations

import torch

import pyface
from pyface.opinfo import CHANNEL_LAYOUTS, BadInput, BenchCase, OpInfo, Sample, channel_layout, generator, nbytes

SPATIAL = {1: (37,), 2: (7, 7), 3: (3, 3, 5)}
GRAD_INPUTS = ("face", "context", "w1", "b1", "w2", "hidden_scale", "hidden_shift")


def inputs(spatial=(7, 7), n=3, face_dim=6, context_dim=37, hidden=40, batchnorm=True, dtype=torch.float32,
           device="cpu", seed=0, w2_scale=4.0) -> dict:
    """face (N, Df), context (N, Dc, *S), the score net's weights at the scale of a trained
    one, and (batchnorm) a folded BatchNorm's scale and shift."""
    g = generator(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)

    tensors = {
        "face": randn(n, face_dim),
        "context": randn(n, context_dim, *spatial),
        "w1": randn(hidden, face_dim + context_dim, scale=(face_dim + context_dim) ** -0.5),
        "b1": randn(hidden, scale=0.1),
        "w2": randn(hidden, scale=hidden ** -0.5 * w2_scale),
        "b2": randn(1),
    }
    if batchnorm:
        tensors["hidden_scale"] = (torch.rand(hidden, generator=g, dtype=torch.float64) + 0.5).to(device, dtype)
        tensors["hidden_shift"] = randn(hidden, scale=0.2)
    return tensors


def _sample(**kw) -> Sample:
    return Sample(inputs(**kw), {"return_attention": True})


def _layout(name: str, device: str) -> Sample:
    t = inputs((3, 4, 5) if name == "channels_last_3d" else (6, 7), context_dim=19, device=device)
    if name in CHANNEL_LAYOUTS:
        t["context"] = channel_layout(t["context"], name)
    if name == "sliced":
        t["face"] = torch.cat([t["face"]] * 3, dim=1)[:, 1::3]
    elif name == "transposed_w1":
        t["w1"] = t["w1"].t().contiguous().t()
    return Sample(t, {"return_attention": True})


def _typed_channels_last(device: str, dtype: torch.dtype) -> Sample:
    sample = _sample(spatial=(5, 7), context_dim=37, hidden=23, dtype=dtype, device=device)
    sample.tensors["context"] = channel_layout(sample.tensors["context"], "channels_last")
    return sample


def _opcheck(batchnorm: bool, channels_last: bool):
    def calls(device: str, suffix: str) -> list[tuple]:
        forward = getattr(torch.ops.pyface, f"global_local_attention_forward{suffix}").default
        backward = getattr(torch.ops.pyface, f"global_local_attention_backward{suffix}").default
        t = inputs((3, 5), n=2, context_dim=7, hidden=9, batchnorm=batchnorm, device=device)
        cells = t["context"].flatten(2)
        if channels_last:
            cells = cells.transpose(1, 2).contiguous().transpose(1, 2)
        args = [t["face"], cells, t["w1"], t["b1"], t["w2"], t["b2"], t.get("hidden_scale"), t.get("hidden_shift")]
        pooled, attention, projection, face_term = forward(*args)
        grad_pooled = torch.rand(pooled.shape, generator=generator(1)).to(device)
        grad_attention = torch.rand(attention.shape, generator=generator(2)).to(device)
        backward_args = lambda ga: (grad_pooled, ga, args[0], args[1], args[2], args[4], args[6], args[7],  # noqa: E731
                                    attention, projection, face_term)
        return [(forward, tuple(a if a is None else a.clone().requires_grad_() for a in args)),
                (backward, backward_args(None)), (backward, backward_args(grad_attention))]

    return calls


def _bench_inputs(face_dim: int, hidden: int):
    def make(shape, device, dtype):
        n, context_dim, *spatial = shape
        t = inputs(tuple(spatial), n=n, face_dim=face_dim, context_dim=context_dim, hidden=hidden, dtype=dtype,
                   device=device, w2_scale=1.0)
        t["context"] = t["context"].relu()  # a ReLU feature map
        return t

    return make


def _bench_bytes(inputs: dict, with_backward: bool) -> int:
    context = nbytes(inputs["context"])
    return context * (3 if with_backward else 1)  # read it; backward reads it again and writes its gradient


def _bench_case(name, n, face_dim, context_dim, side, hidden, cpu_batch=None, tags=()):
    return BenchCase(
        op="global_local_attention",
        name=name,
        shape=(n, context_dim, side, side),
        make=_bench_inputs(face_dim, hidden),
        grad_inputs=GRAD_INPUTS,
        min_bytes=_bench_bytes,
        note=f"face ({n}, {face_dim}), hidden {hidden}, folded BatchNorm",
        tags=tags,
        positional=("face", "context", "w1", "b1", "w2", "b2"),
        main_input="context",
        cpu_batch=cpu_batch,
    )


INFO = OpInfo(
    name="global_local_attention",
    op=pyface.ops.global_local_attention,
    reference=pyface.reference.global_local_attention,
    samples={
        **{f"{dims}d" + ("-batchnorm" if bn else ""): (lambda device, d=dims, b=bn: _sample(
            spatial=SPATIAL[d], batchnorm=b, device=device)) for dims in SPATIAL for bn in (False, True)},
        **{f"{cells}-cells-{dc}-channels-{hidden}-hidden": (lambda device, p=cells, c=dc, h=hidden: _sample(
            spatial=(p,), n=2, context_dim=c, hidden=h, device=device))
           for cells in (1, 9, 49, 196) for dc, hidden in ((37, 40), (130, 33))},
    },
    typed={"": lambda device, dtype: _sample(spatial=(5, 9), context_dim=70, dtype=dtype, device=device),
           # the products read a channels-last context in place, in every dtype (on CPUs without
           # bfloat16 or float16 instructions, converted to float32 first: csrc/matmul.h)
           "channels-last": lambda device, dtype: _typed_channels_last(device, dtype)},
    layouts={name: (lambda device, name=name: _layout(name, device))
             for name in (*CHANNEL_LAYOUTS, "transposed_w1")},
    opcheck={("batchnorm" if bn else "plain") + ("-channels-last" if cl else ""): _opcheck(bn, cl)
             for bn in (False, True) for cl in (False, True)},
    gradcheck={"": lambda: _sample(spatial=(2, 3), n=2, face_dim=3, context_dim=4, hidden=5, dtype=torch.float64)},
    compiled={"": lambda device: _sample(spatial=(5, 5), device=device)},
    valid=inputs,
    bad_inputs=(
        BadInput("batch mismatch", lambda a: dict(a, face=a["face"][:2]), ValueError,
                 "face and context must have one batch size"),
        BadInput("w1 columns", lambda a: dict(a, w1=a["w1"][:, 1:]), ValueError, "w1 must be"),
        *(BadInput(f"{name} length", lambda a, name=name: dict(a, **{name: a[name][1:]}), ValueError,
                   f"{name} must have shape") for name in ("b1", "w2", "hidden_scale", "hidden_shift")),
        BadInput("b2 shape", lambda a: dict(a, b2=torch.zeros(2)), ValueError, "b2 must be a scalar"),
        BadInput("hidden_scale without hidden_shift", lambda a: dict(a, hidden_shift=None), ValueError,
                 "hidden_scale was given without hidden_shift"),
        *(BadInput(f"integer {name}", lambda a, name=name: dict(a, **{name: a[name].long()}), TypeError,
                   f"{name} must be float") for name in ("face", "context", "w1")),
        BadInput("dtype mismatch", lambda a: dict(a, w1=a["w1"].double()), TypeError, "w1 must have face's dtype"),
        BadInput("context dims", lambda a: dict(a, context=a["context"].flatten(1)), ValueError, "context must be"),
        BadInput("mixed devices", lambda a: dict(a, w2=a["w2"].to("meta")), ValueError,
                 "all tensors must be on one device"),
    ),
    bench=(
        # the CPU run takes batch 64, the size the issue measured eager and torch.compile at
        _bench_case("GLAMOR-Net", 256, 256, 256, 7, 128, cpu_batch=64, tags=("quick",)),
        _bench_case("scaled", 64, 512, 2048, 14, 512),
    ),
)
