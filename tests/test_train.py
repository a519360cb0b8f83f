"""`pyface train`: runs, logs every step, saves and resumes its checkpoint."""
import subprocess
import sys

import pytest
import torch

from pyface._usage import UsageError
from pyface.train import train


def test_train_and_resume(tmp_path):
    checkpoint = tmp_path / "glamor.pt"
    logged = []
    first = train("glamor", 2, "cpu", batch_size=2, checkpoint=str(checkpoint), progress=False, log=logged.append)
    assert (first.first_step, first.last_step) == (1, 2)
    assert [line.split(" loss ")[0] for line in logged] == ["step 1", "step 2"]
    assert torch.load(checkpoint, weights_only=False)["step"] == 2
    second = train("glamor", 2, "cpu", batch_size=2, checkpoint=str(checkpoint), resume=True, progress=False,
                   log=logged.append)
    assert (second.first_step, second.last_step) == (3, 4) and second.first_loss == first.first_loss
    assert torch.load(checkpoint, weights_only=False)["step"] == 4


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint file"):
        train("glamor", 1, "cpu", checkpoint=str(tmp_path / "missing.pt"), resume=True, progress=False)


def test_cli_prints_first_and_last_loss(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pyface", "train", "glamor", "--synthetic", "--steps", "2", "--batch-size", "2",
         "--device", "cpu", "--checkpoint", str(tmp_path / "c.pt")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step 2 loss" in result.stdout + result.stderr
    assert "glamor: steps 1-2" in result.stdout and "first loss" in result.stdout and "last loss" in result.stdout


def test_style_mapping_trains():
    result = train("style-mapping", 2, "cpu", batch_size=2, progress=False, log=lambda line: None)
    assert (result.first_step, result.last_step) == (1, 2) and result.last_loss == result.last_loss  # finite


@pytest.mark.parametrize("model", ["atvgnet", "speech-gan"])
def test_gans_train_and_resume(tmp_path, model):
    checkpoint = tmp_path / f"{model}.pt"
    logged = []
    first = train(model, 1, "cpu", batch_size=2, checkpoint=str(checkpoint), progress=False, log=logged.append)
    assert "generator" in logged[0] and "discriminator" in logged[0]
    second = train(model, 1, "cpu", batch_size=2, checkpoint=str(checkpoint), resume=True, progress=False,
                   log=logged.append)
    assert (second.first_step, second.first_loss) == (2, first.first_loss)
    assert torch.isfinite(torch.tensor(second.last_loss))


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_demo_writes_a_grid_from_real_speech(tmp_path):
    from PIL import Image

    wav = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "hello from pyface"], check=True, timeout=60)
    checkpoint = tmp_path / "speech-gan.pt"
    train("speech-gan", 1, "cpu", batch_size=2, checkpoint=str(checkpoint), progress=False, log=lambda line: None)
    result = subprocess.run(
        [sys.executable, "-m", "pyface", "demo", "speech-gan", "--wav", str(wav), "--checkpoint", str(checkpoint),
         "--out", str(tmp_path / "grid.png"), "--max-frames", "12"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    width, height = Image.open(tmp_path / "grid.png").size
    assert (width, height) == (10 * 48, 2 * 64)  # 12 frames of 64 x 48, ten a row


def test_subnormals_flushed_in_every_cpu_thread():
    # torch.set_flush_denormal reaches only the calling thread; training flushes in all of
    # ATen's threads, so a parallel op's every chunk is flushed, and the mode is restored.
    from pyface import _extension
    from pyface.train import _subnormals_flushed

    if not _extension.loaded():
        pytest.skip(f"needs the compiled extension: {_extension.missing_reason()}")
    tiny = torch.full((1 << 20,), 1e-39)  # subnormal; the product with 0.5 is too
    with _subnormals_flushed(torch.device("cpu")):
        flushed = tiny * 0.5
    kept = tiny * 0.5
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")
    assert torch.count_nonzero(flushed) == 0, "some threads kept subnormals"
    assert torch.all(kept == torch.tensor(5e-40))
