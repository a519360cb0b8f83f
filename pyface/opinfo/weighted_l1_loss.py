"""weighted_l1_loss's description (docs/ops.md, weighted_l1_loss)."""
from __future__ import annotations

import itertools

import torch

import pyface
from pyface.opinfo import BadInput, BenchCase, OpInfo, Sample, generator, nbytes

SPATIAL = {1: (37,), 2: (9, 13), 3: (3, 5, 7)}
# larger, odd sizes: more than one CPU tile per sample (1024 pixels at these batches), more than one GPU block
LARGE_SPATIAL = {1: (3001,), 2: (45, 101), 3: (5, 9, 31)}
WEIGHTS = ("none", "N1S", "NCS", "11S")  # the weight's shape: absent, (N, 1, *S), (N, C, *S), (1, 1, *S)
LABELS = (None, torch.uint8, torch.int32, torch.int64)
REDUCTIONS = (("none", "elements"), ("sum", "elements"), ("mean", "elements"), ("mean", "weight"))
# weight, label dtype and spatial dims: one of each, for the grids run at every size and dtype
MIXES = (("N1S", torch.uint8, 2), ("NCS", torch.int64, 1), ("11S", None, 3), ("none", torch.int32, 2))


def inputs(spatial=(9, 13), n=3, c=4, dtype=torch.float32, weight="none", label_dtype=None, classes=6, seed=0,
           device="cpu") -> dict:
    """input and target (N, C, *S), a positive weight of the given broadcast shape, labels
    (N, *S) in [0, classes) with class weights."""
    g = generator(seed)
    shape = (n, c, *spatial)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    w = {"none": None, "N1S": (n, 1, *spatial), "NCS": shape, "11S": (1, 1, *spatial)}[weight]
    w = None if w is None else torch.rand(w, generator=g, dtype=torch.float64) + 0.1
    labels = class_weights = None
    if label_dtype is not None:
        labels = torch.randint(0, classes, (n, *spatial), generator=g).to(device, label_dtype)
        class_weights = torch.rand(classes, generator=g, dtype=torch.float64)
    cast = lambda v: None if v is None else v.to(device, dtype)  # noqa: E731
    return {"input": cast(x), "target": cast(t), "weight": cast(w), "labels": labels,
            "class_weights": cast(class_weights)}


def _sample(reduction="mean", normalize="elements", **kw) -> Sample:
    return Sample(inputs(**kw), {"reduction": reduction, "normalize": normalize})


def _name(dims, weight, label_dtype, reduction, normalize) -> str:
    labels = "no-labels" if label_dtype is None else f"{str(label_dtype).removeprefix('torch.')}-labels"
    return f"{dims}d-weight-{weight}-{labels}-{reduction}" + ("-by-weight" if normalize == "weight" else "")


def _layout(name: str, reduction: str, device: str) -> Sample:
    if name == "channels_last_3d":
        t = inputs((4, 6, 5), weight="N1S", label_dtype=torch.int64, device=device)
        view = lambda v: v.contiguous(memory_format=torch.channels_last_3d)  # noqa: E731
    else:
        t = inputs((10, 12), weight="NCS", label_dtype=torch.int64, device=device)
        view = {
            "transposed": lambda v: v.transpose(-1, -2).contiguous().transpose(-1, -2),
            "sliced": lambda v: torch.stack([v, v], dim=-1)[..., 0],
            "channels_last": lambda v: v.contiguous(memory_format=torch.channels_last),
        }[name]
    t.update({key: view(t[key]) for key in ("input", "target", "weight")})
    return Sample(t, {"reduction": reduction})


def _opcheck_forward(device: str, suffix: str) -> list[tuple]:
    forward = getattr(torch.ops.pyface, f"weighted_l1_loss_forward{suffix}").default
    t = inputs((5, 6), weight="N1S", label_dtype=torch.uint8, device=device)
    x, target, w, labels, cw = t.values()
    calls = [(forward, (x.clone().requires_grad_(), target, w, labels, cw, reduction, normalize, compute_grad))
             for reduction, normalize, compute_grad in itertools.product((0, 1, 2), (False, True), (False, True))]
    every_grad = tuple(v.clone().requires_grad_() for v in (x, target, w))
    return calls + [(forward, (*every_grad, labels, cw.clone().requires_grad_(), 2, True, True))]


def _opcheck_backward(device: str, suffix: str) -> list[tuple]:
    backward = getattr(torch.ops.pyface, f"weighted_l1_loss_backward{suffix}").default
    t = inputs((5, 6), weight="NCS", label_dtype=torch.int64, device=device)
    grad = torch.rand(t["input"].shape, generator=generator(1)).to(device)
    return [(backward, (grad, *t.values()))]


def _bench_inputs(with_weight: bool, with_labels: bool, num_classes: int = 19):
    def make(shape, device, dtype):
        g = generator(0)
        n, _, *spatial = shape

        def rand(*size):
            return torch.rand(*size, generator=g).to(device=device, dtype=dtype)

        kwargs = {"input": rand(*shape), "target": rand(*shape)}
        if with_weight:
            kwargs["weight"] = rand(n, 1, *spatial) + 0.5  # an attention map + beta, as ATVGnet uses it
        if with_labels:
            kwargs["labels"] = torch.randint(0, num_classes, (n, *spatial), generator=g, dtype=torch.uint8).to(device)
            kwargs["class_weights"] = pyface.nn.StyleAwarePhotometricLoss().class_weights.to(device)
        return kwargs

    return make


def _bench_bytes(inputs: dict, with_backward: bool) -> int:
    read = sum(nbytes(inputs.get(k)) for k in ("input", "target", "weight", "labels"))
    return read + (nbytes(inputs["input"]) if with_backward else 0)  # + the input gradient


def _bench_case(name, shape, with_weight, with_labels, tags=()):
    return BenchCase(
        op="weighted_l1_loss",
        name=name,
        shape=shape,
        make=_bench_inputs(with_weight, with_labels),
        grad_inputs=("input",),
        min_bytes=_bench_bytes,
        note=("weight (N,1,H,W)" if with_weight else "") + ("labels (N,H,W) uint8" if with_labels else ""),
        tags=tags,
    )


def _valid() -> dict:
    return inputs((9, 13), label_dtype=torch.int64)


def _labels_set(value: int):
    def change(a):
        labels = a["labels"].clone()
        labels[1, 2, 3] = value
        return dict(a, labels=labels)

    return change


INFO = OpInfo(
    name="weighted_l1_loss",
    op=pyface.ops.weighted_l1_loss,
    reference=pyface.reference.weighted_l1_loss,
    samples={
        **{_name(dims, weight, label_dtype, reduction, normalize): (
            lambda device, d=dims, w=weight, lt=label_dtype, r=reduction, nm=normalize: _sample(
                r, nm, spatial=SPATIAL[d], weight=w, label_dtype=lt, device=device))
           for dims in SPATIAL for weight in WEIGHTS for label_dtype in LABELS for reduction, normalize in REDUCTIONS},
        **{"large-" + _name(dims, weight, label_dtype, reduction, normalize): (
            lambda device, d=dims, w=weight, lt=label_dtype, r=reduction, nm=normalize: _sample(
                r, nm, spatial=LARGE_SPATIAL[d], c=3, weight=w, label_dtype=lt, device=device))
           for weight, label_dtype, dims in MIXES for reduction, normalize in REDUCTIONS},
    },
    typed={
        **{"large-" + _name(dims, weight, label_dtype, reduction, normalize): (
            lambda device, dtype, d=dims, w=weight, lt=label_dtype, r=reduction, nm=normalize: _sample(
                r, nm, spatial=LARGE_SPATIAL[d], c=3, weight=w, label_dtype=lt, dtype=dtype, device=device))
           for weight, label_dtype, dims in MIXES for reduction, normalize in REDUCTIONS},
    },
    layouts={f"{name}-{reduction}": (lambda device, name=name, r=reduction: _layout(name, r, device))
             for name in ("transposed", "sliced", "channels_last", "channels_last_3d") for reduction in ("none", "mean")},
    opcheck={"forward": _opcheck_forward, "backward": _opcheck_backward},
    gradcheck={f"weight-{weight}-{reduction}" + ("-by-weight" if normalize == "weight" else ""): (
        lambda w=weight, r=reduction, nm=normalize: _sample(r, nm, spatial=(3, 4), n=2, c=2, dtype=torch.float64,
                                                            weight=w, label_dtype=torch.int64, classes=4))
        for reduction, normalize in REDUCTIONS for weight in ("N1S", "11S")},
    compiled={"": lambda device: _sample(spatial=(8, 10), weight="N1S", label_dtype=torch.uint8, device=device)},
    compile_gradients=True,
    float64_backends=("cpu", "cuda"),
    valid=_valid,
    bad_inputs=(
        BadInput("label above the range", _labels_set(6), ValueError, "labels holds 6, outside"),
        BadInput("label below the range", _labels_set(-1), ValueError, "labels holds -1"),
        BadInput("labels without class_weights", lambda a: dict(a, class_weights=None), ValueError,
                 "labels was given without class_weights"),
        BadInput("class_weights without labels", lambda a: dict(a, labels=None), ValueError,
                 "class_weights was given without labels"),
        BadInput("weight not broadcastable", lambda a: dict(a, weight=torch.ones(3, 1, 9, 12)), ValueError,
                 r"weight of shape \(3, 1, 9, 12\) is not broadcastable"),
        BadInput("weight with more dims than input", lambda a: dict(a, weight=torch.ones(1, 3, 1, 9, 13)), ValueError,
                 r"weight of shape \(1, 3, 1, 9, 13\) is not broadcastable"),
        BadInput("shape mismatch", lambda a: dict(a, target=a["target"][..., :12]), ValueError, "target shape"),
        BadInput("unknown reduction", lambda a: dict(a, reduction="avg"), ValueError, "reduction must be one of"),
        BadInput("unknown normalize", lambda a: dict(a, normalize="pixels"), ValueError, "normalize must be one of"),
        BadInput("integer input", lambda a: dict(a, input=a["input"].long(), target=a["target"].long()), TypeError,
                 "input must be float32"),
        BadInput("float labels", lambda a: dict(a, labels=a["labels"].float()), TypeError,
                 "labels must be uint8, int32 or int64"),
        BadInput("labels shape", lambda a: dict(a, labels=a["labels"][..., :12]), ValueError,
                 r"labels must have shape \(N, \*S\)"),
        BadInput("mixed devices", lambda a: dict(a, target=a["target"].to("meta")), ValueError,
                 "all tensors must be on one device"),
        BadInput("no spatial dims", lambda a: dict(a, input=a["input"][:, :, 0, 0], target=a["target"][:, :, 0, 0],
                                                   labels=None, class_weights=None),
                 ValueError, "1 to 3 spatial dims"),
    ),
    bench=(
        _bench_case("ATVGnet", (160, 3, 128, 128), with_weight=True, with_labels=False),
        _bench_case("style-aware 256", (8, 3, 256, 256), with_weight=False, with_labels=True, tags=("quick",)),
        _bench_case("style-aware 512", (8, 3, 512, 512), with_weight=False, with_labels=True),
        _bench_case("large", (32, 3, 512, 512), with_weight=False, with_labels=True),
    ),
)
