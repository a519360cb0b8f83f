"""The style-aware talking head, end to end: a face, a recording and a style source in, frames out.

    style source frames --FaceReader--> mouth descriptors --key motion templates-->
        four style reference frames --StyleMapping(face, reference)--> four Intermediate Style Patterns
                                    --StyleEncoder--> the speaking style (smile, opening)
    speech --audio features (projected onto the style character's, when its speech is given)-->
        AudioMotionGenerator(features, speaking style) --> lip motion in that style
        + the face's landmarks (FaceReader) --> keypoints per frame --> facial maps
    StyleAwareGenerator(face warped by its keypoints' motion, facial map, patterns) --> frames (T, 3, S, S)

Without a style source, the neutral style and the face as its own style reference: four
patterns StyleMapping(face, face), the face at rest as the mapping renders it, so that with
and without a style source the generator sees the mapping's rendering alike. The four
stages are trained apart (`pyface train audio-motion | face-reader | style-mapping |
style-generator`) and loaded from one directory of their checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from pyface.contracts.mouth import MOUTH_TEMPLATES, select_style_references
from pyface.data.styles import SpeakingStyle, audio_features
from pyface.models.facial_map import DRAWN_FACE_CONNECTIONS, render_facial_map
from pyface.recipes import build_modules, load_checkpoint

STAGES = ("audio-motion", "face-reader", "style-mapping", "style-generator")
NEIGHBOURS = 10  # the manifold projection's, onto the style character's speech


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    ours, theirs = a.state_dict(), b.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k].cpu(), theirs[k].cpu()) for k in ours)


class StyleAwareTalkingHead(nn.Module):
    """The four trained stages as one module (see the module's text). `size` is the side of
    the square frames every stage works at."""

    def __init__(self, audio_motion: nn.Module, style_encoder: nn.Module, face_reader: nn.Module,
                 style_mapping: nn.Module, generator: nn.Module, size: int = 64, steps: dict[str, int] | None = None):
        super().__init__()
        self.audio_motion, self.style_encoder, self.face_reader = audio_motion, style_encoder, face_reader
        self.style_mapping, self.generator = style_mapping, generator
        self.size = size
        self.steps = steps  # each stage's training steps, when built from checkpoints
        self.eval()

    @classmethod
    def from_checkpoints(cls, directory: str | Path, device="cpu") -> StyleAwareTalkingHead:
        """The stages from `<directory>/<stage>.pt` (pyface train checkpoints); ValueError
        for a missing stage, a checkpoint of another model, or stages built for different
        frame sizes."""
        from pyface._usage import UsageError

        directory = Path(directory)
        modules, sizes, steps, learned_from = {}, {}, {}, None
        for stage in STAGES:
            path = directory / f"{stage}.pt"
            try:
                state = load_checkpoint(str(path), stage)
            except UsageError as error:
                raise ValueError(f"StyleAwareTalkingHead: {error} (the pipeline needs {', '.join(s + '.pt' for s in STAGES)} "
                                 f"in {directory})") from error
            built, config = build_modules(stage, state, device)
            modules[stage] = built["model"]
            if "style_encoder" in built:
                modules["style-encoder"] = built["style_encoder"]
            steps[stage] = state["step"]
            if "size" in config:
                sizes[stage] = config["size"]
            if "style_mapping" in built:
                learned_from = built["style_mapping"]
        if len(set(sizes.values())) > 1:
            raise ValueError(f"StyleAwareTalkingHead: the checkpoints were trained at different frame sizes: {sizes}")
        if learned_from is not None and not _same_weights(learned_from, modules["style-mapping"]):
            raise ValueError(f"StyleAwareTalkingHead: {directory / 'style-generator.pt'} learned from the patterns of "
                             f"another style mapping than {directory / 'style-mapping.pt'} (train style-generator "
                             f"with --style-mapping pointing at this one)")
        return cls(modules["audio-motion"], modules["style-encoder"], modules["face-reader"], modules["style-mapping"],
                   modules["style-generator"], size=next(iter(sizes.values())), steps=steps).to(device)

    def _check_frames(self, what: str, frames: Tensor) -> None:
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (3, self.size, self.size):
            raise ValueError(f"StyleAwareTalkingHead: {what} must be (N, 3, {self.size}, {self.size}) in [0, 1], "
                             f"got {tuple(frames.shape)}")
        if frames.shape[0] == 0:
            raise ValueError(f"StyleAwareTalkingHead: {what} holds no frame")

    @torch.inference_mode()
    def style_references(self, style_frames: Tensor) -> Tensor:
        """(T, 3, S, S) frames of the character whose style is wanted -> (4,) the indices of the
        frames closest to the key motion templates (None, M, R, O), read by the face reader."""
        self._check_frames("style_frames", style_frames)
        return select_style_references(self.face_reader.read(style_frames)["mouth"])

    @torch.inference_mode()
    def style(self, face: Tensor, style_frames: Tensor | None) -> tuple[Tensor, Tensor]:
        """(1, 3, S, S) face, (T, 3, S, S) style frames -> ((4, 3, S, S) the Intermediate Style
        Patterns: the face with the expression of each style reference, (1, 2) the speaking
        style the StyleEncoder reads from the references). Without style frames, the neutral
        style and the neutral patterns: the face as its own reference four times, as the
        generator learned them on its samples without references. (The face itself as every
        pattern instead: the mapping's rendering of the mouth, which the style-aware loss taught
        the generator to follow, then came only with a style source, and its frames opened the
        mouth wider than the same motion without one, whatever the style.)"""
        self._check_frames("face", face)
        if style_frames is None:
            references = face.expand(MOUTH_TEMPLATES.shape[0], -1, -1, -1)
            style = SpeakingStyle.neutral(1).as_tensor().to(face)
        else:
            references = style_frames[self.style_references(style_frames)]
            style = self.style_encoder(references.unsqueeze(0))
        return self.style_mapping.patterns(face, references.unsqueeze(0))[0], style

    @torch.inference_mode()
    def keypoints(self, face: Tensor, waveform: Tensor, style: Tensor | None = None,
                  style_waveform: Tensor | None = None, neighbours: int = NEIGHBOURS) -> Tensor:
        """(1, 3, S, S) face, 16 kHz (samples,) speech, (1, 2) speaking style (None: the neutral
        one) -> (T, 9, 2) landmarks, 25 a second: the face's landmarks moved by the lip motion the
        speech drives in that style. With the style character's own speech (style_waveform), the
        recording's encoded audio features are first projected onto those of that speech
        (manifold_projection with `neighbours` neighbours: the seed's projection onto the
        character's database), so that the motion is made from sounds the character makes."""
        return self.face_reader.read(face)["landmarks"] + self._motion(face, waveform, style, style_waveform, neighbours)

    def _motion(self, face: Tensor, waveform: Tensor, style: Tensor | None, style_waveform: Tensor | None,
                neighbours: int) -> Tensor:
        """keypoints' lip motion, (T, 9, 2), on the face's device and dtype."""
        features = audio_features(waveform).to(face.device).unsqueeze(0)
        style = SpeakingStyle.neutral(1).as_tensor().to(face) if style is None else style
        database = None
        if style_waveform is not None:
            database = self.audio_motion.encode(audio_features(style_waveform).to(face.device).unsqueeze(0))[0]
            if database.shape[0] < neighbours:
                raise ValueError(f"StyleAwareTalkingHead: style_waveform holds {database.shape[0]} frames of speech; "
                                 f"the manifold projection needs at least {neighbours}")
        return self.audio_motion(features, style, database=database, k=neighbours)[0]

    @torch.inference_mode()
    def render(self, face: Tensor, keypoints: Tensor, patterns: Tensor, face_landmarks: Tensor | None = None,
               batch: int = 32) -> Tensor:
        """(1, 3, S, S) face, (T, 9, 2) keypoints (`keypoints`), (4, 3, S, S) style patterns
        (`style`) -> (T, 3, S, S) frames: the generator on each keypoint set's facial map, the
        face warped from its landmarks (face_landmarks, (1, 9, 2); None: read here) to them,
        `batch` frames at a time."""
        self._check_frames("face", face)
        face_landmarks = self.face_reader.read(face)["landmarks"] if face_landmarks is None else face_landmarks
        frames = []
        for start in range(0, keypoints.shape[0], batch):
            points = keypoints[start:start + batch]
            maps = render_facial_map(points, DRAWN_FACE_CONNECTIONS, (self.size, self.size))
            n = points.shape[0]
            frames.append(self.generator(face.expand(n, -1, -1, -1), maps,
                                         patterns.unsqueeze(0).expand(n, -1, -1, -1, -1),
                                         source_landmarks=face_landmarks.expand(n, -1, -1), landmarks=points))
        return torch.cat(frames)

    @torch.inference_mode()
    def forward(self, face: Tensor, waveform: Tensor, style_frames: Tensor | None = None,
                style_waveform: Tensor | None = None, batch: int = 32) -> Tensor:
        """face (1, 3, S, S) or (3, S, S) in [0, 1], waveform (samples,) 16 kHz mono,
        style_frames (T_s, 3, S, S) of the character whose style is wanted (None: the neutral
        style), style_waveform that character's speech, 16 kHz (None: no manifold projection;
        see keypoints) -> (T, 3, S, S) frames in [0, 1], T = the recording's 25 fps frames;
        generated `batch` frames at a time."""
        face = face.unsqueeze(0) if face.dim() == 3 else face
        self._check_frames("face", face)
        patterns, style = self.style(face, style_frames)
        face_landmarks = self.face_reader.read(face)["landmarks"]  # read once: the keypoints and the warp's source
        keypoints = face_landmarks + self._motion(face, waveform, style, style_waveform, NEIGHBOURS)
        return self.render(face, keypoints, patterns, face_landmarks, batch)
