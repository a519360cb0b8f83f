"""`pyface demo speech-gan|atvgnet`: animate a face from a recording with a trained
checkpoint and write the talking head as an MP4 with the recording as its sound track (or,
for a .png path, an image grid of the first frames).

    pyface train speech-gan --synthetic --preset cpu --checkpoint runs/speech-gan.pt
    espeak-ng -w hello.wav "hello from pyface"
    pyface demo speech-gan --wav hello.wav --checkpoint runs/speech-gan.pt --out hello.mp4

The recording may be any file FFmpeg reads with an audio track (wav, flac, mp3, a video).
The face is a drawn one unless --image names a picture; a picture of any size is scaled to
cover the model's frame and cropped to it, centred. ATVGnet also needs the face's landmarks:
pyface has no landmark detector, so for a picture they are taken to be the training faces'
mean (a centred, frontal face).
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pyface import audio
from pyface._usage import UsageError
from pyface.data import draw_faces, random_parameters
from pyface.recipes import build_modules, load_checkpoint

DEMO_MODELS = ("speech-gan", "atvgnet")
FPS, SAMPLE_RATE = 25, 16000
# Below this many training steps the demo says the checkpoint is barely trained: after 150
# steps on the synthetic data the frames are a blurred face with little mouth motion.
BARELY_TRAINED_STEPS = 600
VIDEO_HEIGHT = 256  # the MP4's frames are the model's, scaled up to about this height


def warn(message: str) -> None:
    print(f"pyface demo: note: {message}", file=sys.stderr)


def load_face(image: str, size: tuple[int, int]) -> Tensor:
    """(1, 3, H, W) in [0, 1]: the picture scaled to cover size = (H, W) and cropped to it,
    centred."""
    from PIL import Image, UnidentifiedImageError

    try:
        picture = Image.open(image).convert("RGB")
    except FileNotFoundError as error:
        raise UsageError(f"no image file {image}") from error
    except (OSError, ValueError, UnidentifiedImageError) as error:
        raise UsageError(f"cannot read {image} as an image ({error})") from error
    return _cover_crop(picture, size)


def _cover_crop(picture, size: tuple[int, int]) -> Tensor:
    """A PIL image scaled to cover size = (H, W) and cropped to it, centred -> (1, 3, H, W)."""
    from PIL import Image

    h, w = size
    scale = max(h / picture.height, w / picture.width)
    width, height = max(w, round(picture.width * scale)), max(h, round(picture.height * scale))
    picture = picture.resize((width, height), Image.BICUBIC)
    left, top = (width - w) // 2, (height - h) // 2
    picture = picture.crop((left, top, left + w, top + h))
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).unsqueeze(0).float() / 255


def drawn_face(size: tuple[int, int]) -> dict[str, Tensor]:
    """A drawn frontal face with its mouth closed: {"image": (1, 3, H, W), "landmarks": (1, 9, 2)}."""
    params = random_parameters(1, torch.Generator().manual_seed(0), mouth_open=torch.zeros(1), roll=torch.zeros(1),
                               yaw=torch.zeros(1))
    return draw_faces(params, size)


def load_speech(path: str) -> Tensor:
    """The recording as a mono 16 kHz waveform; UsageError for a missing, undecodable, silent
    or too short one."""
    try:
        waveform, _ = audio.load(path, sample_rate=SAMPLE_RATE)
        audio.check_waveform(waveform, SAMPLE_RATE, min_seconds=1.0 / FPS)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    return waveform


@torch.no_grad()
def animate(model_name: str, state: dict, waveform: Tensor, face: Tensor | None = None) -> Tensor:
    """(T, 3, H, W) frames in [0, 1], one per 1/25 s of the 16 kHz waveform, of the face
    (1, 3, H, W) at the model's frame size (default: a drawn one)."""
    modules, config = build_modules(model_name, state)
    for module in modules.values():
        module.eval()
    drawn = drawn_face(tuple(config["frame_size"]))
    still = drawn["image"] if face is None else face
    if model_name == "speech-gan":
        torch.manual_seed(0)  # the generator's per-frame noise
        return modules["generator"](still, audio.waveform_windows(waveform, SAMPLE_RATE, fps=FPS).unsqueeze(0))[0]
    at, vg = modules["at"], modules["vg"]
    example = drawn["landmarks"] if face is None else at.pca.mean.view(1, -1, 2)
    landmarks = at(audio.mfcc_windows(waveform, SAMPLE_RATE, fps=FPS).unsqueeze(0), example)
    return vg(still, example, landmarks)["frames"][0]


def write_video(frames: Tensor, waveform: Tensor, path: Path, fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> None:
    """An H.264 MP4 of (T, 3, H, W) frames at fps, scaled up to about VIDEO_HEIGHT, with the
    mono waveform as its AAC sound track."""
    import av

    factor = max(1, round(VIDEO_HEIGHT / frames.shape[-2]))
    big = F.interpolate(frames.float(), scale_factor=factor, mode="bilinear", align_corners=False)
    pixels = (big.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    samples = waveform.float().clamp(-1, 1).numpy()
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
        video.options = {"crf": "18"}
        sound = container.add_stream("aac", rate=sample_rate, layout="mono")
        for picture in pixels:
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        chunk = 1024  # AAC's frame length
        for start in range(0, samples.shape[0], chunk):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + chunk], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)


def write_grid(frames: Tensor, path: Path, columns: int = 10) -> None:
    from PIL import Image

    t, _, h, w = frames.shape
    rows = -(-t // columns)
    grid = torch.ones(3, rows * h, min(t, columns) * w)
    for i in range(t):
        r, c = divmod(i, columns)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = frames[i]
    Image.fromarray((grid.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()).save(path)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MAX_STYLE_FRAMES = 500  # 20 s of a style video at 25 fps: plenty to find the four templates in


def load_style_frames(source: str, size: int) -> Tensor:
    """(T, 3, size, size) frames of the style source: a directory of images (in name order)
    or any video FFmpeg reads, each scaled and centre-cropped as load_face does. UsageError
    where the source is missing or holds no readable frame."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_STYLE_FRAMES]
        frames = []
        for file in files:
            try:
                frames.append(load_face(str(file), (size, size)))
            except UsageError:
                continue  # an unreadable image among readable ones is skipped
    elif path.is_file():
        import av

        frames = []
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    frames.append(_cover_crop(frame.to_image(), (size, size)))
                    if len(frames) == MAX_STYLE_FRAMES:
                        break
        except (av.error.FFmpegError, IndexError, ValueError) as error:
            raise UsageError(f"cannot read {source} as a video ({error})") from error
    else:
        raise UsageError(f"no style source {source} (a directory of frames or a video file)")
    if not frames:
        raise UsageError(f"the style source {source} holds no readable frame "
                         f"(images ending in {', '.join(IMAGE_SUFFIXES)}, or a video)")
    return torch.cat(frames)


def load_style_speech(source: str) -> Tensor | None:
    """The style source's sound track as 16 kHz mono (the manifold projection's database), or
    None for a directory of frames or a video without sound (said on stderr)."""
    if Path(source).is_dir():
        return None
    try:
        waveform, _ = audio.load(source, sample_rate=SAMPLE_RATE)
    except ValueError as error:
        warn(f"no speech from the style source ({error}): the motion is not projected onto the character's sounds")
        return None
    return waveform


def style_aware_demo(wav: str, out: str, checkpoints: str, image: str | None = None, style: str | None = None,
                     max_frames: int = 50) -> Path:
    """`pyface demo style-aware`: the face (default: a drawn one) speaking the recording in the
    style of the style source's character (default: the neutral style), with the four stages
    of pyface.pipelines.StyleAwareTalkingHead from the checkpoints directory; a style video's
    sound, if it has one, is the manifold projection's database."""
    from pyface.pipelines import StyleAwareTalkingHead

    path = _check_out(out, max_frames)
    try:
        pipeline = StyleAwareTalkingHead.from_checkpoints(checkpoints)
    except ValueError as error:
        raise UsageError(str(error)) from error
    size = (pipeline.size, pipeline.size)
    waveform = load_speech(wav)
    face = drawn_face(size)["image"] if image is None else load_face(image, size)
    style_frames = None if style is None else load_style_frames(style, pipeline.size)
    style_speech = None if style is None else load_style_speech(style)
    try:
        frames = pipeline(face, waveform, style_frames, style_speech)
    except ValueError as error:
        raise UsageError(str(error)) from error
    _write(frames, waveform, path, max_frames)
    return path


def _check_out(out: str, max_frames: int) -> Path:
    path = Path(out)
    if path.suffix.lower() not in (".mp4", ".png"):
        raise UsageError(f"--out must end in .mp4 (a video with the sound) or .png (a grid of frames), got {out}")
    if max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {max_frames}")
    return path


def _write(frames: Tensor, waveform: Tensor, path: Path, max_frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        write_video(frames, waveform, path)
    else:
        write_grid(frames[:max_frames], path)


def talking_demo(model_name: str, wav: str, out: str, checkpoint: str, image: str | None = None,
                 max_frames: int = 50) -> Path:
    """Animates the face from the recording with the checkpoint's model; writes an MP4 with
    the recording's sound (out ending in .mp4) or a grid of the first max_frames frames
    (.png)."""
    if model_name not in DEMO_MODELS:
        raise UsageError(f"unknown model {model_name!r}; expected one of {', '.join(DEMO_MODELS)}")
    path = _check_out(out, max_frames)
    state = load_checkpoint(checkpoint, model_name)
    waveform = load_speech(wav)
    face = None if image is None else load_face(image, tuple(state["config"]["frame_size"]))
    if state["step"] < BARELY_TRAINED_STEPS:
        warn(f"{checkpoint} is barely trained ({state['step']} steps, fewer than {BARELY_TRAINED_STEPS}): "
             f"expect a blurred face with little mouth motion")
    frames = animate(model_name, state, waveform, face)
    _write(frames, waveform, path, max_frames)
    return path
