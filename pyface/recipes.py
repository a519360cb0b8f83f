"""How each model `pyface train` knows is built and trained: its modules, optimisers,
synthetic batches and optimisation step (a Trainer), the config it is built with (saved in
its checkpoints), and the rebuilding of a checkpoint's modules for pyface eval, pyface demo
and the pipelines. The training loop itself is pyface.train's."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pyface._usage import UsageError
from pyface.contracts.faces import LABEL, LANDMARKS
from pyface.contracts.mouth import MOUTH_TEMPLATES, mouth_descriptor, nearest_templates
from pyface.data import emotion_batch, talking_sequence_batch
from pyface.data.styles import (
    N_MELS,
    OPENING_RANGE,
    SMILE_RANGE,
    STYLE_NAMES,
    pattern_pair_batch,
    reading_batch,
    style_transfer_batch,
    styled_talking_batch,
)
from pyface.distributed import global_randn
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
    StyleEncoder,
    StyleMapping,
    VGNet,
)
from pyface.models.facial_map import DRAWN_FACE_CONNECTIONS, render_facial_map
from pyface.nn import DynamicPixelWiseLoss, LowerFaceL1Loss
from pyface.optimization import StepTools, frozen

MODELS = ("glamor", "style-mapping", "atvgnet", "speech-gan", "audio-motion", "face-reader", "style-generator")


@dataclass
class Trainer:
    """What one model's training needs: its modules and optimisers (saved in checkpoints),
    a fresh synthetic global batch, and one optimisation step on a (micro-)batch returning
    the named losses, detached (main one first); `generators` names the modules whose
    weights --ema averages."""
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    batches: Callable[[torch.Generator, int], dict]
    step: Callable[[dict], dict[str, torch.Tensor]]
    generators: tuple[str, ...] = ("model",)


def _single_loss(model: nn.Module, loss_fn, batches, tools: StepTools) -> Trainer:
    """A model trained on one loss; loss_fn(model, batch) calls the model it is given
    (the DistributedDataParallel one under torchrun)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=tools.lr)
    wrapped = tools.wrap(model)

    def step(batch):
        with tools.autocast():
            loss = loss_fn(wrapped, batch)
        tools.update(loss, optimizer)
        return {"loss": loss.detach()}

    return Trainer({"model": model}, {"model": optimizer}, batches, step)


def _glamor(tools: StepTools):
    def loss_fn(model, batch):
        return F.cross_entropy(model(batch["face"], batch["context"]), batch["label"])

    return _single_loss(GLAMORNet(backend=tools.backend).to(tools.device), loss_fn,
                        lambda g, n: emotion_batch(n, g, tools.device), tools)


def _mouth_weighted_mse(frames: torch.Tensor, target: torch.Tensor, parsing: torch.Tensor) -> torch.Tensor:
    """A squared error ten times heavier on the mouth and lips: under L1 terms, or a plain
    squared error, copying the source (right everywhere but the mouth's few percent of
    pixels) held for hundreds of steps, even on one fixed batch."""
    mouth = ((parsing >= LABEL["mouth"]) & (parsing <= LABEL["l_lip"])).unsqueeze(1)
    return ((1 + 9 * mouth) * (frames - target) ** 2).mean()


def _style_mapping(tools: StepTools):
    """The style-aware pipeline's style mapping: a face at rest and another speaker's
    expression -> the face with that expression (pattern_pair_batch), with the generator's
    objective: L1, the style-aware photometric loss and the mouth-weighted squared error."""
    config, device = tools.config, tools.device
    model = StyleMapping(backend=tools.backend, residual=config["residual"]).to(device)
    criterion = StyleAwareGeneratorLoss(backend=tools.backend).to(device)

    def loss_fn(model, batch):
        pattern = model(batch["neutral"], batch["reference"])["image"]
        return criterion(pattern, batch["pattern"], batch["pattern"], batch["parsing"]) + \
            config["frame_mse_weight"] * _mouth_weighted_mse(pattern, batch["pattern"], batch["parsing"])

    return _single_loss(model, loss_fn, lambda g, n: pattern_pair_batch(n, g, config["size"], device), tools)


def _audio_motion(tools: StepTools):
    """The speech's motion in a speaking style (AudioMotionGenerator, given the true style) and
    the reading of the style from the clip's four style references (StyleEncoder), trained
    side by side on the same clips (their parameters apart, so that Adam steps each alike
    whatever the two losses' scales); the style's error counted in units of its range."""
    config, device = tools.config, tools.device
    model = AudioMotionGenerator(N_MELS, len(LANDMARKS), hidden=config["hidden"], feature_dim=config["feature_dim"],
                                 style_dim=len(STYLE_NAMES)).to(device)
    style_encoder = StyleEncoder(MOUTH_TEMPLATES.shape[0], len(STYLE_NAMES)).to(device)
    style_range = torch.tensor([SMILE_RANGE[1] - SMILE_RANGE[0], OPENING_RANGE[1] - OPENING_RANGE[0]], device=device)
    optimizer = torch.optim.Adam([*model.parameters(), *style_encoder.parameters()], lr=tools.lr)
    motion_net, style_net = tools.wrap(model), tools.wrap(style_encoder)

    def step(batch):  # the styled landmarks, as offsets from the face at rest
        motion = batch["landmarks"] - batch["rest_landmarks"].unsqueeze(1)
        with tools.autocast():
            motion_loss = F.mse_loss(motion_net(batch["audio"], batch["style"]), motion)
            style_loss = (((style_net(batch["references"]) - batch["style"]) / style_range) ** 2).mean()
        tools.update(motion_loss + style_loss, optimizer)
        motion_loss, style_loss = motion_loss.detach(), style_loss.detach()
        return {"loss": motion_loss + style_loss, "motion": motion_loss, "style": style_loss}

    return Trainer({"model": model, "style_encoder": style_encoder}, {"model": optimizer},
                   lambda g, n: styled_talking_batch(n, config["frames"], g, config["size"], render=False,
                                                     references=True, device=device), step,
                   generators=("model", "style_encoder"))


def _face_reader(tools: StepTools):
    config, device = tools.config, tools.device
    model = FaceReader(config["size"], width=config["width"]).to(device)

    def loss_fn(model, batch):
        # plus the mouth descriptor's error, weighted by mouth_weight: at 1.0 instead of 0.1 the
        # landmarks lost a third of their accuracy (NME 0.054 against 0.036) for a corner lift
        # read only a little better (correlation 0.29 against 0.17)
        reading = model(batch["image"])
        return F.mse_loss(reading["landmarks"], batch["landmarks"]) + \
            config["mouth_weight"] * F.mse_loss(reading["mouth"], mouth_descriptor(batch["landmarks"]))

    return _single_loss(model, loss_fn, lambda g, n: reading_batch(n, g, config["size"], device), tools)


def style_generator_inputs(batch: dict, size: int, style_mapping: StyleMapping | None = None) -> dict[str, torch.Tensor]:
    """A style_transfer_batch as the generator's per-frame keyword inputs, (N * T, ...): the
    source, the facial map of the landmarks in the style, the four style patterns (those a
    trained style mapping makes of the source and the style references, the pipeline's, or
    without one the true patterns; for samples without references, the source as its own
    reference, as the pipeline makes them without a style source: the mapping's patterns of
    the source and the source, or the source itself for the true ones), and the source's and
    the frame's landmarks (for the generator's warp)."""
    n, t = batch["frames"].shape[:2]
    source = batch["source"]
    unreferenced = ~batch["referenced"].view(n, 1, 1, 1, 1)
    own = source.unsqueeze(1).expand_as(batch["references"])
    if style_mapping is None:
        patterns = torch.where(unreferenced, own, batch["patterns"])
    else:
        patterns = style_mapping.patterns(source, torch.where(unreferenced, own, batch["references"]))
    landmarks = batch["landmarks"].flatten(0, 1)
    return {"source": source.repeat_interleave(t, 0),
            "facial_map": render_facial_map(landmarks, DRAWN_FACE_CONNECTIONS, (size, size)),
            "style_patterns": patterns.repeat_interleave(t, 0),
            "source_landmarks": batch["rest_landmarks"].repeat_interleave(t, 0), "landmarks": landmarks}


def _style_generator(tools: StepTools):
    config, device, backend = tools.config, tools.device, tools.backend
    size = config["size"]
    model = StyleAwareGenerator(width=config["width"], warp_sigma=config["warp_sigma"], backend=backend).to(device)
    criterion = StyleAwareGeneratorLoss(config["photometric_weight"], backend=backend).to(device)
    # the style mapping whose patterns the generator learns from: frozen, saved with it
    style_mapping = StyleMapping(backend=backend, residual=config["style_mapping"]["residual"]).to(device) \
        if config["style_mapping"] else None

    def loss_fn(model, batch):
        inputs = style_generator_inputs(batch, size, style_mapping)
        # the matched pattern: the style pattern of the template nearest the target frame's mouth
        patterns = inputs["style_patterns"]
        matched = nearest_templates(mouth_descriptor(inputs["landmarks"]))
        matched = patterns[torch.arange(patterns.shape[0], device=patterns.device), matched]
        frames, target, parsing = model(**inputs), batch["frames"].flatten(0, 1), batch["parsing"].flatten(0, 1)
        return criterion(frames, target, matched, parsing) + \
            config["frame_mse_weight"] * _mouth_weighted_mse(frames, target, parsing)

    trainer = _single_loss(model, loss_fn, lambda g, n: style_transfer_batch(
        n, config["frames"], g, size, unreferenced=config["unreferenced"], device=device), tools)
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


def _atvgnet(tools: StepTools):
    config, device = tools.config, tools.device
    frames, frame_size = config["frames"], tuple(config["frame_size"])
    pca = LandmarkPCA(9, 6).fit(talking_sequence_batch(32, 16, torch.Generator().manual_seed(12345))["landmarks"])
    at = ATNet(pca, hidden=128).to(device)
    vg = VGNet(DRAWN_FACE_CONNECTIONS, width=16).to(device)
    disc = RegressionDiscriminator(pca.num_components, width=16, hidden=64).to(device)
    pixelwise = DynamicPixelWiseLoss(beta=0.5, backend=tools.backend)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=tools.lr) for name, m in (("at", at), ("vg", vg), ("disc", disc))}
    at_net, vg_net, disc_net = tools.wrap(at), tools.wrap(vg), tools.wrap(disc)

    def step(batch):
        real, landmarks = batch["frames"], batch["landmarks"]
        target = pca.transform(landmarks)
        with tools.autocast():
            # audio -> landmarks
            at_loss = F.mse_loss(at_net(batch["mfcc"], landmarks[:, 0]), landmarks)
            # landmarks -> video: the dynamic pixel-wise loss, fooling the discriminator, and its
            # landmark regression agreeing with the landmarks the frames were drawn from; plus a
            # squared error on the frames (frame_mse_weight, 0 for the paper's losses alone): the
            # mouth is a few percent of the pixels, and an L1 loss alone leaves the example frame
            # copied for thousands of steps, where the squared error's pull on the mouth's large
            # errors makes it open and close within a hundred (measured on the synthetic data).
            # The discriminator judges as itself (not its DDP wrapper), frozen: this step is the generator's.
            out = vg_net(real[:, 0], landmarks[:, 0], landmarks)
            with frozen(disc):
                score, coefficients = disc(out["frames"])
                vg_loss = pixelwise(out["frames"], real, out["attention"]) + 0.01 * _adversarial(score, True) + \
                    0.1 * F.mse_loss(coefficients, target.to(coefficients)) + \
                    config["frame_mse_weight"] * F.mse_loss(out["frames"], real)
        tools.update(at_loss, optimizers["at"])
        tools.update(vg_loss, optimizers["vg"])
        with tools.autocast():
            real_score, real_coefficients = disc_net(real)
            fake_score, _ = disc_net(out["frames"].detach())
            d_loss = (_adversarial(real_score, True) + _adversarial(fake_score, False) +
                      F.mse_loss(real_coefficients, target.to(real_coefficients)))
        tools.update(d_loss, optimizers["disc"])
        at_loss, vg_loss = at_loss.detach(), vg_loss.detach()
        return {"generator": at_loss + vg_loss, "landmarks": at_loss, "frames": vg_loss, "discriminator": d_loss.detach()}

    return Trainer({"at": at, "vg": vg, "disc": disc}, optimizers,
                   _talking_batches(device, frames, frame_size, "mfcc"), step, generators=("at", "vg"))


def _speech_gan(tools: StepTools):
    config, device = tools.config, tools.device
    frames, frame_size = config["frames"], tuple(config["frame_size"])
    generator = SpeechDrivenGenerator(frame_size, width=16, blocks=4).to(device)
    frame_disc = FrameDiscriminator(width=16).to(device)
    sequence_disc = SequenceDiscriminator(width=16, hidden=64).to(device)
    lower_face = LowerFaceL1Loss(backend=tools.backend)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=tools.lr, betas=(0.5, 0.999))
                  for name, m in (("generator", generator), ("frame_disc", frame_disc),
                                  ("sequence_disc", sequence_disc))}
    generator_net, frame_net, sequence_net = tools.wrap(generator), tools.wrap(frame_disc), tools.wrap(sequence_disc)

    def step(batch):
        real, windows = batch["frames"], batch["windows"]
        still = real[:, 0]
        # the per-frame noise of every sample of the global batch, this rank's rows kept
        noise = global_randn((real.shape[0], real.shape[1], generator.noise_dim), device=real.device, dtype=real.dtype)
        with tools.autocast():
            fake = generator_net(still, windows, noise)
            with frozen(frame_disc, sequence_disc):  # the generator's step: the discriminators judge as themselves
                g_loss = 400 * lower_face(fake, real) + _adversarial(frame_disc(fake, still), True) + \
                    _adversarial(sequence_disc(fake, windows), True)
        tools.update(g_loss, optimizers["generator"])
        fake = fake.detach()
        with tools.autocast():
            frame_loss = _adversarial(frame_net(real, still), True) + _adversarial(frame_net(fake, still), False)
            sequence_loss = _adversarial(sequence_net(real, windows), True) + \
                _adversarial(sequence_net(fake, windows), False)
        tools.update(frame_loss, optimizers["frame_disc"])
        tools.update(sequence_loss, optimizers["sequence_disc"])
        return {"generator": g_loss.detach(), "discriminators": (frame_loss + sequence_loss).detach()}

    return Trainer({"generator": generator, "frame_disc": frame_disc, "sequence_disc": sequence_disc}, optimizers,
                   _talking_batches(device, frames, frame_size, "windows"), step, generators=("generator",))


BUILDERS: dict[str, Callable] = {"glamor": _glamor, "style-mapping": _style_mapping, "atvgnet": _atvgnet,
                                  "speech-gan": _speech_gan, "audio-motion": _audio_motion,
                                  "face-reader": _face_reader, "style-generator": _style_generator}
DEFAULT_LR = {"glamor": 1e-3, "style-mapping": 2e-4, "atvgnet": 1e-3, "speech-gan": 2e-4, "audio-motion": 2e-3,
               "face-reader": 1e-3, "style-generator": 1e-3}
# What each model is built with (saved in the checkpoint, so that eval and demo rebuild it).
DEFAULT_CONFIG: dict[str, dict] = {"glamor": {}, "style-mapping": {"size": 64, "residual": True, "frame_mse_weight": 10.0},
                                   "atvgnet": {"frames": 8, "frame_size": [64, 64], "frame_mse_weight": 10.0},
                                   "speech-gan": {"frames": 8, "frame_size": [64, 48]},
                                   "audio-motion": {"frames": 50, "hidden": 128, "feature_dim": 64, "size": 64},
                                   "face-reader": {"size": 64, "width": 16, "mouth_weight": 0.1},
                                   "style-generator": {"size": 64, "width": 32, "frames": 4,
                                                       "photometric_weight": 1.0, "frame_mse_weight": 10.0, "warp_sigma": 0.08,
                                                       "unreferenced": 0.25, "style_mapping": None}}


def build_modules(model_name: str, state: dict, device="cpu") -> tuple[dict[str, nn.Module], dict]:
    """The modules of a checkpoint (as `load_checkpoint` returns it), weights loaded (the
    moving averages of a run trained with --ema), and the config they were built with."""
    config = state["config"]
    trainer = BUILDERS[model_name](StepTools(None, torch.device(device), DEFAULT_LR[model_name], config))
    load_weights(trainer.modules, state, model_name)
    for name, weights in (state.get("ema") or {}).items():  # trained with --ema: its averaged weights
        trainer.modules[name].load_state_dict(weights)
    return trainer.modules, config


def load_weights(modules: dict[str, nn.Module], state: dict, model_name: str) -> None:
    """A checkpoint's weights into the modules built from its config; UsageError where they do
    not fit (a checkpoint saved by an older pyface, whose model has changed since)."""
    for name, module in modules.items():
        if name not in state["modules"]:
            raise UsageError(f"the {model_name} checkpoint holds no '{name}' weights: it was saved by an older pyface, "
                             f"whose {model_name} was built otherwise; train it again")
        try:
            module.load_state_dict(state["modules"][name])
        except RuntimeError as error:
            raise UsageError(f"the {model_name} checkpoint's '{name}' weights do not fit this pyface's {model_name} "
                             f"(saved by an older pyface?); train it again. {str(error).splitlines()[0]}") from error


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
