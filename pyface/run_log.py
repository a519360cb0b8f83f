"""What `pyface train --log-dir DIR` writes for following a run (rank 0 only): metrics.csv,
one row per step (time, samples/s, learning rate, every loss of the global batch, and the
held-out metric on the steps it is measured); TensorBoard event files with the same scalars
and the sample images when tensorboard is installed; samples/step-NNNNNN.png."""
from __future__ import annotations

import csv
from pathlib import Path

from torch import Tensor


def image_grid(images: Tensor) -> Tensor:
    """(rows, columns, 3, H, W) -> (3, rows * H, columns * W)."""
    rows, columns, channels, h, w = images.shape
    return images.permute(2, 0, 3, 1, 4).reshape(channels, rows * h, columns * w)


class RunLog:
    def __init__(self, directory: str, model_name: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model_name = model_name
        self._file = None
        self._columns: list[str] | None = None
        try:  # torch's writer needs the tensorboard package, which pyface does not require
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.tensorboard = None
        else:
            self.tensorboard = SummaryWriter(str(self.directory / "tensorboard"))

    def write(self, step: int, seconds: float, samples_per_s: float, lr: float, losses: dict[str, float],
              held_out: dict[str, float]) -> None:
        if self._columns is None:  # the losses' names are known from the first step on
            self._columns = ["step", "seconds", "samples_per_s", "lr", *losses, "held_out"]
            self._file = open(self.directory / "metrics.csv", "a", newline="")
            if self._file.tell() == 0:
                csv.writer(self._file).writerow(self._columns)
        held = next(iter(held_out.values()), "")
        csv.writer(self._file).writerow([step, f"{seconds:.3f}", f"{samples_per_s:.2f}", f"{lr:.6g}",
                                         *(f"{value:.6g}" for value in losses.values()), held])
        self._file.flush()
        if self.tensorboard is not None:
            for name, value in {**losses, **{f"held_out/{k}": v for k, v in held_out.items()},
                                "samples_per_s": samples_per_s, "lr": lr}.items():
                self.tensorboard.add_scalar(name if "/" in name else f"train/{name}", value, step)

    def image(self, step: int, images: Tensor) -> Path:
        grid = image_grid(images)
        path = self.directory / "samples" / f"step-{step:06d}.png"
        path.parent.mkdir(exist_ok=True)
        from PIL import Image

        Image.fromarray((grid.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
        if self.tensorboard is not None:
            self.tensorboard.add_image(f"samples/{self.model_name}", grid, step)
        return path

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
