"""Real talking-face data from a directory, for the models that train on pyface.data's
synthetic sources by default:

    root/
      <clip>/
        frames/000000.png, 000001.png, ...   RGB frames, one per video frame, all one size
        parsing/000000.png, ...              optional: face-parsing label maps (uint8,
                                             CelebAMask-HQ class order, pyface.nn.CELEBAMASK_HQ_CLASSES)
        audio.npy                            optional: (T, F) float audio features, one row per
                                             frame (pyface.audio computes them aligned to the fps)

Item i is clip i: {"frames": (T, 3, H, W) float in [0, 1], "parsing": (T, H, W) uint8,
"audio": (T, F) float32, "name": the clip's directory name}, the optional ones only when
present. Frames are read with Pillow."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


def _read_images(paths: list[Path], mode: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as error:  # pillow comes with matplotlib, in pyface's [bench] and [test] extras
        raise ImportError("TalkingFaceFolder reads frames with Pillow: pip install pillow") from error
    arrays = [np.asarray(Image.open(path).convert(mode)) for path in paths]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"TalkingFaceFolder: frames of {paths[0].parent} differ in size: {sorted(shapes)}")
    return np.stack(arrays)


class TalkingFaceFolder(Dataset):
    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"TalkingFaceFolder: {self.root} is not a directory")
        self.clips = sorted(p for p in self.root.iterdir() if (p / "frames").is_dir())
        if not self.clips:
            raise ValueError(f"TalkingFaceFolder: no <clip>/frames/ directories under {self.root}")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        frame_paths = sorted((clip / "frames").glob("*.png"))
        if not frame_paths:
            raise ValueError(f"TalkingFaceFolder: no .png frames in {clip / 'frames'}")
        item = {"name": clip.name,
                "frames": torch.from_numpy(_read_images(frame_paths, "RGB")).permute(0, 3, 1, 2).float() / 255}
        if (clip / "parsing").is_dir():
            names = [p.name for p in frame_paths]
            missing = [n for n in names if not (clip / "parsing" / n).exists()]
            if missing:
                raise ValueError(f"TalkingFaceFolder: {clip / 'parsing'} lacks maps for frames {missing[:3]}")
            item["parsing"] = torch.from_numpy(_read_images([clip / "parsing" / n for n in names], "L"))
        if (clip / "audio.npy").exists():
            audio = np.load(clip / "audio.npy")
            if audio.ndim != 2 or audio.shape[0] != len(frame_paths):
                raise ValueError(f"TalkingFaceFolder: {clip / 'audio.npy'} must be (T, F) with T = "
                                 f"{len(frame_paths)} frames, got {audio.shape}")
            item["audio"] = torch.from_numpy(audio.astype(np.float32))
        return item
