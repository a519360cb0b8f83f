"""Synthetic speakers with a speaking style of their own, for the style-aware talking head.

A style is how a speaker's mouth moves while talking: `smile`, how far the mouth corners rise
as they speak (negative: they fall), and `opening`, how wide the mouth opens at the loudest
syllables. Any identity can be drawn with any style, so a style seen on one face can be asked
of another: the style-transfer task. The neutral style (no smile, a middling opening) is what
the audio-to-motion stage predicts; the style itself reaches the frames only through the
style reference images.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pyface import audio
from pyface.contracts.mouth import MOUTH_TEMPLATES, mouth_descriptor, select_style_references
from pyface.data.faces import LANDMARKS, FaceParameters, draw_faces, face_landmarks, random_parameters
from pyface.data.talking import speech_envelope, speech_waveform

STYLE_NAMES = ("smile", "opening")
SMILE_RANGE, OPENING_RANGE = (-0.6, 1.0), (0.3, 1.0)
NEUTRAL_STYLE = (0.0, 0.6)
SAMPLE_RATE, FPS = 16000, 25
N_MELS = 40  # the audio features: log-mel of each video frame's span


@dataclass
class SpeakingStyle:
    smile: Tensor    # (N,), in SMILE_RANGE
    opening: Tensor  # (N,), in OPENING_RANGE

    def as_tensor(self) -> Tensor:
        """(N, 2) in STYLE_NAMES order."""
        return torch.stack([self.smile, self.opening], dim=-1)

    @staticmethod
    def neutral(n: int) -> SpeakingStyle:
        return SpeakingStyle(torch.full((n,), NEUTRAL_STYLE[0]), torch.full((n,), NEUTRAL_STYLE[1]))


def _uniform(n: int, generator: torch.Generator, low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def speaker_identities(n: int, generator: torch.Generator) -> FaceParameters:
    """Identities facing the camera, near the centre (a portrait's framing), as the
    style-aware pipeline expects of the photo it animates."""
    return random_parameters(n, generator, center_x=_uniform(n, generator, -0.05, 0.05),
                             center_y=_uniform(n, generator, -0.05, 0.05), roll=_uniform(n, generator, -0.08, 0.08),
                             yaw=_uniform(n, generator, -0.15, 0.15))


def random_styles(n: int, generator: torch.Generator) -> SpeakingStyle:
    return SpeakingStyle(_uniform(n, generator, *SMILE_RANGE), _uniform(n, generator, *OPENING_RANGE))


def at_rest(identity: FaceParameters) -> FaceParameters:
    """The identity with its mouth closed and a neutral face: the source image a clip starts from."""
    n = identity.scale.shape[0]
    return replace(identity, mouth_open=torch.full((n,), 0.05), smile=torch.zeros(n), eye_open=torch.full((n,), 0.75),
                   brow_tilt=torch.zeros(n))


def speaking(identity: FaceParameters, style: SpeakingStyle, envelope: Tensor) -> FaceParameters:
    """(N, T) speech envelopes -> N * T face parameters, clip-major: the identity at rest, its
    mouth opened by opening * envelope and its corners lifted by smile, more on loud syllables."""
    n, frames = envelope.shape
    rest = at_rest(identity)
    per_frame = {name: getattr(rest, name).repeat_interleave(frames, dim=0)
                 for name in ("center_x", "center_y", "scale", "roll", "yaw", "eye_open", "brow_tilt", "skin", "hair",
                              "background")}
    mouth_open = 0.05 + style.opening.view(n, 1) * envelope
    smile = style.smile.view(n, 1) * (0.4 + 0.6 * envelope)
    return FaceParameters(**per_frame, mouth_open=mouth_open.flatten(), smile=smile.flatten())


def audio_features(waveform: Tensor, frames: int | None = None) -> Tensor:
    """(samples,) 16 kHz speech -> (T, N_MELS) per video frame (25 fps): the audio-to-motion
    stage's input, for synthetic and recorded speech alike: the log-mel spectrum, standardised
    over the clip (a recording's level and microphone do not matter, its loud and quiet spans do)."""
    features = audio.log_mel_frames(waveform, SAMPLE_RATE, fps=FPS, n_mels=N_MELS)
    features = features if frames is None else features[:frames]
    return (features - features.mean()) / features.std().clamp_min(1e-3)


def styled_talking_batch(batch_size: int, frames: int, generator: torch.Generator, size: int = 64,
                         render: bool = True, styles: SpeakingStyle | None = None,
                         identities: FaceParameters | None = None, references: bool = False,
                         device=None) -> dict[str, Tensor]:
    """Clips of drawn identities speaking in their own style:
    {"style": (N, 2); "envelope": (N, T); "waveform": (N, T * 640) at 16 kHz; "audio": (N, T,
    N_MELS) its features; "landmarks": (N, T, 9, 2) as spoken in the style; "neutral_landmarks":
    (N, T, 9, 2) the same speech in the neutral style; "rest_landmarks": (N, 9, 2) and, with
    render, "source": (N, 3, size, size) the identity at rest, "frames": (N, T, 3, size, size)
    and "parsing": (N, T, size, size); with references, "references": (N, 4, 3, size, size) the
    clip's style references (reference_expressions), drawn whatever render}. `styles` and
    `identities` replace the drawn ones."""
    n = batch_size
    envelope = speech_envelope(n, frames, generator)
    waveform = speech_waveform(envelope, generator)
    identity = identities if identities is not None else speaker_identities(n, generator)
    style = styles if styles is not None else random_styles(n, generator)
    spoken = speaking(identity, style, envelope)
    neutral = speaking(identity, SpeakingStyle.neutral(n), envelope)
    rest = at_rest(identity)
    out = {"style": style.as_tensor(), "envelope": envelope, "waveform": waveform,
           "audio": torch.stack([audio_features(clip, frames) for clip in waveform]),
           "landmarks": face_landmarks(spoken).view(n, frames, -1, 2),
           "neutral_landmarks": face_landmarks(neutral).view(n, frames, -1, 2),
           "rest_landmarks": face_landmarks(rest)}
    if render:
        drawn = draw_faces(spoken, (size, size))
        out["frames"] = drawn["image"].view(n, frames, 3, size, size)
        out["parsing"] = drawn["parsing"].view(n, frames, size, size)
        out["source"] = draw_faces(rest, (size, size))["image"]
    if references:
        chosen = with_expressions(identity, identity, *reference_expressions(spoken, n))
        out["references"] = draw_faces(chosen, (size, size))["image"].view(n, -1, 3, size, size)
    return {name: value.to(device) for name, value in out.items()}


def reference_expressions(clip: FaceParameters, n: int) -> tuple[Tensor, Tensor]:
    """N clips of face parameters, clip-major -> (mouth_open, smile), each (N, 4): the
    expressions of the frames of each clip that the key motion templates pick
    (pyface.contracts.mouth.select_style_references on the true landmarks): its style references."""
    frames = clip.mouth_open.shape[0] // n
    chosen = select_style_references(mouth_descriptor(face_landmarks(clip).view(n, frames, len(LANDMARKS), 2)))
    chosen = (chosen + torch.arange(n).view(n, 1) * frames).flatten()  # into the clip-major frames
    return clip.mouth_open[chosen].view(n, -1), clip.smile[chosen].view(n, -1)


def with_expressions(identity: FaceParameters, pose_of: FaceParameters, mouth_open: Tensor, smile: Tensor) -> FaceParameters:
    """identity's appearance (colours, size) at rest, in pose_of's pose, with the given (N, P)
    mouth openings and smiles -> N * P faces, clip-major."""
    n, p = mouth_open.shape
    rest = at_rest(identity)
    fields = {name: getattr(rest, name) for name in ("scale", "eye_open", "brow_tilt", "skin", "hair", "background")}
    fields.update({name: getattr(pose_of, name) for name in ("center_x", "center_y", "roll", "yaw")})
    fields = {name: value.repeat_interleave(p, dim=0) for name, value in fields.items()}
    return FaceParameters(**fields, mouth_open=mouth_open.flatten(), smile=smile.flatten())


def style_transfer_batch(batch_size: int, frames: int, generator: torch.Generator, size: int = 64,
                         style_frames: int = 50, unreferenced: float = 0.0, device=None) -> dict[str, Tensor]:
    """The style-aware generator's training task: identity X, a style shown by another speaker
    Y in a clip of style_frames frames, and X speaking in that style at `frames` independent
    moments (mouth openings drawn uniformly):
    {"source": (N, 3, S, S) X at rest; "patterns": (N, 4, 3, S, S) the true Intermediate Style
    Patterns: X, in its own pose, with the expression of the four frames of Y's clip that the
    key motion templates pick (pyface.contracts.mouth.select_style_references; in X's pose, not Y's,
    so that the style-aware loss compares aligned faces); "references": (N, 4, 3, S,
    S) those four frames of Y, the style references; "frames": (N, T, 3, S, S)
    X speaking in the style, "parsing": (N, T, S, S), "landmarks": (N, T, 9, 2);
    "neutral_landmarks": (N, T, 9, 2) the same openings in the neutral style; "rest_landmarks":
    (N, 9, 2) the source's; "style": (N, 2);
    "referenced": (N,) bool}. A share `unreferenced` of the samples (drawn) has "referenced"
    False: the generator sees the source's patterns with the source as its own reference
    (style_generator_inputs) while X still speaks in the style, which the facial map carries.
    So the generator learns to take the mouth's shape from the map whatever the patterns, and
    makes the pipeline's frames without a style source (the neutral style's map, the same
    neutral patterns) as it makes the others."""
    n, templates = batch_size, MOUTH_TEMPLATES.shape[0]
    identity, speaker = speaker_identities(n, generator), speaker_identities(n, generator)
    style = random_styles(n, generator)
    referenced = torch.rand(n, generator=generator) >= unreferenced if unreferenced > 0 else torch.ones(n, dtype=torch.bool)
    clip = speaking(speaker, style, speech_envelope(n, style_frames, generator))
    mouth_open, smile = reference_expressions(clip, n)
    patterns = with_expressions(identity, identity, mouth_open, smile)
    references = with_expressions(speaker, speaker, mouth_open, smile)
    envelope = torch.rand(n, frames, generator=generator)
    spoken = speaking(identity, style, envelope)
    neutral = speaking(identity, SpeakingStyle.neutral(n), envelope)
    drawn = draw_faces(spoken, (size, size))
    out = {"source": draw_faces(at_rest(identity), (size, size))["image"],
           "patterns": draw_faces(patterns, (size, size))["image"].view(n, templates, 3, size, size),
           "references": draw_faces(references, (size, size))["image"].view(n, templates, 3, size, size),
           "frames": drawn["image"].view(n, frames, 3, size, size),
           "parsing": drawn["parsing"].view(n, frames, size, size),
           "landmarks": face_landmarks(spoken).view(n, frames, -1, 2),
           "neutral_landmarks": face_landmarks(neutral).view(n, frames, -1, 2),
           "rest_landmarks": face_landmarks(at_rest(identity)), "style": style.as_tensor(), "referenced": referenced}
    return {name: value.to(device) for name, value in out.items()}


def pattern_pair_batch(batch_size: int, generator: torch.Generator, size: int = 64, device=None) -> dict[str, Tensor]:
    """The style mapping's task in the style-aware pipeline: identity X at rest, another
    speaker Y showing a mouth expression a speaking style gives, and X with that expression,
    in X's own pose (the Intermediate Style Pattern):
    {"neutral", "reference", "pattern": (N, 3, S, S), "parsing": (N, S, S) of the pattern}."""
    n = batch_size
    identity, speaker = speaker_identities(n, generator), speaker_identities(n, generator)
    mouth_open = _uniform(n, generator, 0.05, 1.05).view(n, 1)
    smile = _uniform(n, generator, SMILE_RANGE[0], SMILE_RANGE[1]).view(n, 1)
    pattern = draw_faces(with_expressions(identity, identity, mouth_open, smile), (size, size))
    out = {"neutral": draw_faces(at_rest(identity), (size, size))["image"],
           "reference": draw_faces(with_expressions(speaker, speaker, mouth_open, smile), (size, size))["image"],
           "pattern": pattern["image"], "parsing": pattern["parsing"]}
    return {name: value.to(device) for name, value in out.items()}


def reading_batch(batch_size: int, generator: torch.Generator, size: int = 64, device=None) -> dict[str, Tensor]:
    """The face reader's task: {"image": (N, 3, S, S), "landmarks": (N, 9, 2)} of drawn faces
    in portrait framing with every mouth a speaking style gives; half the images blurred a
    little, as generated frames are."""
    n = batch_size
    identity = speaker_identities(n, generator)
    faces = replace(identity, mouth_open=_uniform(n, generator, 0.0, 1.05), smile=_uniform(n, generator, -0.8, 1.0))
    drawn = draw_faces(faces, (size, size))
    image = drawn["image"]
    blurred = torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    soft = (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).float()
    return {"image": (soft * blurred + (1 - soft) * image).to(device), "landmarks": drawn["landmarks"].to(device)}
