"""Real data for `pyface train MODEL --data DIR`, read through DataLoader workers and a
DistributedSampler.

GLAMOR-Net, an image folder of face crops and their context images:

    root/<emotion>/<sample>/face.png      any size (scaled to 96x96)
    root/<emotion>/<sample>/context.png   the scene, face masked or not (scaled to 112x112)

with <emotion> one of pyface.data.EMOTIONS (angry, disgust, fear, happy, sad, surprise,
neutral; any case).

The speech-driven temporal GAN, talking-face clips in the TalkingFaceFolder layout, with
their sound:

    root/<clip>/frames/000000.png, ...    the video's frames at 25 fps (scaled to the model's)
    root/<clip>/audio.wav                 its sound (any rate, resampled to 16 kHz; wav, flac)

Each sample is a run of the model's frame count from a clip (its start drawn per epoch and
sample), with the raw 0.2 s audio window of each frame. A file that is missing, unreadable
or of the wrong kind raises DataError naming it; nothing is ever replaced by zeros.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pyface import audio
from pyface._usage import UsageError
from pyface.contracts.faces import CONTEXT_SIZE, FACE_SIZE
from pyface.data.emotion import EMOTIONS

FPS, SAMPLE_RATE = 25, 16000
REAL_DATA_MODELS = ("glamor", "speech-gan")


class DataError(ValueError):
    """A sample that cannot be read: its message names the file."""


def read_image(path: Path, size: tuple[int, int]) -> Tensor:
    """(3, H, W) float in [0, 1], an image scaled to size = (H, W)."""
    from PIL import Image

    if not path.is_file():
        raise DataError(f"missing image {path}")
    try:
        with Image.open(path) as image:
            picture = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except Exception as error:  # Pillow raises several kinds for a truncated or foreign file
        raise DataError(f"cannot read {path} as an image ({type(error).__name__}: {error})") from error
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float() / 255


class EmotionFolder(Dataset):
    """GLAMOR-Net's layout (module docstring): item i = {"face", "context", "label"}."""

    def __init__(self, root: str | Path):
        root = Path(root)
        classes = {name.lower(): index for index, name in enumerate(EMOTIONS)}
        folders = [p for p in sorted(root.iterdir()) if p.is_dir()]
        unknown = [p.name for p in folders if p.name.lower() not in classes]
        if unknown:
            raise DataError(f"{root}: class folders must be emotions ({', '.join(EMOTIONS)}); found {unknown}")
        self.samples = [(sample, classes[folder.name.lower()]) for folder in folders
                        for sample in sorted(p for p in folder.iterdir() if p.is_dir())]
        if not self.samples:
            raise DataError(f"{root}: no <emotion>/<sample>/ folders with face.png and context.png")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample, label = self.samples[index]
        return {"face": read_image(sample / "face.png", (FACE_SIZE, FACE_SIZE)),
                "context": read_image(sample / "context.png", (CONTEXT_SIZE, CONTEXT_SIZE)),
                "label": torch.tensor(label)}


class SpeechClipFolder(Dataset):
    """Talking-face clips with their sound (module docstring): item i = {"frames": (T, 3, H,
    W), "windows": (T, 3200)}, T consecutive frames of clip i and their audio windows, the
    start drawn from (seed, epoch, i); set `epoch` before each epoch's loader."""

    def __init__(self, root: str | Path, frames: int, frame_size: tuple[int, int], seed: int = 0):
        root = Path(root)
        self.clips = [p for p in sorted(root.iterdir()) if (p / "frames").is_dir()]
        if not self.clips:
            raise DataError(f"{root}: no <clip>/frames/ folders")
        self.frames, self.frame_size, self.seed, self.epoch = frames, frame_size, seed, 0

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        clip = self.clips[index]
        paths = sorted((clip / "frames").glob("*.png"))
        if len(paths) < self.frames:
            raise DataError(f"{clip / 'frames'} holds {len(paths)} frames; the model trains on runs of {self.frames}")
        sound = clip / "audio.wav"
        if not sound.is_file():
            raise DataError(f"missing sound {sound}")
        try:
            waveform, _ = audio.load(sound, SAMPLE_RATE)
        except Exception as error:
            raise DataError(f"cannot read {sound} as sound ({type(error).__name__}: {error})") from error
        windows = audio.waveform_windows(waveform, SAMPLE_RATE, fps=FPS)
        usable = min(len(paths), windows.shape[0])
        if usable < self.frames:
            raise DataError(f"{sound} lasts {waveform.shape[0] / SAMPLE_RATE:.2f} s, {usable} frames at {FPS} fps; "
                            f"the model trains on runs of {self.frames}")
        draw = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
        start = int(torch.randint(usable - self.frames + 1, (1,), generator=draw))
        frames = torch.stack([read_image(p, self.frame_size) for p in paths[start:start + self.frames]])
        return {"frames": frames, "windows": windows[start:start + self.frames]}


class ResumedSampler(DistributedSampler):
    """DistributedSampler that starts `skip` of its indices into the epoch (a resumed run)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, skip: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = skip

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


def training_data(model_name: str, root: str, config: dict, seed: int) -> Dataset:
    if model_name not in REAL_DATA_MODELS:
        raise UsageError(f"--data: {model_name} trains on pyface's synthetic data only (its targets, such as drawn "
                         f"landmarks or speaking styles, come with the drawing); real folders: "
                         f"{', '.join(REAL_DATA_MODELS)}")
    if not Path(root).is_dir():
        raise UsageError(f"--data: no directory {root}")
    try:
        if model_name == "glamor":
            return EmotionFolder(root)
        return SpeechClipFolder(root, config["frames"], tuple(config["frame_size"]), seed)
    except DataError as error:
        raise UsageError(f"--data: {error}") from error


def real_batches(model_name: str, root: str, config: dict, batch_size: int, seed: int, done_steps: int, topology,
                 workers: int) -> Iterator[dict[str, Tensor]]:
    """This rank's shards of the global batches, endlessly, epoch after epoch, from the
    global batch after `done_steps` on (a resumed run continues where it stopped). Batch b
    of an epoch is the same global batch whatever the number of processes."""
    dataset = training_data(model_name, root, config, seed)
    local = batch_size // topology.world_size
    per_epoch = len(dataset) // batch_size
    if per_epoch == 0:
        raise UsageError(f"--data: {root} holds {len(dataset)} samples, fewer than one global batch ({batch_size})")

    def batches():
        epoch, skip = divmod(done_steps, per_epoch)
        while True:
            sampler = ResumedSampler(dataset, topology.world_size, topology.rank, seed, skip * local)
            sampler.set_epoch(epoch)
            if isinstance(dataset, SpeechClipFolder):
                dataset.epoch = epoch
            loader = DataLoader(dataset, batch_size=local, sampler=sampler, num_workers=workers, drop_last=True,
                                pin_memory=topology.device.type == "cuda")
            try:
                for batch in itertools.islice(loader, per_epoch - skip):
                    yield {name: value.to(topology.device, non_blocking=True) for name, value in batch.items()}
            except DataError as error:  # from a worker, its message ends with the worker's traceback
                message = str(error).strip().splitlines()[-1]
                raise UsageError(f"--data: {message.split('DataError: ', 1)[-1]}") from error
            epoch, skip = epoch + 1, 0

    return batches()
