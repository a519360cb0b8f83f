"""`pyface train`: the training loop, on the synthetic data or a real folder, in one process
or many (torchrun, DistributedDataParallel), with a progress bar, the losses of every step,
checkpoints that resume on any number of processes, and a closing line with the first and
last loss (the generator's, for the GANs). How each step is taken (precision, accumulation,
clipping, DDP) is pyface.optimization's; the processes and shards are pyface.distributed's.

    pyface train glamor --synthetic --steps 50 --device cpu
    pyface train speech-gan --data clips/ --steps 50 --device cpu
    torchrun --standalone --nproc_per_node 2 -m pyface train atvgnet --synthetic --sync-bn --steps 50

The style-aware talking head trains in four stages (pyface.pipelines.StyleAwareTalkingHead
puts them together): audio-motion, face-reader, style-mapping and style-generator.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from pyface import _extension, distributed
from pyface._backends import backends
from pyface._usage import UsageError
from pyface.data.real import real_batches
from pyface.evaluate import CURVE, MAIN_METRIC, MAX_TRAIN_SEED, SAMPLED, evaluate_modules, plot_curve, sample_images
from pyface.optimization import PRECISIONS, SCHEDULES, Controls, StepTools, WeightAverage, learning_rate
from pyface.recipes import BUILDERS, DEFAULT_CONFIG, DEFAULT_LR, MODELS, load_checkpoint, load_weights
from pyface.run_log import RunLog


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


def train(model_name: str, steps: int | None = None, device: str = "cpu", *, backend: str | None = None,
          batch_size: int | None = None, lr: float | None = None, seed: int = 0,
          checkpoint: str | None = None, resume: bool = False, save_every: int = 0, preset: str | None = None,
          eval_every: int | None = None, style_mapping: str | None = None, progress: bool = True,
          log: Callable[[str], None] = tqdm.write, data: str | None = None, workers: int = 0,
          controls: Controls | None = None, schedule: str | None = None, warmup: int = 0, ema: float = 0.0,
          log_dir: str | None = None, sample_every: int = 0) -> TrainResult:
    """Trains `model_name` for `steps` more steps (Adam), on fresh synthetic batches or, with
    `data`, on a folder of real samples (pyface.data.real). With a checkpoint path, saves
    modules, optimisers, data and random-stream state there at the end (and every
    `save_every` steps); resume=True continues from it. A preset supplies steps, batch size,
    learning rate and its schedule, and the learning-curve interval (explicit arguments
    win). Every `eval_every` steps the model's main metric on a small held-out set is
    measured; with a checkpoint, the curve is written beside it (`<checkpoint>.curve.json`).
    style_mapping (style-generator only): a style-mapping checkpoint whose Intermediate Style
    Patterns the generator learns from, as the pipeline will give them; saved with it, frozen.

    Under torchrun, every process runs this with the same arguments: batch_size is the
    global batch, each rank steps on its shard of it with DistributedDataParallel, and the
    steps are those of one process (within float rounding; with controls.sync_bn where the
    model has BatchNorm). Rank 0 alone writes. controls: precision, gradient accumulation
    and clipping, synchronised BatchNorm; schedule ("constant" or "cosine", default the
    preset's cosine or constant) after `warmup` linear steps; ema: the decay of an
    exponential moving average of the generators' weights, saved as the checkpoint's
    "ema" (pyface eval and demo use it); log_dir: metrics.csv (and TensorBoard events when
    tensorboard is installed) and, every `sample_every` steps, sample images."""
    if model_name not in BUILDERS:
        raise UsageError(f"unknown model {model_name!r}; expected one of {', '.join(MODELS)}")
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    recipe = PRESETS[preset][model_name] if preset else None
    steps = steps if steps is not None else recipe.steps if recipe else 100
    batch_size = batch_size if batch_size is not None else recipe.batch_size if recipe else 16
    eval_every = eval_every if eval_every is not None else recipe.eval_every if recipe else 0
    schedule = schedule or ("cosine" if recipe else "constant")
    controls = controls or Controls()
    _check_arguments(steps, batch_size, eval_every, seed, controls, schedule, warmup, ema, sample_every, workers)
    usable = backends().get(torch.device(device).type, [])
    if backend is not None and backend not in usable:
        raise UsageError(f"--backend {backend} cannot run on {device} here; usable: {', '.join(usable)}")
    if resume and checkpoint is None:
        raise UsageError("--resume needs --checkpoint FILE, the checkpoint to continue from")
    if style_mapping is not None and (model_name != "style-generator" or resume):
        raise UsageError("--style-mapping belongs to a new style-generator training (a resumed one keeps its own)")
    if sample_every and model_name not in SAMPLED:
        raise UsageError(f"--sample-every: {model_name} makes no images; the generators are {', '.join(SAMPLED)}")
    if sample_every and log_dir is None:
        raise UsageError("--sample-every needs --log-dir DIR, where the sample images go")
    state = load_checkpoint(checkpoint, model_name) if resume else None
    topology = distributed.setup(device)
    try:
        return _train(model_name, steps, topology, backend, batch_size, lr, seed, checkpoint, state, save_every,
                      recipe, eval_every, style_mapping, progress, log, data, workers, controls, schedule, warmup,
                      ema, log_dir, sample_every)
    finally:
        distributed.teardown(topology)


def _check_arguments(steps, batch_size, eval_every, seed, controls, schedule, warmup, ema, sample_every, workers):
    world_size = distributed.launched_world_size()
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if controls.accumulate < 1:
        raise UsageError(f"--accumulate must be at least 1, got {controls.accumulate}")
    if batch_size % (world_size * controls.accumulate):
        raise UsageError(f"--batch-size {batch_size} is the global batch: it must split evenly into {world_size} "
                         f"process(es) x {controls.accumulate} micro-batch(es) (--accumulate)")
    if eval_every < 0 or sample_every < 0:
        raise UsageError("--eval-every and --sample-every must be 0 (never) or more")
    if not 0 <= seed <= MAX_TRAIN_SEED:
        raise UsageError(f"--seed must lie in [0, {MAX_TRAIN_SEED}] (the seeds above are pyface eval's held-out "
                         f"data), got {seed}")
    if controls.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {controls.precision!r}")
    if schedule not in SCHEDULES:
        raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if controls.clip_grad < 0 or warmup < 0 or workers < 0:
        raise UsageError("--clip-grad, --warmup and --workers must be 0 or more")
    if not 0 <= ema < 1:
        raise UsageError(f"--ema is a decay in [0, 1) (0: no average), got {ema}")


def _train(model_name, steps, topology, backend, batch_size, lr, seed, checkpoint, state, save_every, recipe,
           eval_every, style_mapping, progress, log, data, workers, controls, schedule, warmup, ema, log_dir,
           sample_every) -> TrainResult:
    main = topology.is_main
    log = log if main else (lambda line: None)
    torch.manual_seed(seed)  # every rank alike: the same weights, and the same global random stream
    device = topology.device
    config = state["config"] if state is not None else dict(DEFAULT_CONFIG[model_name])
    if style_mapping is not None:
        mapping_state = load_checkpoint(style_mapping, "style-mapping")
        # where its weights came from (the checkpoint holds them) and how it is built
        config["style_mapping"] = {"path": str(style_mapping), "residual": mapping_state["config"]["residual"]}
    base_lr = lr or (recipe.lr if recipe else DEFAULT_LR[model_name])
    tools = StepTools(backend, device, base_lr, config, topology, controls)
    trainer = BUILDERS[model_name](tools)
    if style_mapping is not None:
        trainer.modules["style_mapping"].load_state_dict(mapping_state["modules"]["model"])
    generator = torch.Generator().manual_seed(seed)
    done, first_loss, curve = 0, None, []
    if state is not None:
        load_weights(trainer.modules, state, model_name)
        for name, optimizer in trainer.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        generator.set_state(state["generator"])
        if "rng" in state:  # the global stream (dropout, noise); older checkpoints lack it
            torch.set_rng_state(state["rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
        if tools.scaler is not None and state.get("scaler"):
            tools.scaler.load_state_dict(state["scaler"])
        done, first_loss, curve = state["step"], state["first_loss"], state.get("curve", [])
    average = None
    if ema:
        ema_state = state.get("ema") if state is not None else None
        average = WeightAverage({n: trainer.modules[n] for n in trainer.generators}, ema, ema_state)
    schedule_total = done + steps  # the schedule runs over the whole training, resumed or not
    source = real_batches(model_name, data, config, batch_size, seed, done, topology, workers) if data else None

    def save(step, final=False):
        if checkpoint is None or not main:
            return
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model_name": model_name, "step": step, "first_loss": first_loss, "config": config,
                    "curve": curve, "modules": {n: m.state_dict() for n, m in trainer.modules.items()},
                    "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
                    "generator": generator.get_state(), "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "scaler": tools.scaler.state_dict() if tools.scaler is not None else None,
                    "ema": average.state if average is not None else None,
                    "data": str(data) if data else "synthetic", "world_size": topology.world_size}, checkpoint)
        if curve:
            Path(f"{checkpoint}.curve.json").write_text(json.dumps(
                {"model": model_name, "metric": MAIN_METRIC[model_name], "points": curve}, indent=1) + "\n")
            if final:
                plot_curve(model_name, curve, f"{checkpoint}.curve.png")

    def evaluated_modules():  # the averaged weights when --ema keeps them
        if average is None:
            return trainer.modules
        modules = {name: copy.deepcopy(module) for name, module in trainer.modules.items()}
        for name, weights in average.state.items():
            modules[name].load_state_dict(weights)
        return modules

    def measure(step, loss):
        value = evaluate_modules(model_name, evaluated_modules(), config, CURVE, device)["metrics"][MAIN_METRIC[model_name]]
        curve.append({"step": step, "seconds": round(time.perf_counter() - start, 1), "loss": loss,
                      **{key: value[key] for key in ("value", "floor", "ceiling", "gap_closed")}})
        log(f"step {step}: held-out {MAIN_METRIC[model_name]} {value['value']:.3f} "
            f"(floor {value['floor']:.3f}, ceiling {value['ceiling']:.3f}, gap closed {value['gap_closed']:.0%})")
        return value["value"]

    for module in trainer.modules.values():
        module.train()
    metrics = RunLog(log_dir, model_name) if main and log_dir else None
    start, main_loss, since_measured = time.perf_counter(), float("nan"), []
    with _subnormals_flushed(device):
        bar = tqdm(range(done + 1, done + steps + 1), desc=f"train {model_name}", disable=not (progress and main),
                   unit="step")
        for step in bar:
            step_start = time.perf_counter()
            rate = learning_rate(base_lr, step - 1, schedule_total, schedule, warmup)
            for optimizer in trainer.optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = rate
            batch = next(source) if source else distributed.shard(trainer.batches(generator, batch_size), topology)
            losses = None
            for index, micro in enumerate(_split(batch, controls.accumulate)):
                with tools.micro_batch(last=index == controls.accumulate - 1):
                    taken = trainer.step(micro)
                losses = taken if losses is None else {k: losses[k] + v for k, v in taken.items()}
            tools.finish_step()
            if average is not None:
                average.update(trainer.modules)
            # the global batch's losses: every rank's, averaged over the micro-batches
            values = distributed.mean_over_ranks(torch.stack(list(losses.values())).float() / controls.accumulate)
            losses = dict(zip(losses, values.tolist()))
            main_loss = next(iter(losses.values()))
            first_loss = main_loss if first_loss is None else first_loss
            since_measured.append(main_loss)
            samples_per_s = batch_size / (time.perf_counter() - step_start)
            bar.set_postfix({**{name: f"{value:.4f}" for name, value in losses.items()}, "samples/s": f"{samples_per_s:.1f}"})
            log(f"step {step} " + " ".join(f"{name} {value:.4f}" for name, value in losses.items()))
            held_out = None
            if eval_every and (step % eval_every == 0 or step == done + steps) and main:
                held_out = measure(step, sum(since_measured) / len(since_measured))  # loss averaged since the last point
                since_measured.clear()
            if metrics is not None:
                metrics.write(step, time.perf_counter() - start, samples_per_s, rate, losses,
                              {MAIN_METRIC[model_name]: held_out} if held_out is not None else {})
                if sample_every and step % sample_every == 0:
                    metrics.image(step, sample_images(model_name, evaluated_modules(), config, device))
            if save_every and step % save_every == 0:
                save(step)
    save(done + steps, final=True)
    if metrics is not None:
        metrics.close()
    return TrainResult(done + 1, done + steps, first_loss, main_loss, time.perf_counter() - start)


def _split(batch: dict, parts: int) -> list[dict]:
    """A batch as `parts` equal micro-batches, in order."""
    if parts == 1:
        return [batch]
    chunks = {name: value.chunk(parts) for name, value in batch.items()}
    return [{name: chunk[i] for name, chunk in chunks.items()} for i in range(parts)]


def main_train(args, device: str) -> int:
    if args.synthetic == bool(args.data):
        raise UsageError("pass one data source: --synthetic (pyface.data's drawn data) or --data DIR (a folder of "
                         "real samples)")
    controls = Controls(precision=args.precision, accumulate=args.accumulate, clip_grad=args.clip_grad,
                        sync_bn=args.sync_bn)
    result = train(args.model, args.steps, device,
                   backend=args.backend, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                   checkpoint=args.checkpoint, resume=args.resume, save_every=args.save_every, preset=args.preset,
                   eval_every=args.eval_every, style_mapping=args.style_mapping, data=args.data, workers=args.workers,
                   controls=controls, schedule=args.schedule, warmup=args.warmup, ema=args.ema, log_dir=args.log_dir,
                   sample_every=args.sample_every)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{args.model}: steps {result.first_step}-{result.last_step} in {result.seconds:.1f} s, "
              f"first loss {result.first_loss:.4f}, last loss {result.last_loss:.4f}")
    return 0
