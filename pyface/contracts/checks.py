"""The ops' argument checks: shared helpers, then one function per op that checks everything
about its arguments that can be checked without reading tensor data. Each error names the
argument and what was expected. pyface.ops and pyface.reference both call them."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
LABEL_DTYPES = (torch.uint8, torch.int32, torch.int64)
REDUCTIONS = ("none", "sum", "mean")  # weighted_l1_loss
NORMALIZATIONS = ("elements", "weight")  # weighted_l1_loss
PADDING_MODES = ("zeros", "border")  # keypoint_warp, sparse_motion_warp


def tensor(op: str, name: str, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")


def floating(op: str, name: str, value: torch.Tensor) -> None:
    tensor(op, name, value)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16, bfloat16 or float64, got {value.dtype}")


def integer_labels(op: str, name: str, value: torch.Tensor) -> None:
    tensor(op, name, value)
    if value.dtype not in LABEL_DTYPES:
        raise TypeError(f"{op}: {name} must be uint8, int32 or int64, got {value.dtype}")


def one_of(op: str, name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{op}: {name} must be one of {allowed}, got {value!r}")


def same_device(op: str, **tensors: torch.Tensor | None) -> None:
    given = {name: t for name, t in tensors.items() if t is not None}
    devices = {t.device for t in given.values()}
    if len(devices) > 1:
        where = ", ".join(f"{name} on {t.device}" for name, t in given.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {where}")


def labels_in_range(op: str, labels: torch.Tensor, num_classes: int) -> None:
    """Reads the labels (one reduction; a host sync on GPU): every one in [0, num_classes)."""
    if labels.numel() == 0:
        return
    low, high = torch.aminmax(labels)
    low, high = int(low), int(high)
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{op}: labels holds {bad}, outside [0, num_classes={num_classes})")


@torch.library.custom_op("pyface::labels_in_range", mutates_args=())
def labels_checked(op: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """labels_in_range for compiled code: an opaque op that reads the labels when the graph
    runs (a plain check is skipped while tracing, leaving an index error deep in the
    kernel) and returns a copy of them, which keeps the check from being pruned."""
    labels_in_range(op, labels, num_classes)
    return labels.clone()


@labels_checked.register_fake
def _(op, labels, num_classes):
    return torch.empty_like(labels)


def check_weighted_l1_loss(input, target, weight, labels, class_weights, reduction, normalize) -> None:
    """weighted_l1_loss's arguments (pyface.ops.weighted_l1_loss)."""
    op = "weighted_l1_loss"
    floating(op, "input", input)
    tensor(op, "target", target)
    if target.dtype != input.dtype:
        raise TypeError(f"{op}: target must have input's dtype {input.dtype}, got {target.dtype}")
    if not 3 <= input.dim() <= 5:
        raise ValueError(f"{op}: input must be (N, C, *S) with 1 to 3 spatial dims, got shape {tuple(input.shape)}")
    if target.shape != input.shape:
        raise ValueError(f"{op}: target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}")
    one_of(op, "reduction", reduction, REDUCTIONS)
    one_of(op, "normalize", normalize, NORMALIZATIONS)
    if weight is not None:
        floating(op, "weight", weight)
        # Each trailing dim 1 or input's; spelled out because torch.broadcast_shapes cost
        # about 20 us a call, as much as the whole ATVGnet-size loss's gap to torch.compile.
        extra = input.dim() - weight.dim()
        if extra < 0 or any(w != 1 and w != s for w, s in zip(weight.shape, input.shape[extra:])):
            raise ValueError(
                f"{op}: weight of shape {tuple(weight.shape)} is not broadcastable to input shape {tuple(input.shape)}"
            )
    if (labels is None) != (class_weights is None):
        given, missing = ("labels", "class_weights") if class_weights is None else ("class_weights", "labels")
        raise ValueError(f"{op}: {given} was given without {missing}; pass both or neither")
    if labels is not None:
        integer_labels(op, "labels", labels)
        expected = (input.shape[0], *input.shape[2:])
        if tuple(labels.shape) != expected:
            raise ValueError(f"{op}: labels must have shape (N, *S) = {expected}, got {tuple(labels.shape)}")
        floating(op, "class_weights", class_weights)
        if class_weights.dim() != 1 or class_weights.numel() == 0:
            raise ValueError(f"{op}: class_weights must be a non-empty 1-D tensor, got shape {tuple(class_weights.shape)}")
    same_device(op, input=input, target=target, weight=weight, labels=labels, class_weights=class_weights)


def check_softmax_pool(scores, values) -> None:
    """softmax_pool's arguments (pyface.ops.softmax_pool)."""
    op = "softmax_pool"
    floating(op, "scores", scores)
    floating(op, "values", values)
    if values.dtype != scores.dtype:
        raise TypeError(f"{op}: values must have scores' dtype {scores.dtype}, got {values.dtype}")
    if not 3 <= values.dim() <= 5:
        raise ValueError(f"{op}: values must be (N, C, *S) with 1 to 3 spatial dims, got shape {tuple(values.shape)}")
    n, spatial = values.shape[0], tuple(values.shape[2:])
    if tuple(scores.shape) not in ((n, *spatial), (n, 1, *spatial)):
        raise ValueError(
            f"{op}: scores must be (N, *S) = {(n, *spatial)} or (N, 1, *S) to match values of shape "
            f"{tuple(values.shape)}, got {tuple(scores.shape)}"
        )
    same_device(op, scores=scores, values=values)


def check_global_local_attention(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift) -> None:
    """global_local_attention's arguments (pyface.ops.global_local_attention)."""
    op = "global_local_attention"
    named = {"face": face, "context": context, "w1": w1, "b1": b1, "w2": w2, "b2": b2,
             "hidden_scale": hidden_scale, "hidden_shift": hidden_shift}
    for name, value in named.items():
        if value is not None:
            floating(op, name, value)
            if value.dtype != face.dtype:
                raise TypeError(f"{op}: {name} must have face's dtype {face.dtype}, got {value.dtype}")
    if face.dim() != 2:
        raise ValueError(f"{op}: face must be (N, Df), got shape {tuple(face.shape)}")
    if not 3 <= context.dim() <= 5:
        raise ValueError(f"{op}: context must be (N, Dc, *S) with 1 to 3 spatial dims, got shape {tuple(context.shape)}")
    if context.shape[0] != face.shape[0]:
        raise ValueError(f"{op}: face and context must have one batch size, got {face.shape[0]} and {context.shape[0]}")
    face_dim, context_dim = face.shape[1], context.shape[1]
    if w1.dim() != 2 or w1.shape[1] != face_dim + context_dim:
        raise ValueError(
            f"{op}: w1 must be (hidden, Df + Dc) = (hidden, {face_dim + context_dim}), got shape {tuple(w1.shape)}"
        )
    hidden = w1.shape[0]
    for name in ("b1", "w2", "hidden_scale", "hidden_shift"):
        value = named[name]
        if value is not None and tuple(value.shape) != (hidden,):
            raise ValueError(f"{op}: {name} must have shape (hidden,) = ({hidden},), got {tuple(value.shape)}")
    if b2.numel() != 1 or b2.dim() > 1:
        raise ValueError(f"{op}: b2 must be a scalar or of shape (1,), got shape {tuple(b2.shape)}")
    if (hidden_scale is None) != (hidden_shift is None):
        given, missing = ("hidden_scale", "hidden_shift") if hidden_shift is None else ("hidden_shift", "hidden_scale")
        raise ValueError(f"{op}: {given} was given without {missing}; pass both or neither")
    same_device(op, **named)


def check_keypoint_heatmaps(kp_driving, kp_source, spatial_size, variance) -> None:
    """keypoint_heatmaps's arguments (pyface.ops.keypoint_heatmaps)."""
    op = "keypoint_heatmaps"
    for name, kp in (("kp_driving", kp_driving), ("kp_source", kp_source)):
        floating(op, name, kp)
    if kp_source.dtype != kp_driving.dtype:
        raise TypeError(f"{op}: kp_source must have kp_driving's dtype {kp_driving.dtype}, got {kp_source.dtype}")
    if kp_driving.dim() != 3 or kp_driving.shape[2] not in (2, 3):
        raise ValueError(f"{op}: kp_driving must be (N, K, d) with d = 2 or 3, got shape {tuple(kp_driving.shape)}")
    if kp_source.shape != kp_driving.shape:
        raise ValueError(
            f"{op}: kp_source shape {tuple(kp_source.shape)} must equal kp_driving shape {tuple(kp_driving.shape)}"
        )
    dims = kp_driving.shape[2]
    if (
        not isinstance(spatial_size, (tuple, list, torch.Size))
        or len(spatial_size) != dims
        or not all(isinstance(s, int) and s > 0 for s in spatial_size)
    ):
        raise ValueError(
            f"{op}: spatial_size must be {dims} positive ints (the keypoints have d = {dims}), got {spatial_size!r}"
        )
    if not isinstance(variance, (int, float)) or not variance > 0:
        raise ValueError(f"{op}: variance must be a positive number, got {variance!r}")
    same_device(op, kp_driving=kp_driving, kp_source=kp_source)


def check_keypoint_arguments(op, feature, kp_source, kp_driving, jacobian, padding_mode, **more) -> None:
    """The checks keypoint_warp and sparse_motion_warp share; `more` tensors (the mask) join
    the dtype and device checks."""
    named = {"feature": feature, "kp_source": kp_source, "kp_driving": kp_driving, **more, "jacobian": jacobian}
    for name, value in named.items():
        if value is not None:
            floating(op, name, value)
            if value.dtype != feature.dtype:
                raise TypeError(f"{op}: {name} must have feature's dtype {feature.dtype}, got {value.dtype}")
    if feature.dim() not in (4, 5):
        raise ValueError(f"{op}: feature must be (N, C, H, W) or (N, C, D, H, W), got shape {tuple(feature.shape)}")
    n, dims = feature.shape[0], feature.dim() - 2
    if 0 in feature.shape[2:]:  # nothing to sample from (grid_sample refuses it too)
        raise ValueError(f"{op}: feature's spatial sizes must be non-zero, got shape {tuple(feature.shape)}")
    if kp_source.dim() != 3 or kp_source.shape[0] != n or kp_source.shape[2] != dims:
        raise ValueError(
            f"{op}: kp_source must be (N, K, {dims}) for a {dims}-D feature of batch {n}, got shape {tuple(kp_source.shape)}"
        )
    if kp_driving.shape != kp_source.shape:
        raise ValueError(
            f"{op}: kp_driving shape {tuple(kp_driving.shape)} must equal kp_source shape {tuple(kp_source.shape)}"
        )
    k = kp_source.shape[1]
    if jacobian is not None and tuple(jacobian.shape) != (n, k, dims, dims):
        raise ValueError(f"{op}: jacobian must be (N, K, d, d) = {(n, k, dims, dims)}, got shape {tuple(jacobian.shape)}")
    one_of(op, "padding_mode", padding_mode, PADDING_MODES)
    same_device(op, **named)


def check_keypoint_warp(feature, kp_source, kp_driving, mask, jacobian, padding_mode) -> None:
    """keypoint_warp's arguments (pyface.ops.keypoint_warp)."""
    op = "keypoint_warp"
    check_keypoint_arguments(op, feature, kp_source, kp_driving, jacobian, padding_mode, mask=mask)
    n, k, dims = feature.shape[0], kp_source.shape[1], feature.dim() - 2
    if mask.dim() != dims + 2 or mask.shape[0] != n or mask.shape[1] != k + 1:
        raise ValueError(
            f"{op}: mask must be (N, K+1, *S_out) = ({n}, {k + 1}, {dims} sizes), got shape {tuple(mask.shape)}"
        )


def check_sparse_motion_warp(feature, kp_source, kp_driving, jacobian, padding_mode) -> None:
    """sparse_motion_warp's arguments (pyface.ops.sparse_motion_warp)."""
    op = "sparse_motion_warp"
    check_keypoint_arguments(op, feature, kp_source, kp_driving, jacobian, padding_mode)
