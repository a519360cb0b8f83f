"""`pyface train`: a short training loop on the synthetic data, with a progress bar, the
losses of every step, checkpoints that resume, and a closing line with the first and last
loss (the generator's, for the GANs).

    pyface train glamor --synthetic --steps 50 --device cpu
    pyface train style-mapping --synthetic --steps 50 --device cpu
    pyface train atvgnet --synthetic --steps 50 --device cpu
    pyface train speech-gan --synthetic --steps 50 --device cpu

The style-aware talking head trains in four stages (pyface.pipelines.StyleAwareTalkingHead
puts them together): audio-motion, face-reader, style-mapping and style-generator.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pyface import _extension
from pyface._backends import backends
from pyface._usage import UsageError
from pyface.data import LANDMARKS, emotion_batch, talking_sequence_batch
from pyface.data.faces import LABEL
from pyface.data.styles import N_MELS, pattern_pair_batch, reading_batch, style_transfer_batch, styled_talking_batch
from pyface.evaluate import CURVE, MAIN_METRIC, MAX_TRAIN_SEED, evaluate_modules, plot_curve
from pyface.models import (
    ATNet,
    AudioMotionGenerator,
    FaceReader,
    FrameDiscriminator,
    GLAMORNet,
    LandmarkPCA,
    RegressionDiscriminator,
    SequenceDiscriminator,
    SpeechDrivenGenerator,
    StyleAwareGenerator,
    StyleAwareGeneratorLoss,
    StyleMapping,
    VGNet,
)
from pyface.models.facial_map import DRAWN_FACE_CONNECTIONS, render_facial_map
from pyface.models.style_references import mouth_descriptor, nearest_templates
from pyface.nn import DynamicPixelWiseLoss, LowerFaceL1Loss

MODELS = ("glamor", "style-mapping", "atvgnet", "speech-gan", "audio-motion", "face-reader", "style-generator")


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


def _glamor(backend, device, lr, config):
    model = GLAMORNet(backend=backend).to(device)

    def loss_fn(batch):
        return F.cross_entropy(model(batch["face"], batch["context"]), batch["label"])

    return _single_loss(model, loss_fn, lambda g, n: emotion_batch(n, g, device), lr)


def _mouth_weighted_mse(frames: torch.Tensor, target: torch.Tensor, parsing: torch.Tensor) -> torch.Tensor:
    """A squared error ten times heavier on the mouth and lips: under L1 terms, or a plain
    squared error, copying the source (right everywhere but the mouth's few percent of
    pixels) held for hundreds of steps, even on one fixed batch."""
    mouth = ((parsing >= LABEL["mouth"]) & (parsing <= LABEL["l_lip"])).unsqueeze(1)
    return ((1 + 9 * mouth) * (frames - target) ** 2).mean()


def _style_mapping(backend, device, lr, config):
    """The style-aware pipeline's style mapping: a face at rest and another speaker's
    expression -> the face with that expression (pattern_pair_batch), with the generator's
    objective: L1, the style-aware photometric loss and the mouth-weighted squared error."""
    size = config["size"]
    model = StyleMapping(backend=backend, residual=config["residual"]).to(device)
    criterion = StyleAwareGeneratorLoss(backend=backend).to(device)

    def loss_fn(batch):
        pattern = model(batch["neutral"], batch["reference"])["image"]
        return criterion(pattern, batch["pattern"], batch["pattern"], batch["parsing"]) + \
            config["frame_mse_weight"] * _mouth_weighted_mse(pattern, batch["pattern"], batch["parsing"])

    return _single_loss(model, loss_fn, lambda g, n: pattern_pair_batch(n, g, size, device), lr)


def _audio_motion(backend, device, lr, config):
    model = AudioMotionGenerator(N_MELS, len(LANDMARKS), hidden=config["hidden"], feature_dim=config["feature_dim"])
    model = model.to(device)

    def loss_fn(batch):  # the neutral style's landmarks, as offsets from the face at rest
        motion = batch["neutral_landmarks"] - batch["rest_landmarks"].unsqueeze(1)
        return F.mse_loss(model(batch["audio"]), motion)

    return _single_loss(model, loss_fn, lambda g, n: styled_talking_batch(n, config["frames"], g, render=False,
                                                                         device=device), lr)


def _face_reader(backend, device, lr, config):
    model = FaceReader(config["size"], width=config["width"]).to(device)

    def loss_fn(batch):
        # plus the mouth descriptor's error, weighted by mouth_weight: at 1.0 instead of 0.1 the
        # landmarks lost a third of their accuracy (NME 0.054 against 0.036) for a corner lift
        # read only a little better (correlation 0.29 against 0.17)
        reading = model(batch["image"])
        return F.mse_loss(reading["landmarks"], batch["landmarks"]) + \
            config["mouth_weight"] * F.mse_loss(reading["mouth"], mouth_descriptor(batch["landmarks"]))

    return _single_loss(model, loss_fn, lambda g, n: reading_batch(n, g, config["size"], device), lr)


def style_generator_inputs(batch: dict, size: int, style_mapping: StyleMapping | None = None) \
        -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A style_transfer_batch as the generator's per-frame inputs, (N * T, ...): the source,
    the facial map of the neutral-style landmarks, and the four style patterns: those a
    trained style mapping makes of the source and the style references (the pipeline's), or
    without one the true patterns; for samples without references, the source four times."""
    n, t = batch["frames"].shape[:2]
    source = batch["source"]
    patterns = batch["patterns"] if style_mapping is None else style_mapping.patterns(source, batch["references"])
    unreferenced = ~batch["referenced"].view(n, 1, 1, 1, 1)
    patterns = torch.where(unreferenced, source.unsqueeze(1), patterns)
    maps = render_facial_map(batch["neutral_landmarks"].flatten(0, 1), DRAWN_FACE_CONNECTIONS, (size, size))
    return source.repeat_interleave(t, 0), maps, patterns.repeat_interleave(t, 0)


def _style_generator(backend, device, lr, config):
    size = config["size"]
    model = StyleAwareGenerator(width=config["width"]).to(device)
    criterion = StyleAwareGeneratorLoss(config["photometric_weight"], backend=backend).to(device)
    # the style mapping whose patterns the generator learns from: frozen, saved with it
    style_mapping = StyleMapping(backend=backend, residual=config["style_mapping"]["residual"]).to(device) \
        if config["style_mapping"] else None

    def loss_fn(batch):
        source, maps, patterns = style_generator_inputs(batch, size, style_mapping)
        # the matched pattern: the style pattern of the template nearest the target frame's mouth
        matched = nearest_templates(mouth_descriptor(batch["landmarks"].flatten(0, 1)))
        matched = patterns[torch.arange(patterns.shape[0], device=patterns.device), matched]
        frames, target, parsing = model(source, maps, patterns), batch["frames"].flatten(0, 1), \
            batch["parsing"].flatten(0, 1)
        return criterion(frames, target, matched, parsing) + \
            config["frame_mse_weight"] * _mouth_weighted_mse(frames, target, parsing)

    trainer = _single_loss(model, loss_fn, lambda g, n: style_transfer_batch(
        n, config["frames"], g, size, unreferenced=config["unreferenced"], device=device), lr)
    if style_mapping is not None:
        trainer.modules["style_mapping"] = style_mapping
    return trainer


def _adversarial(scores: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, 1.0 if real else 0.0))


def _talking_batches(device, frames: int, frame_size, feature: str):
    def batches(generator, n):
        return talking_sequence_batch(n, frames, generator, render=True, frame_size=frame_size, features=(feature,),
                                      device=device)

    return batches


def _atvgnet(backend, device, lr, config):
    frames, frame_size = config["frames"], tuple(config["frame_size"])
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
        # landmark regression agreeing with the landmarks the frames were drawn from; plus a
        # squared error on the frames (frame_mse_weight, 0 for the paper's losses alone): the
        # mouth is a few percent of the pixels, and an L1 loss alone leaves the example frame
        # copied for thousands of steps, where the squared error's pull on the mouth's large
        # errors makes it open and close within a hundred (measured on the synthetic data)
        out = vg(real[:, 0], landmarks[:, 0], landmarks)
        score, coefficients = disc(out["frames"])
        target = pca.transform(landmarks).to(coefficients)
        vg_loss = pixelwise(out["frames"], real, out["attention"]) + 0.01 * _adversarial(score, True) + \
            0.1 * F.mse_loss(coefficients, target) + config["frame_mse_weight"] * F.mse_loss(out["frames"], real)
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


def _speech_gan(backend, device, lr, config):
    frames, frame_size = config["frames"], tuple(config["frame_size"])
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
                                  "speech-gan": _speech_gan, "audio-motion": _audio_motion,
                                  "face-reader": _face_reader, "style-generator": _style_generator}
_DEFAULT_LR = {"glamor": 1e-3, "style-mapping": 2e-4, "atvgnet": 1e-3, "speech-gan": 2e-4, "audio-motion": 2e-3,
               "face-reader": 1e-3, "style-generator": 1e-3}
# What each model is built with (saved in the checkpoint, so that eval and demo rebuild it).
DEFAULT_CONFIG: dict[str, dict] = {"glamor": {}, "style-mapping": {"size": 64, "residual": True, "frame_mse_weight": 10.0},
                                   "atvgnet": {"frames": 8, "frame_size": [64, 64], "frame_mse_weight": 10.0},
                                   "speech-gan": {"frames": 8, "frame_size": [64, 48]},
                                   "audio-motion": {"frames": 50, "hidden": 128, "feature_dim": 64},
                                   "face-reader": {"size": 64, "width": 16, "mouth_weight": 0.1},
                                   "style-generator": {"size": 64, "width": 32, "frames": 4,
                                                       "photometric_weight": 1.0, "frame_mse_weight": 10.0,
                                                       "unreferenced": 0.25, "style_mapping": None}}


@dataclass(frozen=True)
class Preset:
    """A training recipe: the steps, batch, learning rate (decayed along a cosine to a tenth
    by the last step), and how often to measure the learning curve."""
    steps: int
    batch_size: int
    lr: float
    eval_every: int


# `--preset cpu`: recipes sized for 15 minutes on a 2-core CPU. Measured (README, "What
# each model learns in 15 CPU minutes"), learning curve included: glamor 13.1 min,
# atvgnet 9.7, speech-gan 8.5; the style-aware talking head's four stages 26.5 in all
# (style-mapping 10.4, style-generator 13.1, face-reader 2.7, audio-motion 0.4).
PRESETS: dict[str, dict[str, Preset]] = {"cpu": {
    "glamor": Preset(steps=1500, batch_size=16, lr=1e-3, eval_every=250),
    "speech-gan": Preset(steps=700, batch_size=16, lr=2e-4, eval_every=100),
    "atvgnet": Preset(steps=600, batch_size=16, lr=1e-3, eval_every=100),
    "style-mapping": Preset(steps=650, batch_size=8, lr=2e-4, eval_every=50),
    # the style-aware talking head's other stages (with style-mapping, its whole CPU recipe)
    "audio-motion": Preset(steps=200, batch_size=16, lr=2e-3, eval_every=50),
    "face-reader": Preset(steps=600, batch_size=32, lr=1e-3, eval_every=100),
    "style-generator": Preset(steps=600, batch_size=4, lr=1e-3, eval_every=100),
}}


@contextlib.contextmanager
def _subnormals_flushed(device: torch.device):
    """Subnormal floats (the far tails of the keypoint Gaussians and softmaxes) make CPU
    arithmetic on them many times slower: style-mapping's step went from 0.8 s to 16 s
    within 30 steps. Flushing them to zero, in every CPU thread, changes values below
    1.2e-38 only."""
    flushing = device.type == "cpu" and _extension.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            _extension.set_flush_denormal(False)


def _cosine_lr(base: float, step: int, total: int) -> float:
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def train(model_name: str, steps: int | None = None, device: str = "cpu", *, backend: str | None = None,
          batch_size: int | None = None, lr: float | None = None, seed: int = 0,
          checkpoint: str | None = None, resume: bool = False, save_every: int = 0, preset: str | None = None,
          eval_every: int | None = None, style_mapping: str | None = None, progress: bool = True,
          log: Callable[[str], None] = tqdm.write) -> TrainResult:
    """Trains `model_name` for `steps` more steps on fresh synthetic batches (Adam). With a
    checkpoint path, saves modules, optimisers and data-generator state there at the end (and
    every `save_every` steps); resume=True continues from it. A preset supplies steps, batch
    size, learning rate and its schedule, and the learning-curve interval (explicit arguments
    win). Every `eval_every` steps the model's main metric on a small held-out set is
    measured; with a checkpoint, the curve is written beside it (`<checkpoint>.curve.json`).
    style_mapping (style-generator only): a style-mapping checkpoint whose Intermediate Style
    Patterns the generator learns from, as the pipeline will give them; saved with it, frozen."""
    if model_name not in _BUILDERS:
        raise UsageError(f"unknown model {model_name!r}; expected one of {', '.join(MODELS)}")
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    recipe = PRESETS[preset][model_name] if preset else None
    steps = steps if steps is not None else recipe.steps if recipe else 100
    batch_size = batch_size if batch_size is not None else recipe.batch_size if recipe else 16
    eval_every = eval_every if eval_every is not None else recipe.eval_every if recipe else 0
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if eval_every < 0:
        raise UsageError(f"--eval-every must be 0 (never) or more, got {eval_every}")
    if not 0 <= seed <= MAX_TRAIN_SEED:
        raise UsageError(f"--seed must lie in [0, {MAX_TRAIN_SEED}] (the seeds above are pyface eval's held-out "
                         f"data), got {seed}")
    usable = backends().get(torch.device(device).type, [])
    if backend is not None and backend not in usable:
        raise UsageError(f"--backend {backend} cannot run on {device} here; usable: {', '.join(usable)}")
    if resume and checkpoint is None:
        raise UsageError("--resume needs --checkpoint FILE, the checkpoint to continue from")
    if style_mapping is not None and (model_name != "style-generator" or resume):
        raise UsageError("--style-mapping belongs to a new style-generator training (a resumed one keeps its own)")
    state = load_checkpoint(checkpoint, model_name) if resume else None
    torch.manual_seed(seed)
    device = torch.device(device)
    config = state["config"] if state is not None else dict(DEFAULT_CONFIG[model_name])
    if style_mapping is not None:
        mapping_state = load_checkpoint(style_mapping, "style-mapping")
        # where its weights came from (the checkpoint holds them) and how it is built
        config["style_mapping"] = {"path": str(style_mapping), "residual": mapping_state["config"]["residual"]}
    base_lr = lr or (recipe.lr if recipe else _DEFAULT_LR[model_name])
    trainer = _BUILDERS[model_name](backend, device, base_lr, config)
    if style_mapping is not None:
        trainer.modules["style_mapping"].load_state_dict(mapping_state["modules"]["model"])
    generator = torch.Generator().manual_seed(seed)
    done, first_loss, curve = 0, None, []
    if state is not None:
        for name, module in trainer.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, optimizer in trainer.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        generator.set_state(state["generator"])
        done, first_loss, curve = state["step"], state["first_loss"], state.get("curve", [])
    schedule_total = done + steps  # the cosine runs over the whole training, resumed or not

    def save(step, final=False):
        if checkpoint is None:
            return
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model_name": model_name, "step": step, "first_loss": first_loss, "config": config,
                    "curve": curve, "modules": {n: m.state_dict() for n, m in trainer.modules.items()},
                    "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
                    "generator": generator.get_state()}, checkpoint)
        if curve:
            Path(f"{checkpoint}.curve.json").write_text(json.dumps(
                {"model": model_name, "metric": MAIN_METRIC[model_name], "points": curve}, indent=1) + "\n")
            if final:
                plot_curve(model_name, curve, f"{checkpoint}.curve.png")

    def measure(step, loss):
        value = evaluate_modules(model_name, trainer.modules, config, CURVE, device)["metrics"][MAIN_METRIC[model_name]]
        curve.append({"step": step, "seconds": round(time.perf_counter() - start, 1), "loss": loss,
                      **{key: value[key] for key in ("value", "floor", "ceiling", "gap_closed")}})
        log(f"step {step}: held-out {MAIN_METRIC[model_name]} {value['value']:.3f} "
            f"(floor {value['floor']:.3f}, ceiling {value['ceiling']:.3f}, gap closed {value['gap_closed']:.0%})")

    for module in trainer.modules.values():
        module.train()
    start, main_loss, since_measured = time.perf_counter(), float("nan"), []
    with _subnormals_flushed(device):
        bar = tqdm(range(done + 1, done + steps + 1), desc=f"train {model_name}", disable=not progress, unit="step")
        for step in bar:
            if recipe is not None:
                for optimizer in trainer.optimizers.values():
                    for group in optimizer.param_groups:
                        group["lr"] = _cosine_lr(base_lr, step - 1, schedule_total)
            losses = trainer.step(trainer.batches(generator, batch_size))
            main_loss = next(iter(losses.values()))
            first_loss = main_loss if first_loss is None else first_loss
            since_measured.append(main_loss)
            bar.set_postfix({name: f"{value:.4f}" for name, value in losses.items()})
            log(f"step {step} " + " ".join(f"{name} {value:.4f}" for name, value in losses.items()))
            if eval_every and (step % eval_every == 0 or step == done + steps):
                measure(step, sum(since_measured) / len(since_measured))  # the loss averaged since the last point
                since_measured.clear()
            if save_every and step % save_every == 0:
                save(step)
    save(done + steps, final=True)
    return TrainResult(done + 1, done + steps, first_loss, main_loss, time.perf_counter() - start)


def build_modules(model_name: str, state: dict, device="cpu") -> tuple[dict[str, nn.Module], dict]:
    """The modules of a checkpoint (as `load_checkpoint` returns it), weights loaded, and
    the config they were built with."""
    config = state["config"]
    trainer = _BUILDERS[model_name](None, torch.device(device), _DEFAULT_LR[model_name], config)
    for name, module in trainer.modules.items():
        module.load_state_dict(state["modules"][name])
    return trainer.modules, config


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
    state["config"] = {**DEFAULT_CONFIG[model_name], **state.get("config", {})}  # older checkpoints lack some
    return state


def main_train(args, device: str) -> int:
    if not args.synthetic:
        raise UsageError("only the synthetic data source is built in; pass --synthetic")
    result = train(args.model, args.steps, device,
                   backend=args.backend, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                   checkpoint=args.checkpoint, resume=args.resume, save_every=args.save_every, preset=args.preset,
                   eval_every=args.eval_every, style_mapping=args.style_mapping)
    print(f"{args.model}: steps {result.first_step}-{result.last_step} in {result.seconds:.1f} s, "
          f"first loss {result.first_loss:.4f}, last loss {result.last_loss:.4f}")
    return 0
