"""`pyface train`: a short training loop on the synthetic data, with a progress bar, the
losses of every step, checkpoints that resume, and a closing line with the first and last
loss (the generator's, for the GANs).

    pyface train glamor --synthetic --steps 50 --device cpu
    pyface train style-mapping --synthetic --steps 50 --device cpu
    pyface train atvgnet --synthetic --steps 50 --device cpu
    pyface train speech-gan --synthetic --steps 50 --device cpu
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pyface._backends import backends
from pyface._usage import UsageError
from pyface.data import emotion_batch, style_pair_batch, talking_sequence_batch
from pyface.models import (
    ATNet, FrameDiscriminator, GLAMORNet, LandmarkPCA, RegressionDiscriminator, SequenceDiscriminator,
    SpeechDrivenGenerator, StyleMapping, StyleMappingLoss, VGNet,
)
from pyface.models.facial_map import DRAWN_FACE_CONNECTIONS
from pyface.nn import DynamicPixelWiseLoss, LowerFaceL1Loss

MODELS = ("glamor", "style-mapping", "atvgnet", "speech-gan")


@dataclass
class TrainResult:
    first_step: int  # the first step this run took (after a resumed checkpoint's last)
    last_step: int
    first_loss: float  # the main loss of step 1 of the whole training, resumed or not
    last_loss: float
    seconds: float


@dataclass
class Trainer:
    """What one model's training needs: its modules and optimisers (saved in checkpoints),
    a fresh batch, and one optimisation step returning the named losses (main one first)."""
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    batches: Callable[[torch.Generator, int], dict]
    step: Callable[[dict], dict[str, float]]


def _single_loss(model: nn.Module, loss_fn, batches, lr: float) -> Trainer:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step(batch):
        loss = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    return Trainer({"model": model}, {"model": optimizer}, batches, step)


def _glamor(backend, device, lr):
    model = GLAMORNet(backend=backend).to(device)

    def loss_fn(batch):
        return F.cross_entropy(model(batch["face"], batch["context"]), batch["label"])

    return _single_loss(model, loss_fn, lambda g, n: emotion_batch(n, g, device), lr)


def _style_mapping(backend, device, lr, size: int = 64):
    model = StyleMapping(backend=backend).to(device)
    criterion = StyleMappingLoss(backend=backend).to(device)

    def loss_fn(batch):
        return criterion(model(batch["neutral"], batch["reference"])["image"], batch["reference"], batch["parsing"])

    return _single_loss(model, loss_fn, lambda g, n: style_pair_batch(n, g, size, device), lr)


def _adversarial(scores: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, 1.0 if real else 0.0))


def _talking_batches(device, frames: int, frame_size, feature: str):
    def batches(generator, n):
        return talking_sequence_batch(n, frames, generator, render=True, frame_size=frame_size, features=(feature,),
                                      device=device)

    return batches


def _atvgnet(backend, device, lr, frames: int = 8, frame_size=(64, 64)):
    pca = LandmarkPCA(9, 6).fit(talking_sequence_batch(32, 16, torch.Generator().manual_seed(12345))["landmarks"])
    at = ATNet(pca, hidden=128).to(device)
    vg = VGNet(DRAWN_FACE_CONNECTIONS, width=16).to(device)
    disc = RegressionDiscriminator(pca.num_components, width=16, hidden=64).to(device)
    pixelwise = DynamicPixelWiseLoss(beta=0.5, backend=backend)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, m in (("at", at), ("vg", vg), ("disc", disc))}

    def step(batch):
        real, landmarks = batch["frames"], batch["landmarks"]
        # audio -> landmarks
        at_loss = F.mse_loss(at(batch["mfcc"], landmarks[:, 0]), landmarks)
        # landmarks -> video: the dynamic pixel-wise loss, fooling the discriminator, and its
        # landmark regression agreeing with the landmarks the frames were drawn from
        out = vg(real[:, 0], landmarks[:, 0], landmarks)
        score, coefficients = disc(out["frames"])
        target = pca.transform(landmarks).to(coefficients)
        vg_loss = pixelwise(out["frames"], real, out["attention"]) + 0.01 * _adversarial(score, True) + \
            0.1 * F.mse_loss(coefficients, target)
        for name, loss in (("at", at_loss), ("vg", vg_loss)):
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
        real_score, real_coefficients = disc(real)
        fake_score, _ = disc(out["frames"].detach())
        d_loss = (_adversarial(real_score, True) + _adversarial(fake_score, False) +
                  F.mse_loss(real_coefficients, target))
        optimizers["disc"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["disc"].step()
        return {"generator": at_loss.item() + vg_loss.item(), "landmarks": at_loss.item(), "frames": vg_loss.item(),
                "discriminator": d_loss.item()}

    return Trainer({"at": at, "vg": vg, "disc": disc}, optimizers,
                   _talking_batches(device, frames, frame_size, "mfcc"), step)


def _speech_gan(backend, device, lr, frames: int = 8, frame_size=(64, 48)):
    generator = SpeechDrivenGenerator(frame_size, width=16, blocks=4).to(device)
    frame_disc = FrameDiscriminator(width=16).to(device)
    sequence_disc = SequenceDiscriminator(width=16, hidden=64).to(device)
    lower_face = LowerFaceL1Loss(backend=backend)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))
                  for name, m in (("generator", generator), ("frame_disc", frame_disc),
                                  ("sequence_disc", sequence_disc))}

    def step(batch):
        real, windows = batch["frames"], batch["windows"]
        still = real[:, 0]
        fake = generator(still, windows)
        g_loss = 400 * lower_face(fake, real) + _adversarial(frame_disc(fake, still), True) + \
            _adversarial(sequence_disc(fake, windows), True)
        optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers["generator"].step()
        fake = fake.detach()
        d_loss = (_adversarial(frame_disc(real, still), True) + _adversarial(frame_disc(fake, still), False) +
                  _adversarial(sequence_disc(real, windows), True) + _adversarial(sequence_disc(fake, windows), False))
        for name in ("frame_disc", "sequence_disc"):
            optimizers[name].zero_grad(set_to_none=True)
        d_loss.backward()
        for name in ("frame_disc", "sequence_disc"):
            optimizers[name].step()
        return {"generator": g_loss.item(), "discriminators": d_loss.item()}

    return Trainer({"generator": generator, "frame_disc": frame_disc, "sequence_disc": sequence_disc}, optimizers,
                   _talking_batches(device, frames, frame_size, "windows"), step)


_BUILDERS: dict[str, Callable] = {"glamor": _glamor, "style-mapping": _style_mapping, "atvgnet": _atvgnet,
                                  "speech-gan": _speech_gan}
_DEFAULT_LR = {"glamor": 1e-3, "style-mapping": 1e-3, "atvgnet": 1e-3, "speech-gan": 2e-4}


def train(model_name: str, steps: int, device: str = "cpu", *, backend: Optional[str] = None, batch_size: int = 16,
          lr: Optional[float] = None, seed: int = 0, checkpoint: Optional[str] = None, resume: bool = False,
          save_every: int = 0, progress: bool = True, log: Callable[[str], None] = tqdm.write) -> TrainResult:
    """Trains `model_name` for `steps` more steps on fresh synthetic batches (Adam). With a
    checkpoint path, saves modules, optimisers and data-generator state there at the end (and
    every `save_every` steps); resume=True continues from it."""
    if model_name not in _BUILDERS:
        raise UsageError(f"unknown model {model_name!r}; expected one of {', '.join(MODELS)}")
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    usable = backends().get(torch.device(device).type, [])
    if backend is not None and backend not in usable:
        raise UsageError(f"--backend {backend} cannot run on {device} here; usable: {', '.join(usable)}")
    if resume and checkpoint is None:
        raise UsageError("--resume needs --checkpoint FILE, the checkpoint to continue from")
    state = load_checkpoint(checkpoint, model_name) if resume else None
    torch.manual_seed(seed)
    device = torch.device(device)
    trainer = _BUILDERS[model_name](backend, device, lr or _DEFAULT_LR[model_name])
    generator = torch.Generator().manual_seed(seed)
    done, first_loss = 0, None
    if state is not None:
        for name, module in trainer.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, optimizer in trainer.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        generator.set_state(state["generator"])
        done, first_loss = state["step"], state["first_loss"]

    def save(step):
        if checkpoint is not None:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model_name": model_name, "step": step, "first_loss": first_loss,
                        "modules": {n: m.state_dict() for n, m in trainer.modules.items()},
                        "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
                        "generator": generator.get_state()}, checkpoint)

    for module in trainer.modules.values():
        module.train()
    start, main_loss = time.perf_counter(), float("nan")
    bar = tqdm(range(done + 1, done + steps + 1), desc=f"train {model_name}", disable=not progress, unit="step")
    for step in bar:
        losses = trainer.step(trainer.batches(generator, batch_size))
        main_loss = next(iter(losses.values()))
        first_loss = main_loss if first_loss is None else first_loss
        bar.set_postfix({name: f"{value:.4f}" for name, value in losses.items()})
        log(f"step {step} " + " ".join(f"{name} {value:.4f}" for name, value in losses.items()))
        if save_every and step % save_every == 0:
            save(step)
    save(done + steps)
    return TrainResult(done + 1, done + steps, first_loss, main_loss, time.perf_counter() - start)


def load_checkpoint(path: str, model_name: str) -> dict:
    """A `pyface train` checkpoint of model_name, on the CPU; UsageError for a missing or
    unreadable file, or one of another model."""
    if not Path(path).is_file():
        raise UsageError(f"no checkpoint file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several kinds for a file that is not a checkpoint
        raise UsageError(f"cannot read {path} as a checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or "model_name" not in state:
        raise UsageError(f"{path} is not a `pyface train` checkpoint")
    if state["model_name"] != model_name:
        raise UsageError(f"{path} holds a {state['model_name']} checkpoint, not a {model_name} one")
    return state


def main_train(args, device: str) -> int:
    if not args.synthetic:
        raise UsageError("only the synthetic data source is built in; pass --synthetic")
    result = train(args.model, args.steps, device,
                   backend=args.backend, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                   checkpoint=args.checkpoint, resume=args.resume, save_every=args.save_every)
    print(f"{args.model}: steps {result.first_step}-{result.last_step} in {result.seconds:.1f} s, "
          f"first loss {result.first_loss:.4f}, last loss {result.last_loss:.4f}")
    return 0
