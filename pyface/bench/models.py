"""One training step of each model with pyface's kernels against the same model on the
reference backend (the eager formulation of every op): step time and peak memory. Both
start from the same weights, and their loss and gradients are checked against each other
before anything is timed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

import pyface
from pyface.bench.memory import peak_bytes
from pyface.bench.runner import Row, quartiles, time_side_by_side

# relative error allowed between the fused and the reference model's loss and gradients
TOLERANCE = {torch.float32: 1e-3}


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
        noise = torch.zeros(real.shape[0], real.shape[1], module.model.noise_dim, device=real.device)
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


def _model(case: ModelCase, backend: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)  # the same weights for every backend
    return case.build(backend).to(device).train()


def _loss_and_grads(case: ModelCase, model: nn.Module, batch: dict):
    torch.manual_seed(1)  # the same dropout masks
    loss = case.loss(model, batch)
    return loss.detach(), torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


def _rel_error(got: torch.Tensor, want: torch.Tensor, floor: float = 1e-30) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(floor)).item()


def _train_step(case: ModelCase, model: torch.nn.Module, batch: dict) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        case.loss(model, batch).backward()
        optimizer.step()

    return step


def run_model_case(case: ModelCase, device: torch.device, quick: bool, progress=None) -> list[Row]:
    batch = case.make_batch(case.batch_for(device, quick), device)
    backends = ["reference"] + [b for b in pyface.backends().get(device.type, [])
                                if b != "reference" and not (b == "triton" and device.type == "cpu")]
    want_loss, want_grads = _loss_and_grads(case, _model(case, "reference", device), batch)
    steps, errors = {}, {}
    for backend in backends:
        model = _model(case, backend, device)
        loss, grads = _loss_and_grads(case, model, batch)
        # a gradient that is zero up to rounding (GLA's b2) is measured against the largest one
        floor = 1e-4 * max(w.double().norm().item() for w in want_grads)
        error = max([_rel_error(loss, want_loss)] + [_rel_error(g, w, floor) for g, w in zip(grads, want_grads)])
        if error > TOLERANCE[torch.float32]:
            raise AssertionError(f"{case.name} on backend {backend}: loss/gradients differ from the reference "
                                 f"backend's by {error:.2e} (relative)")
        steps[backend], errors[backend] = _train_step(case, model, batch), error
    times = time_side_by_side(steps, device, quick)
    rows = []
    for backend, step in steps.items():
        q1, median, q3 = quartiles(times[backend])
        peak = peak_bytes(step, device)
        rows.append(Row(
            op="model", case=case.name, shape=tuple(batch[case.main_input].shape), batch_scaled=False,
            dtype="float32", mode="train step", impl="eager" if backend == "reference" else f"pyface[{backend}]",
            median_ms=median, q1_ms=q1, q3_ms=q3,
            peak_mb=None if peak is None else peak / 2**20, max_rel_error=errors[backend],
        ))
        if progress is not None:
            progress.update(1)
    for row in rows:
        row.speedup_vs_eager = rows[0].median_ms / row.median_ms
    return rows
