"""softmax_pool's description (docs/ops.md, softmax_pool)."""
from __future__ import annotations

import torch

import pyface
from pyface.opinfo import CHANNEL_LAYOUTS, BadInput, BenchCase, OpInfo, Sample, channel_layout, generator, nbytes

SPATIAL = {1: (37,), 2: (7, 7), 3: (3, 3, 5)}


def inputs(spatial=(7, 7), n=3, c=37, dtype=torch.float32, device="cpu", keep_dim=False, seed=0,
           score_scale=3.0) -> dict:
    """scores (N, *S) (or (N, 1, *S)) of spread `score_scale`, values (N, C, *S)."""
    g = generator(seed)
    scores = torch.randn((n, 1, *spatial) if keep_dim else (n, *spatial), generator=g, dtype=torch.float64)
    values = torch.randn((n, c, *spatial), generator=g, dtype=torch.float64)
    return {"scores": (scores * score_scale).to(device, dtype), "values": values.to(device, dtype)}


def _sample(**kw) -> Sample:
    return Sample(inputs(**kw), {"return_attention": True})


def _layout(name: str, device: str) -> Sample:
    t = inputs((3, 4, 5) if name == "channels_last_3d" else (6, 7), c=19, device=device)
    if name in CHANNEL_LAYOUTS:
        t["values"] = channel_layout(t["values"], name)
    else:  # transposed scores
        t["scores"] = t["scores"].transpose(1, 2).contiguous().transpose(1, 2)
    # d/d values comes back in the values' layout (a sliced view's gradient is dense)
    return Sample(t, {"return_attention": True}, grad_layout=() if name == "sliced" else ("values",))


def _opcheck(device: str, suffix: str) -> list[tuple]:
    forward = getattr(torch.ops.pyface, f"softmax_pool_forward{suffix}").default
    backward = getattr(torch.ops.pyface, f"softmax_pool_backward{suffix}").default
    t = inputs((3, 5), n=2, c=6, device=device)
    scores, values = t["scores"].flatten(1), t["values"].flatten(2)
    attention = torch.softmax(scores, dim=1)
    grad_pooled = torch.rand(2, 6, generator=generator(1)).to(device)
    return [(forward, (scores.clone().requires_grad_(), values.clone().requires_grad_())),
            (backward, (grad_pooled, None, values, attention, True)),
            (backward, (grad_pooled, torch.rand(attention.shape, generator=generator(2)).to(device), values, attention,
                        True)),
            (backward, (grad_pooled, None, values, attention, False))]


def _bench_inputs(shape, device, dtype):
    n, c, *spatial = shape
    return inputs(tuple(spatial), n=n, c=c, dtype=dtype, device=device, score_scale=2.0)


def _bench_bytes(inputs: dict, with_backward: bool) -> int:
    # the forward reads the values; the backward reads them again (the score gradient needs
    # the upstream gradient, known only after the forward) and writes their gradient
    values = nbytes(inputs["values"])
    return values * (3 if with_backward else 1)


def _valid() -> dict:
    return inputs((4, 5))


INFO = OpInfo(
    name="softmax_pool",
    op=pyface.ops.softmax_pool,
    reference=pyface.reference.softmax_pool,
    samples={
        **{f"{dims}d" + ("-keep-dim" if keep else ""): (lambda device, d=dims, k=keep: _sample(
            spatial=SPATIAL[d], keep_dim=k, device=device)) for dims in SPATIAL for keep in (False, True)},
        **{f"{cells}-cells-{channels}-channels": (lambda device, p=cells, c=channels: _sample(
            spatial=(p,), n=2, c=c, device=device)) for cells in (1, 9, 49, 196) for channels in (1, 37, 130)},
    },
    typed={"": lambda device, dtype: _sample(spatial=(5, 9), c=70, dtype=dtype, device=device)},
    layouts={name: (lambda device, name=name: _layout(name, device))
             for name in (*CHANNEL_LAYOUTS, "transposed_scores")},
    opcheck={"": _opcheck},
    gradcheck={"": lambda: _sample(spatial=(3, 4), n=2, c=5, dtype=torch.float64)},
    compiled={"": lambda device: _sample(spatial=(5, 5), c=9, device=device)},
    valid=_valid,
    bad_inputs=(
        BadInput("spatial mismatch", lambda a: dict(a, scores=a["scores"][:, :, :4]), ValueError, "scores must be"),
        BadInput("batch mismatch", lambda a: dict(a, scores=a["scores"][:2]), ValueError, "scores must be"),
        BadInput("integer scores", lambda a: dict(a, scores=a["scores"].long()), TypeError, "scores must be float"),
        BadInput("integer values", lambda a: dict(a, values=a["values"].int()), TypeError, "values must be float"),
        BadInput("dtype mismatch", lambda a: dict(a, values=a["values"].double()), TypeError,
                 "values must have scores' dtype"),
        BadInput("values dims", lambda a: dict(a, values=a["values"].flatten(1)), ValueError, "values must be"),
        BadInput("mixed devices", lambda a: dict(a, values=a["values"].to("meta")), ValueError,
                 "all tensors must be on one device"),
    ),
    bench=(
        BenchCase(
            op="softmax_pool",
            name="CLIP-size",
            shape=(256, 2048, 7, 7),
            make=_bench_inputs,
            grad_inputs=("scores", "values"),
            min_bytes=_bench_bytes,
            note="scores (N, 7, 7)",
            tags=("quick",),
            positional=("scores", "values"),
            main_input="values",
        ),
    ),
)
