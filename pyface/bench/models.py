"""One training step of each model with pyface's kernels against the same model on the
reference backend (the eager formulation of every op): step time and peak memory. All start
from the same weights. Before anything is timed, each one's float32 loss and gradients are
measured against the reference model run in float64 on the same batch, and held to the bound
the eager float32 model's own error sets (pyface.bench.runner.judge)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pyface.bench.runner import Row, judge, mark_failed, time_group, timed_backends

# A model step's loss and gradients pass within this relative error of float64 outright;
# past it, within the runner's factor of the eager float32 model's own error.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ModelCase:
    name: str
    batch: int  # on CUDA
    cpu_batch: int
    build: Callable[[str], nn.Module]  # backend -> model
    make_batch: Callable[[int, torch.device], dict]
    loss: Callable[[nn.Module, dict], torch.Tensor]
    main_input: str  # the batch entry whose shape the report shows
    note: str = ""

    def batch_for(self, device: torch.device, quick: bool) -> int:
        return 2 if quick else (self.cpu_batch if device.type == "cpu" else self.batch)


def _glamor_case() -> ModelCase:
    from pyface.data import emotion_batch
    from pyface.models import GLAMORNet

    return ModelCase(
        name="GLAMORNet",
        batch=64,
        cpu_batch=16,
        build=lambda backend: GLAMORNet(backend=backend),
        make_batch=lambda n, device: emotion_batch(n, torch.Generator().manual_seed(0), device),
        loss=lambda model, batch: F.cross_entropy(model(batch["face"], batch["context"]), batch["label"]),
        main_input="face",
        note="face 96x96, context 112x112, Adam",
    )


class _WithLoss(nn.Module):
    """A generator and the pyface loss it trains with, as one module (the loss on `backend`)."""

    def __init__(self, model: nn.Module, criterion: nn.Module):
        super().__init__()
        self.model, self.criterion = model, criterion


def _style_mapping_case() -> ModelCase:
    from pyface.data import style_pair_batch
    from pyface.models import StyleMapping, StyleMappingLoss

    def loss(module, batch):
        isp = module.model(batch["neutral"], batch["reference"])["image"]
        return module.criterion(isp, batch["reference"], batch["parsing"])

    return ModelCase(
        name="StyleMapping",
        batch=32,
        cpu_batch=8,
        build=lambda backend: _WithLoss(StyleMapping(backend=backend), StyleMappingLoss(backend=backend)),
        make_batch=lambda n, device: style_pair_batch(n, torch.Generator().manual_seed(0), 64, device),
        loss=loss,
        main_input="neutral",
        note="64x64 images, K = 15, feature volume 16x8x16x16, Adam",
    )


def _talking_batch(n: int, device: torch.device, frame_size) -> dict:
    from pyface.data import talking_sequence_batch

    return talking_sequence_batch(n, 8, torch.Generator().manual_seed(0), render=True, frame_size=frame_size,
                                  features=("windows",), device=device)


def _vgnet_case() -> ModelCase:
    from pyface.models import VGNet
    from pyface.models.facial_map import DRAWN_FACE_CONNECTIONS
    from pyface.nn import DynamicPixelWiseLoss

    def loss(module, batch):
        real, landmarks = batch["frames"], batch["landmarks"]
        out = module.model(real[:, 0], landmarks[:, 0], landmarks)
        return module.criterion(out["frames"], real, out["attention"])

    return ModelCase(
        name="ATVGnet-VGNet",
        batch=16,
        cpu_batch=4,
        build=lambda backend: _WithLoss(VGNet(DRAWN_FACE_CONNECTIONS, width=16), DynamicPixelWiseLoss(backend=backend)),
        make_batch=lambda n, device: _talking_batch(n, device, (64, 64)),
        loss=loss,
        main_input="frames",
        note="8 frames of 64x64, dynamic pixel-wise loss, Adam",
    )


def _speech_gan_case() -> ModelCase:
    from pyface.models import SpeechDrivenGenerator
    from pyface.nn import LowerFaceL1Loss

    def loss(module, batch):
        real = batch["frames"]
        noise = real.new_zeros(real.shape[0], real.shape[1], module.model.noise_dim)
        return module.criterion(module.model(real[:, 0], batch["windows"], noise), real)

    return ModelCase(
        name="SpeechGAN-generator",
        batch=16,
        cpu_batch=4,
        build=lambda backend: _WithLoss(SpeechDrivenGenerator((64, 48), width=16), LowerFaceL1Loss(backend=backend)),
        make_batch=lambda n, device: _talking_batch(n, device, (64, 48)),
        loss=loss,
        main_input="frames",
        note="8 frames of 64x48, lower-face L1, Adam",
    )


def model_cases() -> list[ModelCase]:
    return [_glamor_case(), _style_mapping_case(), _vgnet_case(), _speech_gan_case()]


def _model(case: ModelCase, backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)  # the same weights for every backend
    return case.build(backend).to(device=device, dtype=dtype).train()


def _in_dtype(batch: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in batch.items()}


def _loss_and_grads(case: ModelCase, model: nn.Module, batch: dict):
    torch.manual_seed(1)  # the same dropout masks
    loss = case.loss(model, batch)
    return loss.detach(), torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


def _rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-30)).item()


class _Truth:
    """The float64 reference model's loss and gradients on a batch, and the error of any
    model's against them."""

    def __init__(self, case: ModelCase, batch: dict, device: torch.device):
        self.loss, self.grads = _loss_and_grads(case, _model(case, "reference", device, torch.float64),
                                                _in_dtype(batch, torch.float64))
        largest = max(g.norm().item() for g in self.grads)
        # Each gradient is measured against its own norm, or 1e-4 of the largest one when
        # smaller. A gradient that is zero up to float64 rounding (GLA's b2, a conv bias just
        # before BatchNorm) holds only float32 rounding noise in float32: it is measured
        # against the largest gradient, so that noise does not read as a relative error of 1%.
        self.scales = [largest if w.norm().item() <= 1e-9 * largest else max(w.norm().item(), 1e-4 * largest)
                       for w in self.grads]

    def error(self, loss: torch.Tensor, grads) -> float:
        return max([_rel_error(loss, self.loss)] +
                   [(g.double() - w).norm().item() / scale for g, w, scale in zip(grads, self.grads, self.scales)])


def check_model(case: ModelCase, backend: str, device: torch.device, batch: dict, truth: _Truth,
                eager_error: float | None) -> tuple[nn.Module, float, float]:
    """(model, error, tolerance) of the float32 model on `backend` against the float64
    truth; AccuracyError past the bound. eager_error: the eager float32 model's own error,
    None when `backend` is the reference one (the eager model itself)."""
    model = _model(case, backend, device)
    error = truth.error(*_loss_and_grads(case, model, batch))
    eager = error if eager_error is None else eager_error
    return model, error, judge(f"{case.name} on backend {backend}", error, TOLERANCE, lambda: eager)


def _train_step(case: ModelCase, model: torch.nn.Module, batch: dict) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        case.loss(model, batch).backward()
        optimizer.step()

    return step


def run_model_case(case: ModelCase, device: torch.device, quick: bool,
                   on_row: Callable[[Row], None] = lambda row: None) -> list[Row]:
    batch = case.make_batch(case.batch_for(device, quick), device)
    backends = ["reference"] + timed_backends(device)
    truth = _Truth(case, batch, device)
    eager_error = None  # the reference model comes first and sets it
    rows, steps = {}, {}
    for backend in backends:
        impl = "eager" if backend == "reference" else f"pyface[{backend}]"
        row = rows[backend] = Row(op="model", case=case.name, shape=tuple(batch[case.main_input].shape),
                                  batch_scaled=False, dtype="float32", mode="train step", impl=impl)
        try:
            model, row.max_rel_error, row.tolerance = check_model(case, backend, device, batch, truth, eager_error)
            steps[backend] = _train_step(case, model, batch)
        except Exception as error:  # reported as a failed row; the run goes on
            mark_failed(row, error)
        if backend == "reference":  # without it, the others are held to TOLERANCE alone
            eager_error = row.max_rel_error or 0.0
    time_group(rows, steps, device, quick)
    for row in rows.values():
        on_row(row)
    return list(rows.values())
