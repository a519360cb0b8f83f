"""`pyface train`: a short training loop on the synthetic data, with a progress bar, the loss
of every step, checkpoints that resume, and a closing line with the first and last loss.

    pyface train glamor --synthetic --steps 50 --device cpu
    pyface train style-mapping --synthetic --steps 50 --device cpu
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pyface.data import emotion_batch, style_pair_batch
from pyface.models import GLAMORNet, StyleMapping, StyleMappingLoss

MODELS = ("glamor", "style-mapping")


@dataclass
class TrainResult:
    first_step: int  # the first step this run took (after a resumed checkpoint's last)
    last_step: int
    first_loss: float  # the loss of step 1 of the whole training, resumed or not
    last_loss: float
    seconds: float


def _glamor(backend: Optional[str], device: torch.device):
    model = GLAMORNet(backend=backend).to(device)

    def loss_fn(batch):
        return F.cross_entropy(model(batch["face"], batch["context"]), batch["label"])

    def batches(generator, batch_size):
        return emotion_batch(batch_size, generator, device)

    return model, loss_fn, batches


def _style_mapping(backend: Optional[str], device: torch.device, size: int = 64):
    model = StyleMapping(backend=backend).to(device)
    criterion = StyleMappingLoss(backend=backend).to(device)

    def loss_fn(batch):
        return criterion(model(batch["neutral"], batch["reference"])["image"], batch["reference"], batch["parsing"])

    def batches(generator, batch_size):
        return style_pair_batch(batch_size, generator, size, device)

    return model, loss_fn, batches


_BUILDERS: dict[str, Callable] = {"glamor": _glamor, "style-mapping": _style_mapping}


def train(model_name: str, steps: int, device: str = "cpu", *, backend: Optional[str] = None, batch_size: int = 16,
          lr: float = 1e-3, seed: int = 0, checkpoint: Optional[str] = None, resume: bool = False,
          save_every: int = 0, progress: bool = True, log: Callable[[str], None] = tqdm.write) -> TrainResult:
    """Trains `model_name` for `steps` more steps on fresh synthetic batches (Adam). With a
    checkpoint path, saves model, optimiser and data-generator state there at the end (and
    every `save_every` steps); resume=True continues from it."""
    if model_name not in _BUILDERS:
        raise ValueError(f"unknown model {model_name!r}; expected one of {MODELS}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if resume and (checkpoint is None or not Path(checkpoint).exists()):
        raise FileNotFoundError(f"--resume needs an existing checkpoint, got {checkpoint!r}")
    torch.manual_seed(seed)
    device = torch.device(device)
    model, loss_fn, batches = _BUILDERS[model_name](backend, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    done, first_loss = 0, None
    if resume:
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["model_name"] != model_name:
            raise ValueError(f"checkpoint {checkpoint} holds {state['model_name']!r}, not {model_name!r}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        done, first_loss = state["step"], state["first_loss"]

    def save(step):
        if checkpoint is not None:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model_name": model_name, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "step": step, "first_loss": first_loss}, checkpoint)

    model.train()
    start, loss_value = time.perf_counter(), float("nan")
    bar = tqdm(range(done + 1, done + steps + 1), desc=f"train {model_name}", disable=not progress, unit="step")
    for step in bar:
        loss = loss_fn(batches(generator, batch_size))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        first_loss = loss_value if first_loss is None else first_loss
        bar.set_postfix(loss=f"{loss_value:.4f}")
        log(f"step {step} loss {loss_value:.4f}")
        if save_every and step % save_every == 0:
            save(step)
    save(done + steps)
    return TrainResult(done + 1, done + steps, first_loss, loss_value, time.perf_counter() - start)


def main_train(args) -> int:
    if not args.synthetic:
        raise SystemExit("pyface train: only the synthetic data source is built in; pass --synthetic")
    result = train(args.model, args.steps, args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                   backend=args.backend, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                   checkpoint=args.checkpoint, resume=args.resume, save_every=args.save_every)
    print(f"{args.model}: steps {result.first_step}-{result.last_step} in {result.seconds:.1f} s, "
          f"first loss {result.first_loss:.4f}, last loss {result.last_loss:.4f}")
    return 0
