"""How `pyface train` takes an optimisation step, whatever the model: mixed precision
(autocast, and a gradient scaler for float16), gradient accumulation over micro-batches,
gradient clipping, DistributedDataParallel under torchrun, the learning-rate schedule
(warmup, then constant or cosine) and an exponential moving average of the generators'
weights. Each control defaults to what changes nothing."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from pyface.distributed import Topology, convert_batchnorm, convert_dropout

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Controls:
    """The training controls a user sets (pyface train's flags)."""
    precision: str = "fp32"
    accumulate: int = 1  # micro-batches per optimiser step: the batch is split, not repeated
    clip_grad: float = 0.0  # the largest gradient norm per optimiser (0: no clipping)
    sync_bn: bool = False  # BatchNorm with the global batch's statistics


class StepTools:
    """What a model's Trainer (pyface.recipes) builds and steps with: its backend, device,
    learning rate and config; `wrap` for each trained module, `autocast` around each forward,
    `update(loss, optimizer)` for each optimiser's step. The loop sets `last_micro` before
    each micro-batch: the optimisers step on the last one, with the gradients of all."""

    def __init__(self, backend: str | None, device: torch.device, lr: float, config: dict,
                 topology: Topology | None = None, controls: Controls | None = None):
        self.backend, self.device, self.lr, self.config = backend, torch.device(device), lr, config
        self.topology = topology or Topology(0, 1, self.device)
        self.controls = controls = controls or Controls()
        self.dtype = PRECISIONS[controls.precision]
        # float16's narrow range underflows small gradients: scale the loss, unscale before the step
        self.scaler = torch.amp.GradScaler(self.device.type) if controls.precision == "fp16" else None
        self.last_micro = True
        self.parallel: list[DistributedDataParallel] = []

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module to call in the training step (the unwrapped one is what is saved):
        its Dropout draws per global batch, its BatchNorm synchronised with --sync-bn, and
        under torchrun a DistributedDataParallel around it."""
        convert_dropout(module)
        if self.controls.sync_bn:
            convert_batchnorm(module)
        if not self.topology.distributed:
            return module
        device_ids = [self.device] if self.device.type == "cuda" else None
        wrapped = DistributedDataParallel(module, device_ids=device_ids)
        self.parallel.append(wrapped)
        return wrapped

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def update(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Adds loss's gradients (a micro-batch's share); on the last micro-batch, steps the
        optimiser (unscaled, clipped) and clears its gradients."""
        loss = loss / self.controls.accumulate
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if not self.last_micro:
            return
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if self.controls.clip_grad:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, self.controls.clip_grad)
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def micro_batch(self, last: bool) -> contextlib.ExitStack:
        """The context of one micro-batch: before the last, DDP keeps its gradients local
        (no all-reduce until the last micro-batch's backward)."""
        self.last_micro = last
        stack = contextlib.ExitStack()
        if not last:
            for wrapped in self.parallel:
                stack.enter_context(wrapped.no_sync())
        return stack

    def finish_step(self) -> None:
        if self.scaler is not None:
            self.scaler.update()


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """The modules' parameters take no gradient inside (a GAN's discriminator while the
    generator steps: its gradients would otherwise pile onto its own next step's)."""
    parameters = [p for module in modules for p in module.parameters() if p.requires_grad]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad_(True)


def learning_rate(base: float, step: int, total: int, schedule: str = "constant", warmup: int = 0) -> float:
    """The learning rate of step `step` (0-based) of `total`: a linear warmup over the first
    `warmup` steps, then constant, or a cosine from base down to a tenth of it at the end."""
    factor = 1.0
    if schedule == "cosine":
        progress = min(max(step - warmup, 0), total - warmup) / max(total - warmup, 1)
        factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup:
        factor *= (step + 1) / warmup
    return base * factor


class WeightAverage:
    """An exponential moving average of modules' weights (floating-point parameters and
    buffers; integer buffers such as BatchNorm's count are copied)."""

    def __init__(self, modules: dict[str, nn.Module], decay: float, state: dict | None = None):
        self.decay = decay
        self.state = state or {name: {key: value.detach().clone() for key, value in module.state_dict().items()}
                               for name, module in modules.items()}

    @torch.no_grad()
    def update(self, modules: dict[str, nn.Module]) -> None:
        for name, averaged in self.state.items():
            for key, value in modules[name].state_dict().items():
                if value.is_floating_point():
                    averaged[key].lerp_(value.detach(), 1 - self.decay)
                else:
                    averaged[key].copy_(value)


__all__ = ["Controls", "PRECISIONS", "SCHEDULES", "StepTools", "WeightAverage", "frozen", "learning_rate"]
