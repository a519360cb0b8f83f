"""Write pyface's synthetic data as files in the layouts `pyface train --data DIR` reads
(pyface.data.real): an emotion image folder for GLAMOR-Net and talking-face clips with their
sound for the speech-driven GAN. To see the layouts, or to check the real-data path on
data whose answers are known (pyface eval scores on the same held-out synthetic data).

    python examples/write_data_folders.py --emotion data/emotion --samples 2400 \
        --clips data/clips --clip-count 64
    torchrun --standalone --nproc_per_node 2 -m pyface train glamor --data data/emotion --sync-bn ...
"""
import argparse
from pathlib import Path

import numpy as np
import soundfile
import torch
from PIL import Image

from pyface.data import EMOTIONS, emotion_batch, talking_sequence_batch

SPEECH_FRAME_SIZE = (64, 48)  # the speech GAN's frames (pyface train's default config)


def save_image(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()).save(path)


def write_emotions(root: Path, samples: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, samples, 100):
        batch = emotion_batch(min(100, samples - start), generator)
        for i, label in enumerate(batch["label"].tolist()):
            sample = root / EMOTIONS[label] / f"{start + i:06d}"
            save_image(batch["face"][i], sample / "face.png")
            save_image(batch["context"][i], sample / "context.png")


def write_clips(root: Path, clips: int, frames: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, clips, 8):
        batch = talking_sequence_batch(min(8, clips - start), frames, generator, render=True,
                                       frame_size=SPEECH_FRAME_SIZE, waveform=True)
        for i in range(batch["frames"].shape[0]):
            clip = root / f"clip{start + i:05d}"
            for t, frame in enumerate(batch["frames"][i]):
                save_image(frame, clip / "frames" / f"{t:06d}.png")
            soundfile.write(clip / "audio.wav", batch["waveform"][i].numpy().astype(np.float32), 16000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emotion", type=Path, help="write an emotion image folder here")
    parser.add_argument("--samples", type=int, default=2400)
    parser.add_argument("--clips", type=Path, help="write talking-face clips with their sound here")
    parser.add_argument("--clip-count", type=int, default=64)
    parser.add_argument("--frames", type=int, default=50, help="frames per clip, 25 a second")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.emotion is None and args.clips is None:
        parser.error("pass --emotion DIR, --clips DIR or both")
    if args.emotion is not None:
        write_emotions(args.emotion, args.samples, args.seed)
        print(f"wrote {args.samples} samples to {args.emotion}")
    if args.clips is not None:
        write_clips(args.clips, args.clip_count, args.frames, args.seed + 1)
        print(f"wrote {args.clip_count} clips to {args.clips}")


if __name__ == "__main__":
    main()
