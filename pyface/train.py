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
from tqdm import tqdm

from pyface import _extension
from pyface._backends import backends
from pyface._usage import UsageError
from pyface.evaluate import CURVE, MAIN_METRIC, MAX_TRAIN_SEED, evaluate_modules, plot_curve
from pyface.recipes import BUILDERS, DEFAULT_CONFIG, DEFAULT_LR, MODELS, load_checkpoint, load_weights


@dataclass
class TrainResult:
    first_step: int  # the first step this run took (after a resumed checkpoint's last)
    last_step: int
    first_loss: float  # the main loss of step 1 of the whole training, resumed or not
    last_loss: float
    seconds: float


@dataclass(frozen=True)
class Preset:
    """A training recipe: the steps, batch, learning rate (decayed along a cosine to a tenth
    by the last step), and how often to measure the learning curve."""
    steps: int
    batch_size: int
    lr: float
    eval_every: int


# `--preset cpu`: recipes sized for 15 minutes on a 2-core CPU, learning curve included (the
# style-aware talking head's four stages for 30 in all); the README's "What each model learns
# in 15 CPU minutes" and the style-aware section give the times measured.
PRESETS: dict[str, dict[str, Preset]] = {"cpu": {
    "glamor": Preset(steps=1500, batch_size=16, lr=1e-3, eval_every=250),
    "speech-gan": Preset(steps=700, batch_size=16, lr=2e-4, eval_every=100),
    "atvgnet": Preset(steps=600, batch_size=16, lr=1e-3, eval_every=100),
    "style-mapping": Preset(steps=650, batch_size=8, lr=2e-4, eval_every=50),
    # the style-aware talking head's other stages (with style-mapping, its whole CPU recipe)
    "audio-motion": Preset(steps=800, batch_size=16, lr=2e-3, eval_every=100),
    "face-reader": Preset(steps=600, batch_size=32, lr=1e-3, eval_every=100),
    "style-generator": Preset(steps=600, batch_size=4, lr=1e-3, eval_every=100),
}}


@contextlib.contextmanager
def _subnormals_flushed(device: torch.device):
    """Subnormal floats (the far tails of the keypoint Gaussians and softmaxes) make CPU
    arithmetic on them many times slower (style-mapping's steps slowed by more than ten
    times within 30 steps). Flushing them to zero, in every CPU thread, changes values below
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
    if model_name not in BUILDERS:
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
    base_lr = lr or (recipe.lr if recipe else DEFAULT_LR[model_name])
    trainer = BUILDERS[model_name](backend, device, base_lr, config)
    if style_mapping is not None:
        trainer.modules["style_mapping"].load_state_dict(mapping_state["modules"]["model"])
    generator = torch.Generator().manual_seed(seed)
    done, first_loss, curve = 0, None, []
    if state is not None:
        load_weights(trainer.modules, state, model_name)
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
