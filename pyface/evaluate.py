"""`pyface eval`: how well a `pyface train` checkpoint does its task on held-out synthetic
data, every metric beside its floor (a trivial baseline) and its ceiling (the ground truth
scored the same way), and the share of the gap between them the model closed.

    pyface eval glamor --checkpoint runs/glamor.pt --json runs/glamor-eval.json

Held-out data come from generators seeded at HELD_OUT_SEED and above, a range `pyface train
--seed` refuses, so no evaluated sample was trained on.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from pyface import metrics
from pyface._modes import eval_mode
from pyface.contracts.mouth import mouth_descriptor
from pyface.data import EMOTIONS, LANDMARKS, emotion_batch, talking_sequence_batch
from pyface.data.styles import (
    STYLE_NAMES,
    SpeakingStyle,
    pattern_pair_batch,
    reading_batch,
    style_transfer_batch,
    styled_talking_batch,
)
from pyface.recipes import build_modules, load_checkpoint, style_generator_inputs

HELD_OUT_SEED = 1 << 40
MAX_TRAIN_SEED = (1 << 31) - 1
# Held-out set sizes: a full `pyface eval`, and the small one `pyface train --eval-every` uses
# for its learning curve.
FULL, CURVE = "full", "curve"
_SIZES = {"glamor": {FULL: 1400, CURVE: 280}, "speech-gan": {FULL: 48, CURVE: 12}, "atvgnet": {FULL: 48, CURVE: 12},
          "style-mapping": {FULL: 160, CURVE: 32}, "audio-motion": {FULL: 64, CURVE: 16},
          "face-reader": {FULL: 512, CURVE: 128}, "style-generator": {FULL: 96, CURVE: 24}}
CLIP_FRAMES = 50  # 2 s at 25 fps: long enough for the lip-sync correlation to mean something
SHIFT_FRAMES = 5  # the time-shifted ground truth the lip-sync score must rank below the truth: 0.2 s
# The metric each model's learning curve follows and its preset's target is set on.
MAIN_METRIC = {"glamor": "accuracy", "speech-gan": "lip_sync", "atvgnet": "lip_sync", "style-mapping": "mouth_ssim",
               "audio-motion": "mouth_correlation", "face-reader": "landmark_nme", "style-generator": "mouth_ssim"}


def _batches(total: int, size: int):
    for start in range(0, total, size):
        yield min(size, total - start)


def _eval_glamor(modules: dict[str, nn.Module], config: dict, samples: int, device) -> dict:
    model = modules["model"]
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    labels, ambiguous, predicted, face_only = [], [], [], []
    for n in _batches(samples, 100):
        batch = emotion_batch(n, generator, device)
        predicted.append(model(batch["face"], batch["context"]).argmax(1).cpu())
        # the ablation: the context removed, a black scene in its place
        face_only.append(model(batch["face"], torch.zeros_like(batch["context"])).argmax(1).cpu())
        labels.append(batch["label"].cpu())
        ambiguous.append(batch["ambiguous"].cpu())
    labels, ambiguous = torch.cat(labels), torch.cat(ambiguous)
    predicted, face_only = torch.cat(predicted), torch.cat(face_only)
    classes = len(EMOTIONS)

    def accuracy(guess, subset):
        return (guess[subset] == labels[subset]).float().mean().item()

    def majority(subset):  # the trivial classifier: always the most frequent class of the subset
        return torch.bincount(labels[subset], minlength=classes).max().item() / subset.sum().item()

    everything = torch.ones_like(ambiguous)
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    with_context, without = accuracy(predicted, ambiguous), accuracy(face_only, ambiguous)
    floor_is, ceiling_is = "the majority class", "the true labels"
    return {
        "metrics": {
            "accuracy": metrics.scored(accuracy(predicted, everything), majority(everything), 1.0,
                                       floor_is=floor_is, ceiling_is=ceiling_is),
            "accuracy_clear": metrics.scored(accuracy(predicted, ~ambiguous), majority(~ambiguous), 1.0,
                                             floor_is=floor_is, ceiling_is=ceiling_is),
            "accuracy_ambiguous": metrics.scored(with_context, majority(ambiguous), 1.0,
                                                 floor_is=floor_is, ceiling_is=ceiling_is),
            "accuracy_ambiguous_face_only": metrics.scored(without, majority(ambiguous), 1.0,
                                                           floor_is=floor_is, ceiling_is=ceiling_is),
            "context_gain_ambiguous": metrics.scored(with_context - without, 0.0, 1.0 - without,
                                                     floor_is="no gain", ceiling_is="every face-only miss fixed"),
        },
        "confusion": {"classes": list(EMOTIONS), "rows_true_columns_predicted": confusion.tolist()},
        "samples": {"total": samples, "ambiguous": int(ambiguous.sum())},
    }


def _image_metrics(frames: Tensor, truth: Tensor, floor_frames: Tensor, floor_is: str) -> dict:
    """PSNR (gap on the squared error: the truth's own PSNR is infinite) and SSIM. For
    clips, (N, T, 3, H, W), frame 0 is left out: it is the model's input, its floor's copy."""
    if frames.dim() == 5:
        frames, truth, floor_frames = frames[:, 1:], truth[:, 1:], floor_frames[:, 1:]
    # an image identical to its truth counts as 100 dB, not inf (which would make the mean inf)
    error = metrics.mean_squared_error(frames, truth).clamp_min(1e-10)
    floor_error = metrics.mean_squared_error(floor_frames, truth).clamp_min(1e-10)
    return {
        "psnr": metrics.scored(metrics.psnr_of_error(error).mean().item(), metrics.psnr_of_error(floor_error).mean().item(),
                               None, value_error=error.mean().item(), floor_error=floor_error.mean().item(),
                               floor_is=floor_is, ceiling_is="the true frames (infinite PSNR; gap on the MSE)"),
        "ssim": metrics.scored(metrics.ssim(frames, truth).mean().item(), metrics.ssim(floor_frames, truth).mean().item(),
                               1.0, floor_is=floor_is, ceiling_is="the true frames"),
    }


def _lip_sync_metric(frames: Tensor, truth: Tensor, waveform: Tensor) -> dict:
    still = truth[:, :1].expand_as(truth)
    entry = metrics.scored(metrics.lip_sync(frames, waveform).mean().item(), metrics.lip_sync(still, waveform).mean().item(),
                           metrics.lip_sync(truth, waveform).mean().item(), floor_is="the still first frame",
                           ceiling_is="the true frames")
    entry["truth_shifted_0.2s"] = metrics.lip_sync(truth.roll(SHIFT_FRAMES, dims=1), waveform).mean().item()
    return entry


def _talking_clips(config: dict, clips: int, feature: str, device):
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    return [talking_sequence_batch(n, CLIP_FRAMES, generator, render=True, frame_size=tuple(config["frame_size"]),
                                   features=(feature,), device=device) for n in _batches(clips, 8)]


def _eval_speech_gan(modules, config, clips, device) -> dict:
    generator = modules["generator"]
    torch.manual_seed(HELD_OUT_SEED)  # the generator's per-frame noise
    fakes, truths, waveforms = [], [], []
    for batch in _talking_clips(config, clips, "windows", device):
        fakes.append(generator(batch["frames"][:, 0], batch["windows"]).cpu())
        truths.append(batch["frames"].cpu())
        waveforms.append(batch["waveform"].cpu())
    fake, truth, waveform = torch.cat(fakes), torch.cat(truths), torch.cat(waveforms)
    still = truth[:, :1].expand_as(truth)
    return {"metrics": {"lip_sync": _lip_sync_metric(fake, truth, waveform),
                        **_image_metrics(fake, truth, still, "the still first frame")},
            "samples": {"clips": clips, "frames_per_clip": CLIP_FRAMES}}


def _eval_atvgnet(modules, config, clips, device) -> dict:
    at, vg = modules["at"], modules["vg"]
    predicted, true_landmarks, from_truth, end_to_end, truths, waveforms = [], [], [], [], [], []
    for batch in _talking_clips(config, clips, "mfcc", device):
        frames, landmarks = batch["frames"], batch["landmarks"]
        guess = at(batch["mfcc"], landmarks[:, 0])
        predicted.append(guess.cpu())
        true_landmarks.append(landmarks.cpu())
        from_truth.append(vg(frames[:, 0], landmarks[:, 0], landmarks)["frames"].cpu())
        end_to_end.append(vg(frames[:, 0], landmarks[:, 0], guess)["frames"].cpu())
        truths.append(frames.cpu())
        waveforms.append(batch["waveform"].cpu())
    predicted, true_landmarks = torch.cat(predicted), torch.cat(true_landmarks)
    truth, waveform = torch.cat(truths), torch.cat(waveforms)
    mean_landmarks = at.pca.mean.cpu().view(-1, 2).expand_as(true_landmarks)
    held = true_landmarks[:, :1].expand_as(true_landmarks)
    landmarks = metrics.scored(metrics.landmark_error(predicted, true_landmarks).mean().item(),
                               metrics.landmark_error(mean_landmarks, true_landmarks).mean().item(), 0.0,
                               floor_is="the mean landmarks of the training set", ceiling_is="the true landmarks")
    # a harder trivial baseline than the mean: the example frame's landmarks, held still
    landmarks["example_landmarks_held"] = metrics.landmark_error(held, true_landmarks).mean().item()
    images = _image_metrics(torch.cat(from_truth), truth, truth[:, :1].expand_as(truth), "the example frame copied")
    return {"metrics": {"lip_sync": _lip_sync_metric(torch.cat(end_to_end), truth, waveform),
                        "lip_sync_vg_true_landmarks": _lip_sync_metric(torch.cat(from_truth), truth, waveform),
                        "landmark_nme": landmarks, **images},
            "samples": {"clips": clips, "frames_per_clip": CLIP_FRAMES},
            "notes": "lip_sync: the whole audio -> landmarks -> frames path; lip_sync_vg_true_landmarks, psnr and "
                     "ssim: VG-net alone, fed the true landmarks; landmark_nme: AT-net alone (audio -> landmarks)"}


def _eval_style_mapping(modules, config, pairs, device) -> dict:
    model = modules["model"]
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    outputs, patterns, neutrals = [], [], []
    for n in _batches(pairs, 16):
        batch = pattern_pair_batch(n, generator, config["size"], device)
        outputs.append(model(batch["neutral"], batch["reference"])["image"].clamp(0, 1).cpu())
        patterns.append(batch["pattern"].cpu())
        neutrals.append(batch["neutral"].cpu())
    output, pattern, neutral = torch.cat(outputs), torch.cat(patterns), torch.cat(neutrals)
    scores = _image_metrics(output, pattern, neutral, "the neutral face copied")
    crop = metrics.mouth_region
    scores["mouth_ssim"] = metrics.scored(metrics.ssim(crop(output), crop(pattern)).mean().item(),
                                          metrics.ssim(crop(neutral), crop(pattern)).mean().item(), 1.0,
                                          floor_is="the neutral face copied", ceiling_is="the true pattern")
    return {"metrics": scores, "samples": {"pairs": pairs},
            "notes": "a face at rest and another speaker showing an expression -> the face with that expression "
                     "(the Intermediate Style Pattern), against the face drawn so"}


def lip_gap(landmarks: Tensor) -> Tensor:
    """(..., 9, 2) landmarks -> (...) the distance between the lips' middles."""
    return (landmarks[..., LANDMARKS.index("lower_lip"), :] - landmarks[..., LANDMARKS.index("upper_lip"), :]).norm(dim=-1)


def _eval_audio_motion(modules, config, clips, device) -> dict:
    model, style_encoder = modules["model"], modules["style_encoder"]
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    predicted, from_read_style, unstyled, truth, rest, styles, read_styles = [], [], [], [], [], [], []
    for n in _batches(clips, 16):
        batch = styled_talking_batch(n, CLIP_FRAMES, generator, config["size"], render=False, references=True,
                                     device=device)
        at_rest = batch["rest_landmarks"].unsqueeze(1)
        read_style = style_encoder(batch["references"])
        predicted.append((model(batch["audio"], batch["style"]) + at_rest).cpu())
        from_read_style.append((model(batch["audio"], read_style) + at_rest).cpu())
        unstyled.append((model(batch["audio"], SpeakingStyle.neutral(n).as_tensor().to(device)) + at_rest).cpu())
        truth.append(batch["landmarks"].cpu())
        rest.append(batch["rest_landmarks"].cpu())
        styles.append(batch["style"].cpu())
        read_styles.append(read_style.cpu())
    predicted, from_read_style, unstyled, truth = map(torch.cat, (predicted, from_read_style, unstyled, truth))
    style, read_style = torch.cat(styles), torch.cat(read_styles)
    rest = torch.cat(rest).unsqueeze(1).expand_as(truth)
    other_clip = truth.roll(1, dims=0)  # the true motion of another clip: right kind of motion, wrong timing
    correlation = lambda guess: metrics.correlation(lip_gap(guess), lip_gap(truth)).mean().item()  # noqa: E731
    nme = lambda guess: metrics.landmark_error(guess, truth).mean().item()  # noqa: E731
    scores = {
        "mouth_correlation": metrics.scored(correlation(predicted), correlation(other_clip), 1.0,
                                            floor_is="another clip's true motion", ceiling_is="the true motion"),
        "landmark_nme": metrics.scored(nme(predicted), nme(rest), 0.0, floor_is="the face held at rest",
                                       ceiling_is="the true landmarks"),
        "landmark_nme_style_read": metrics.scored(nme(from_read_style), nme(unstyled), 0.0,
                                                  floor_is="the motion in the neutral style",
                                                  ceiling_is="the true landmarks")}
    for index, name in enumerate(STYLE_NAMES):
        scores[f"style_read_{name}_correlation"] = metrics.scored(
            metrics.correlation(read_style[:, index], style[:, index]).item(), 0.0, 1.0, floor_is="no reading (0)",
            ceiling_is="the true style")
    return {"metrics": scores, "samples": {"clips": clips, "frames_per_clip": CLIP_FRAMES},
            "notes": "mouth_correlation: per clip, the Pearson correlation of the predicted lip gap with the true one; "
                     "mouth_correlation and landmark_nme: the motion given the clip's true speaking style; "
                     "landmark_nme_style_read: given the style the StyleEncoder reads from the clip's four style "
                     "references; style_read_*_correlation: that reading against the true style, over the clips"}


def _eval_face_reader(modules, config, images, device) -> dict:

    model = modules["model"]
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    predicted, mouths, truth = [], [], []
    for n in _batches(images, 128):
        batch = reading_batch(n, generator, config["size"], device)
        reading = model(batch["image"])
        predicted.append(reading["landmarks"].cpu())
        mouths.append(reading["mouth"].cpu())
        truth.append(batch["landmarks"].cpu())
    predicted, mouth, truth = torch.cat(predicted), torch.cat(mouths), torch.cat(truth)
    mean = truth.mean(0, keepdim=True).expand_as(truth)
    true_mouth = mouth_descriptor(truth)
    scores = {"landmark_nme": metrics.scored(metrics.landmark_error(predicted, truth).mean().item(),
                                             metrics.landmark_error(mean, truth).mean().item(), 0.0,
                                             floor_is="the mean landmarks", ceiling_is="the true landmarks")}
    for index, name in enumerate(("opening", "corner_lift")):
        scores[f"mouth_{name}_correlation"] = metrics.scored(
            metrics.correlation(mouth[:, index], true_mouth[:, index]).item(), 0.0, 1.0, floor_is="no reading (0)",
            ceiling_is="the true mouth descriptor")
    return {"metrics": scores, "samples": {"images": images}}


def _eval_style_generator(modules, config, samples, device) -> dict:

    model = modules["model"]
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    frames, neutral, truth, sources = [], [], [], []
    for n in _batches(samples, 16):
        batch = style_transfer_batch(n, 2, generator, config["size"], device=device)
        inputs = style_generator_inputs(batch, config["size"], modules.get("style_mapping"))
        frames.append(model(**inputs).cpu())
        # the floor of style transfer: no references, the source in place of every pattern
        source = inputs["source"]
        neutral.append(model(**{**inputs, "style_patterns": source.unsqueeze(1).expand_as(inputs["style_patterns"])}).cpu())
        truth.append(batch["frames"].flatten(0, 1).cpu())
        sources.append(source.cpu())
    frames, neutral, truth, source = torch.cat(frames), torch.cat(neutral), torch.cat(truth), torch.cat(sources)
    return {"metrics": _mouth_metrics(frames, truth, source, neutral, "the source (the face at rest) copied"),
            "samples": {"identities": samples, "frames_each": 2},
            "notes": "on the mouth region; inputs: the style patterns (those of the style mapping the generator was "
                     "trained with, else the true ones) and the facial map of the true landmarks (in the style); "
                     "neutral_patterns: the same frames generated with the source in place of every pattern (no "
                     "style references)"}


def _mouth_metrics(frames: Tensor, truth: Tensor, floor_frames: Tensor, neutral: Tensor, floor_is: str) -> dict:
    """PSNR (of the mean squared error over all frames; gap on it) and SSIM of the mouth
    region, where speech and speaking style show, and the same for frames made without style
    references (`neutral_patterns`)."""
    crop = metrics.mouth_region
    error = lambda guess: metrics.mean_squared_error(crop(guess), crop(truth)).mean().item()  # noqa: E731
    ssim = lambda guess: metrics.ssim(crop(guess), crop(truth)).mean().item()  # noqa: E731
    psnr = lambda guess: metrics.psnr_of_error(torch.tensor(error(guess))).item()  # noqa: E731
    return {
        "mouth_psnr": {**metrics.scored(psnr(frames), psnr(floor_frames), None, value_error=error(frames),
                                        floor_error=error(floor_frames), floor_is=floor_is,
                                        ceiling_is="the true frames (infinite PSNR; gap on the MSE)"),
                       "neutral_patterns": psnr(neutral)},
        "mouth_ssim": {**metrics.scored(ssim(frames), ssim(floor_frames), 1.0, floor_is=floor_is,
                                        ceiling_is="the true frames"), "neutral_patterns": ssim(neutral)}}


_EVALUATORS: dict[str, Callable] = {"glamor": _eval_glamor, "speech-gan": _eval_speech_gan, "atvgnet": _eval_atvgnet,
                                    "style-mapping": _eval_style_mapping, "audio-motion": _eval_audio_motion,
                                    "face-reader": _eval_face_reader, "style-generator": _eval_style_generator}


@contextlib.contextmanager
def _held_out_run(modules: dict[str, nn.Module], device: torch.device):
    """The modules in eval mode, and the global random streams (which some evaluations seed)
    restored afterwards: a training that measures itself keeps its own stream."""
    with eval_mode(*modules.values()), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield


@torch.no_grad()
def evaluate_modules(model_name: str, modules: dict[str, nn.Module], config: dict, size: str = FULL,
                     device="cpu") -> dict:
    """The metrics of trained modules (as `pyface.train` builds them) on the held-out data;
    the modules are put in eval mode and back in the mode they were in, and the global
    random streams are left as they were."""
    device = torch.device(device)
    with _held_out_run(modules, device):
        return _EVALUATORS[model_name](modules, config, _SIZES[model_name][size], device)


# The generators, whose training `pyface train --sample-every` shows in sample images.
SAMPLED = ("speech-gan", "atvgnet", "style-mapping", "style-generator")
_SAMPLE_FRAMES = 8  # frames of a held-out clip per sample row


@torch.no_grad()
def sample_images(model_name: str, modules: dict[str, nn.Module], config: dict, device="cpu") -> Tensor:
    """(rows, columns, 3, H, W) in [0, 1]: what the generator makes of held-out inputs, each
    made row above its truth. Talking heads: one clip's first frames; style-mapping: four
    (neutral, reference, made, true) pairs; style-generator: four (source, made, true) frames."""
    device = torch.device(device)
    with _held_out_run(modules, device):
        torch.manual_seed(HELD_OUT_SEED)  # the speech GAN's noise
        generator = torch.Generator().manual_seed(HELD_OUT_SEED)
        if model_name in ("speech-gan", "atvgnet"):
            feature = "windows" if model_name == "speech-gan" else "mfcc"
            clip = talking_sequence_batch(1, _SAMPLE_FRAMES, generator, render=True,
                                          frame_size=tuple(config["frame_size"]), features=(feature,), device=device)
            frames, still = clip["frames"], clip["frames"][:, 0]
            if model_name == "speech-gan":
                made = modules["generator"](still, clip["windows"])
            else:
                landmarks = clip["landmarks"]
                made = modules["vg"](still, landmarks[:, 0], modules["at"](clip["mfcc"], landmarks[:, 0]))["frames"]
            return torch.cat([made, frames]).clamp(0, 1).cpu()
        if model_name == "style-mapping":
            pairs = pattern_pair_batch(4, generator, config["size"], device)
            made = modules["model"](pairs["neutral"], pairs["reference"])["image"]
            return torch.stack([pairs["neutral"], pairs["reference"], made, pairs["pattern"]], 1).clamp(0, 1).cpu()
        if model_name == "style-generator":
            batch = style_transfer_batch(4, 1, generator, config["size"], device=device)
            made = modules["model"](**style_generator_inputs(batch, config["size"], modules.get("style_mapping")))
            return torch.stack([batch["source"], made, batch["frames"][:, 0]], 1).clamp(0, 1).cpu()
    raise ValueError(f"sample_images: {model_name} makes no images; the generators are {', '.join(SAMPLED)}")


def evaluate(model_name: str, checkpoint: str, device: str = "cpu") -> dict:
    """`pyface eval`: the checkpoint's metrics, in the JSON shape the command writes."""

    state = load_checkpoint(checkpoint, model_name)
    modules, config = build_modules(model_name, state, device)
    result = evaluate_modules(model_name, modules, config, FULL, device)
    return {"model": model_name, "checkpoint": str(checkpoint), "steps": state["step"], **result}


def plot_curve(model_name: str, curve: list[dict], path: str) -> None:
    """The learning curve as a PNG: the training loss, and the held-out main metric between
    its floor and ceiling, against the step (and the wall time). Skipped without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in curve]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    loss_axis.plot(steps, [p["loss"] for p in curve], marker=".")
    loss_axis.set(xlabel="step", ylabel="training loss (mean since the previous point)",
                  title=f"{model_name}: training loss")
    metric = MAIN_METRIC[model_name]
    metric_axis.plot(steps, [p["value"] for p in curve], marker=".", label="model")
    metric_axis.axhline(curve[-1]["floor"], color="grey", linestyle="--", label="floor")
    if curve[-1]["ceiling"] is not None:
        metric_axis.axhline(curve[-1]["ceiling"], color="green", linestyle="--", label="ceiling (ground truth)")
    metric_axis.set(xlabel=f"step ({curve[-1]['seconds'] / 60:.1f} min in all)", ylabel=f"held-out {metric}",
                    title=f"{model_name}: held-out {metric}")
    metric_axis.legend(loc="best", fontsize="small")
    figure.savefig(path, dpi=110)
    plt.close(figure)


_SCORED_KEYS = ("value", "floor", "ceiling", "gap_closed", "floor_is", "ceiling_is")  # metrics.scored's; the rest are extras


def format_result(result: dict) -> str:
    steps = result["steps"] if isinstance(result["steps"], int) else \
        ", ".join(f"{stage} {count}" for stage, count in result["steps"].items())
    lines = [f"{result['model']} ({result['checkpoint']}, {steps} steps), held-out synthetic data:",
             f"  {'metric':30s} {'floor':>8s} {'model':>8s} {'ceiling':>8s} {'gap closed':>10s}"]
    for name, m in result["metrics"].items():
        ceiling = "inf" if m["ceiling"] is None else f"{m['ceiling']:.3f}"
        lines.append(f"  {name:30s} {m['floor']:8.3f} {m['value']:8.3f} {ceiling:>8s} {m['gap_closed']:10.1%}")
        lines += [f"    {key}: {value:.3f}" for key, value in m.items() if key not in _SCORED_KEYS]
    if "confusion" in result:
        names = result["confusion"]["classes"]
        lines.append("  confusion (rows: true, columns: predicted): " + " ".join(f"{n[:4]:>5s}" for n in names))
        for name, row in zip(names, result["confusion"]["rows_true_columns_predicted"]):
            lines.append(f"    {name:>8s} " + " ".join(f"{v:5d}" for v in row))
    return "\n".join(lines)


STYLE_CLIPS = 24  # held-out clips of the style-aware pipeline's evaluation


def style_statistics(frames: Tensor, reader: nn.Module) -> Tensor:
    """(N, T, 3, H, W) clips -> (N, 2) their speaking style as it shows: the mean lip curve
    (metrics.lip_curve: the smile) and the 90th percentile of the mouth's opening as the face
    reader (frozen) reads it (how wide the loud syllables open). The smile is read in the
    pixels: the reader's corner lift follows the truth too little (see its evaluation)."""
    opening = reader.read(frames.flatten(0, 1))["mouth"][:, 0].view(frames.shape[:2]).to(frames.device)
    return torch.stack([metrics.lip_curve(frames).mean(-1), opening.quantile(0.9, dim=-1)], dim=-1)


def style_transfer_scores(made: Tensor, made_neutral: Tensor, drawn: Tensor, drawn_neutral: Tensor) -> dict:
    """(N, 2) style statistics (style_statistics) of the pipeline's clips with and without style
    references, of the identities drawn speaking in the style and in the neutral style -> the
    style-transfer metrics of `pyface eval style-aware` (see evaluate_style_aware)."""
    true_style, output_style = drawn - drawn_neutral, made - made_neutral
    spread = true_style.std(0).clamp_min(1e-6)  # each statistic in units of its spread over the clips
    error = lambda style: ((style - true_style).abs() / spread).mean().item()  # noqa: E731
    scores = {"style_error": {**metrics.scored(error(output_style), error(torch.zeros_like(true_style)), 0.0,
                                               floor_is="the pipeline without style references (neutral patterns)",
                                               ceiling_is="the identity drawn speaking in that style"),
                              "absolute_value": error(made - drawn_neutral),
                              "absolute_floor": error(made_neutral - drawn_neutral)}}
    for index, name in enumerate(STYLE_NAMES):
        scores[f"{name}_follows_style"] = metrics.scored(
            metrics.correlation(output_style[:, index], true_style[:, index]).item(), 0.0, 1.0,
            floor_is="the pipeline without style references (no change: no correlation)",
            ceiling_is="the identity drawn speaking in that style")
        scores[f"{name}_error"] = metrics.scored(
            ((output_style - true_style)[:, index].abs() / spread[index]).mean().item(),
            (true_style[:, index].abs() / spread[index]).mean().item(), 0.0,
            floor_is="the pipeline without style references", ceiling_is="the identity drawn speaking in that style")
    return scores


@torch.no_grad()
def evaluate_style_aware(checkpoints: str, device="cpu", clips: int | None = None) -> dict:
    """`pyface eval style-aware`: the pipeline from the checkpoints directory on held-out clips
    in which a new identity speaks new speech in the style another speaker shows in a clip of
    their own. Style transfer is read from the frames (style_statistics, the pipeline's face
    reader frozen) as the change the style makes: the pipeline's frames with the style
    references less its frames of the same face and speech without them, against the identity
    drawn speaking in that style less the same drawn in the neutral style. What the statistics
    owe to the face, and the generator's rendering of every mouth (its blur), cancel. The floor
    is the pipeline without style references (no change), the ceiling the drawn change.
    `absolute_*`: the frames' statistics less the neutral drawing's, which keep the rendering's
    own offset."""
    from pyface.data.faces import draw_faces
    from pyface.data.styles import random_styles, speaker_identities, speaking
    from pyface.pipelines import StyleAwareTalkingHead

    clips = clips or STYLE_CLIPS
    pipeline = StyleAwareTalkingHead.from_checkpoints(checkpoints, device)
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    size = pipeline.size
    outputs, projected, neutral, motion_only, truths, neutral_truths, sources, waveforms = [], [], [], [], [], [], [], []
    for n in _batches(clips, 8):
        style, speakers, identities = random_styles(n, generator), speaker_identities(n, generator), \
            speaker_identities(n, generator)
        shown = styled_talking_batch(n, CLIP_FRAMES, generator, size, styles=style, identities=speakers)
        target = styled_talking_batch(n, CLIP_FRAMES, generator, size, styles=style, identities=identities)
        for i in range(n):
            face, speech, style_frames = target["source"][i:i + 1].to(device), target["waveform"][i], \
                shown["frames"][i].to(device)
            # the pipeline's frames with and without the style source (its forward, in parts), and
            # the style's motion rendered with the neutral patterns: the style's share the motion carries
            patterns, style_read = pipeline.style(face, style_frames)
            neutral_patterns, neutral_style = pipeline.style(face, None)
            keypoints = pipeline.keypoints(face, speech, style_read)
            outputs.append(pipeline.render(face, keypoints, patterns).cpu())
            motion_only.append(pipeline.render(face, keypoints, neutral_patterns).cpu())
            neutral.append(pipeline.render(face, pipeline.keypoints(face, speech, neutral_style), neutral_patterns).cpu())
            projected.append(pipeline(face, speech, style_frames, shown["waveform"][i]).cpu())
        truths.append(target["frames"])
        said_neutrally = speaking(identities, SpeakingStyle.neutral(n), target["envelope"])
        neutral_truths.append(draw_faces(said_neutrally, (size, size))["image"].view_as(target["frames"]))
        sources.append(target["source"])
        waveforms.append(target["waveform"])
    output, neutral, truth = torch.stack(outputs), torch.stack(neutral), torch.cat(truths)
    source, waveform = torch.cat(sources), torch.cat(waveforms)
    read = lambda frames: style_statistics(frames.to(device), pipeline.face_reader).cpu()  # noqa: E731
    made_neutral, drawn, drawn_neutral = read(neutral), read(truth), read(torch.cat(neutral_truths))
    scores = style_transfer_scores(read(output), made_neutral, drawn, drawn_neutral)
    motion_only_error = style_transfer_scores(read(torch.stack(motion_only)), made_neutral, drawn, drawn_neutral)["style_error"]
    scores["style_error_motion_only"] = {name: value for name, value in motion_only_error.items()
                                         if not name.startswith("absolute_")}
    scores["lip_sync"] = _lip_sync_metric(output, truth, waveform)
    # the same with the recording's features projected onto the style speaker's speech
    scores["lip_sync"]["with_manifold_projection"] = metrics.lip_sync(torch.stack(projected), waveform).mean().item()
    scores.update(_mouth_metrics(output.flatten(0, 1), truth.flatten(0, 1),
                                 source.unsqueeze(1).expand_as(truth).flatten(0, 1), neutral.flatten(0, 1),
                                 "the face at rest copied"))
    return {"model": "style-aware", "checkpoint": str(checkpoints), "steps": pipeline.steps, "metrics": scores,
            "samples": {"clips": clips, "frames_per_clip": CLIP_FRAMES},
            "notes": "a clip's style statistics: its mean lip curve (read in the pixels) and 90th percentile "
                     "opening (read by the face reader); the style's change: the pipeline's frames' statistics less "
                     "those of its frames without style references, the truth's less those of the identity drawn "
                     "saying the same in the neutral style; style_error: |change in the frames - change in the "
                     "truth| in units of the truth's spread over the clips, averaged over the two statistics "
                     "(smile_error, opening_error: each alone); absolute_value / absolute_floor: the same with the "
                     "frames' statistics less the neutral drawing's (the generator's rendering offset kept); "
                     "*_follows_style: the changes' correlation over the clips with the truth's; every clip's "
                     "identity, speech and style speaker are new; "
                     "style_error_motion_only: style_error of frames made with the style read from the references "
                     "but the neutral patterns, as without references (the face as its own reference): what the "
                     "motion carries; the difference from style_error is the Intermediate Style Patterns' share; "
                     "lip_sync.with_manifold_projection: the recording's features projected onto the style "
                     "speaker's speech (its 2 s clip)"}


def main_eval(args, device: str) -> int:
    from pyface._usage import UsageError

    if args.model == "style-aware":
        if args.checkpoints is None:
            raise UsageError("style-aware needs --checkpoints DIR, the directory of its four stages' checkpoints")
        try:
            result = evaluate_style_aware(args.checkpoints, device)
        except ValueError as error:
            raise UsageError(str(error)) from error
    elif args.checkpoint is None:
        raise UsageError(f"{args.model} needs --checkpoint FILE")
    else:
        result = evaluate(args.model, args.checkpoint, device)
    print(format_result(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return 0
