"""pyface train under torchrun (gloo, on this machine's CPU): N processes take the steps of
one, two loopback "nodes" equal one node of two processes, checkpoints resume on another
world size, rank 0 alone writes, and the training controls and real-data folders work.

The runs are small (a few steps of batch 8, OMP_NUM_THREADS=1 per rank). Runs are compared
by each module's relative L2 difference (all its floating tensors together): Adam's first
steps move every weight by about the learning rate whatever its gradient's size, so a
weight whose true gradient is 0 (a conv bias before BatchNorm) follows rounding noise."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyface.cli import main
from pyface.distributed import GlobalBatchDropout, GlobalBatchNorm
from pyface.optimization import Controls, StepTools, learning_rate
from pyface.train import train

STEPS, BATCH = 3, 8
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def pyface_train(args: list[str], cwd: Path, processes: int = 1, node: tuple[int, int] | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
    """`pyface train ARGS` in cwd, as one plain process or under torchrun."""
    if processes == 1 and node is None:
        command = [sys.executable, "-m", "pyface", "train", *args]
    elif node is None:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "pyface", "train", *args]
    else:
        rank, port = node
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                   "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}",
                   "-m", "pyface", "train", *args]
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def module_differences(a: str | Path, b: str | Path, key: str = "modules") -> dict[str, float]:
    """Per module: |a - b| / |a| over all its floating tensors (weights and buffers)."""
    first, second = (torch.load(p, map_location="cpu", weights_only=False)[key] for p in (a, b))
    differences = {}
    for name, state in first.items():
        x = torch.cat([v.flatten().double() for v in state.values() if v.is_floating_point()])
        y = torch.cat([v.flatten().double() for v in second[name].values() if v.is_floating_point()])
        differences[name] = ((x - y).norm() / x.norm()).item()
    return differences


def adam_momentum_difference(a: Path, b: Path) -> float:
    """The worst relative difference of Adam's first moments (the gradients' running mean)."""
    first, second = (torch.load(p, map_location="cpu", weights_only=False)["optimizers"] for p in (a, b))
    worst = 0.0
    for name, state in first.items():
        x = torch.cat([s["exp_avg"].flatten() for s in state["state"].values()])
        y = torch.cat([s["exp_avg"].flatten() for s in second[name]["state"].values()])
        worst = max(worst, ((x - y).norm() / x.norm()).item())
    return worst


def write_emotion_folder(root: Path, per_class: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for emotion in ("happy", "Sad", "angry"):  # class folders in any case
        for i in range(per_class):
            sample = root / emotion / f"sample{i}"
            sample.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (80, 70, 3), dtype=np.uint8)).save(sample / "face.png")
            Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(sample / "context.png")
    return root


def write_clip_folder(root: Path, clips: int = 4, frames: int = 12) -> Path:
    import soundfile
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in range(clips):
        clip = root / f"clip{c}"
        (clip / "frames").mkdir(parents=True)
        for t in range(frames):
            Image.fromarray(rng.integers(0, 255, (72, 60, 3), dtype=np.uint8)).save(clip / "frames" / f"{t:06d}.png")
        seconds = frames / 25 + 0.05
        soundfile.write(clip / "audio.wav", (0.1 * rng.standard_normal(int(22050 * seconds))).astype(np.float32), 22050)
    return root


def glamor(steps: int, checkpoint: str, *more: str, sync_bn: bool = True) -> list[str]:
    """pyface train's arguments for the small synthetic glamor training, and more."""
    return ["glamor", "--synthetic", "--steps", str(steps), "--batch-size", str(BATCH), "--device", "cpu",
            "--checkpoint", checkpoint, *(["--sync-bn"] if sync_bn else []), *more]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Checkpoints of the same glamor training on 1 process and on 2 (with --sync-bn)."""
    directory = tmp_path_factory.mktemp("glamor-runs")
    pyface_train(glamor(STEPS, "one.pt"), directory)
    two = pyface_train(glamor(STEPS, "two.pt", "--log-dir", "logs"), directory, processes=2)
    return directory, two


def test_the_first_step_gradients_are_the_one_process_ones(tmp_path):
    """After one step Adam's first moment is 0.1 x the gradient, taken at the same weights on 1
    and 2 processes: the averaged gradient must match to rounding. (After more steps it drifts
    apart: the weights whose gradient is rounding noise move by +-lr and change the rest, by 1e-2
    to 3.5e-2 after 3 steps depending on the host's kernels, so later moments are not compared.)"""
    pyface_train(glamor(1, "one.pt"), tmp_path)
    pyface_train(glamor(1, "two.pt"), tmp_path, processes=2)
    assert adam_momentum_difference(tmp_path / "one.pt", tmp_path / "two.pt") < 1e-4  # measured 2.7e-6


def test_two_processes_take_the_one_process_steps(runs):
    directory, two = runs
    assert max(module_differences(directory / "one.pt", directory / "two.pt").values()) < 1e-3  # measured 7e-5
    one_state, two_state = (torch.load(directory / p, weights_only=False) for p in ("one.pt", "two.pt"))
    assert one_state["first_loss"] == pytest.approx(two_state["first_loss"], rel=1e-5)  # the global batch's loss
    assert two_state["world_size"] == 2
    # rank 0 alone logs: each step's line once
    assert two.stdout.count(f"step {STEPS} loss") == 1
    assert two.stdout.count("glamor: steps 1-3") == 1
    assert len((directory / "logs" / "metrics.csv").read_text().splitlines()) == STEPS + 1


def test_without_sync_bn_the_processes_part_ways(runs, tmp_path):
    """The comparison can fail: with each rank's own BatchNorm statistics, 2 processes are not 1."""
    directory, _ = runs
    pyface_train(glamor(STEPS, "local.pt", sync_bn=False), tmp_path, processes=2)
    assert max(module_differences(directory / "one.pt", tmp_path / "local.pt").values()) > 1e-2


def test_a_gan_on_two_processes_takes_the_one_process_steps(tmp_path):
    common = ["speech-gan", "--synthetic", "--steps", "2", "--batch-size", "4", "--sync-bn", "--device", "cpu",
              "--checkpoint"]
    pyface_train([*common, "one.pt"], tmp_path)
    pyface_train([*common, "two.pt"], tmp_path, processes=2)
    differences = module_differences(tmp_path / "one.pt", tmp_path / "two.pt")
    assert set(differences) == {"generator", "frame_disc", "sequence_disc"}
    assert max(differences.values()) < 2e-3, differences  # measured 2.5e-4 at most


def test_two_loopback_nodes_equal_one_node_of_two_processes(runs, tmp_path):
    directory, _ = runs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = glamor(STEPS, "node.pt")
    (tmp_path / "node0").mkdir()
    (tmp_path / "node1").mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--node_rank=1", "--nproc_per_node=1",
               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "pyface", "train", *args]
    second = subprocess.Popen(command, cwd=tmp_path / "node1", env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        pyface_train(args, tmp_path / "node0", node=(0, port))
        assert second.wait(timeout=120) == 0, second.stderr.read()[-3000:]
    finally:
        second.kill()
    assert max(module_differences(directory / "two.pt", tmp_path / "node0" / "node.pt").values()) < 1e-6
    assert not any((tmp_path / "node1").iterdir())  # rank 1 wrote nothing


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_world_size(runs, tmp_path, first, then):
    directory, _ = runs
    pyface_train(glamor(STEPS - 1, "resumed.pt"), tmp_path, processes=first)
    pyface_train(glamor(1, "resumed.pt", "--resume"), tmp_path, processes=then)
    assert max(module_differences(directory / "one.pt", tmp_path / "resumed.pt").values()) < 1e-3


def test_real_folders_train_and_shard_alike(tmp_path):
    data = write_emotion_folder(tmp_path / "emotion")
    common = ["glamor", "--data", str(data), "--steps", "3", "--batch-size", "4", "--sync-bn", "--device", "cpu",
              "--checkpoint"]  # 9 samples: 2 global batches an epoch, the third step starts the second epoch
    pyface_train([*common, "one.pt", "--workers", "2"], tmp_path)
    pyface_train([*common, "two.pt"], tmp_path, processes=2)
    assert max(module_differences(tmp_path / "one.pt", tmp_path / "two.pt").values()) < 1e-3


def test_speech_gan_trains_on_clips_with_their_sound(tmp_path):
    data = write_clip_folder(tmp_path / "clips")
    result = train("speech-gan", 2, "cpu", batch_size=2, data=str(data), workers=1, progress=False,
                   log=lambda line: None, checkpoint=str(tmp_path / "gan.pt"))
    assert np.isfinite(result.first_loss) and np.isfinite(result.last_loss)
    assert torch.load(tmp_path / "gan.pt", weights_only=False)["data"] == str(data)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_half_precision_step_is_finite(tmp_path, precision):
    result = train("glamor", 2, "cpu", batch_size=4, controls=Controls(precision=precision), progress=False,
                   log=lambda line: None, checkpoint=str(tmp_path / "half.pt"))
    assert np.isfinite(result.last_loss)
    weights = torch.load(tmp_path / "half.pt", weights_only=False)["modules"]["model"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_accumulated_micro_batches_take_the_whole_batch_step(tmp_path):
    """audio-motion has no BatchNorm: 2 micro-batches of 4 give the step of one batch of 8."""
    for name, parts in (("whole", 1), ("micro", 2)):
        train("audio-motion", 2, "cpu", batch_size=8, controls=Controls(accumulate=parts), progress=False,
              log=lambda line: None, checkpoint=str(tmp_path / f"{name}.pt"))
    assert max(module_differences(tmp_path / "whole.pt", tmp_path / "micro.pt").values()) < 1e-5
    assert adam_momentum_difference(tmp_path / "whole.pt", tmp_path / "micro.pt") < 1e-5


def test_ema_weights_are_saved_and_evaluated(tmp_path):
    train("style-mapping", 2, "cpu", batch_size=2, ema=0.5, progress=False, log=lambda line: None,
          checkpoint=str(tmp_path / "ema.pt"), log_dir=str(tmp_path / "logs"), sample_every=2)
    state = torch.load(tmp_path / "ema.pt", weights_only=False)
    assert set(state["ema"]) == {"model"}
    averaged, trained = state["ema"]["model"], state["modules"]["model"]
    key = next(k for k, v in trained.items() if v.is_floating_point() and v.dim() > 1)
    assert not torch.equal(averaged[key], trained[key])  # half of the start, a quarter of each step's weights
    from pyface.recipes import build_modules

    modules, _ = build_modules("style-mapping", state)  # pyface eval's and demo's modules: the averaged weights
    assert torch.equal(modules["model"].state_dict()[key], averaged[key])
    assert (tmp_path / "logs" / "samples" / "step-000002.png").is_file()


def test_clipping_bounds_the_gradient_norm():
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    tools = StepTools(None, torch.device("cpu"), 1.0, {}, controls=Controls(clip_grad=0.01))
    before = [p.detach().clone() for p in layer.parameters()]
    tools.update((layer(torch.randn(5, 4)) * 100).square().mean(), optimizer)
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, layer.parameters())])
    assert step.norm().item() == pytest.approx(0.01, rel=1e-4)  # SGD at lr 1: the step is the clipped gradient


def test_the_learning_rate_schedule():
    assert [learning_rate(1.0, s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert [learning_rate(1.0, s, 10, warmup=4) for s in (0, 1, 3, 4)] == [0.25, 0.5, 1.0, 1.0]
    assert learning_rate(1.0, 0, 10, "cosine") == pytest.approx(1.0)
    assert learning_rate(1.0, 10, 10, "cosine") == pytest.approx(0.1)
    assert learning_rate(1.0, 2, 10, "cosine", warmup=2) == pytest.approx(1.0)  # the cosine starts after the warmup


def test_global_batchnorm_and_dropout_in_one_process_are_torchs():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    ours, theirs = GlobalBatchNorm(3).double(), torch.nn.BatchNorm2d(3).double()
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs)
    weight = torch.randn_like(x)
    g_ours, = torch.autograd.grad((y_ours * weight).sum(), x)
    g_theirs, = torch.autograd.grad((y_theirs * weight).sum(), x)
    torch.testing.assert_close(g_ours, g_theirs)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    h = torch.randn(16, 32)
    torch.manual_seed(1)
    dropped = torch.nn.Dropout(0.5)(h)
    torch.manual_seed(1)
    assert torch.equal(GlobalBatchDropout(0.5)(h), dropped)  # the same draw: one-process runs are unchanged


@pytest.mark.parametrize("args, message", [
    (["glamor", "--steps", "1"], "pass one data source"),
    (["glamor", "--synthetic", "--steps", "1", "--batch-size", "6", "--accumulate", "4"], "split evenly"),
    (["glamor", "--synthetic", "--steps", "1", "--ema", "1.5"], "--ema is a decay"),
    (["glamor", "--synthetic", "--steps", "1", "--sample-every", "2", "--log-dir", "x"], "makes no images"),
    (["speech-gan", "--synthetic", "--steps", "1", "--sample-every", "2"], "needs --log-dir"),
    (["atvgnet", "--data", ".", "--steps", "1"], "synthetic data only"),
    (["glamor", "--data", "no-such-dir", "--steps", "1"], "no directory"),
])
def test_bad_training_flags_are_clear_errors(args, message, capsys):
    assert main(["train", *args, "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err


def test_bad_data_names_the_file(tmp_path, capsys):
    data = write_emotion_folder(tmp_path / "emotion")
    broken = data / "happy" / "sample1" / "face.png"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    for workers in ("0", "2"):  # read here, or in a worker process
        assert main(["train", "glamor", "--data", str(data), "--batch-size", "9", "--steps", "1",
                     "--workers", workers, "--device", "cpu"]) == 2
        assert f"cannot read {broken} as an image" in capsys.readouterr().err
    clips = write_clip_folder(tmp_path / "clips", clips=2)
    (clips / "clip1" / "audio.wav").unlink()
    assert main(["train", "speech-gan", "--data", str(clips), "--batch-size", "2", "--steps", "1", "--device", "cpu"]) == 2
    assert f"missing sound {clips / 'clip1' / 'audio.wav'}" in capsys.readouterr().err


def test_the_run_log_writes_tensorboard_events_when_tensorboard_is_there(tmp_path, monkeypatch):
    """tensorboard is not installed here: a stand-in SummaryWriter records what the run log gives it."""
    import types

    calls = []

    class SummaryWriter:
        def __init__(self, directory):
            calls.append(("open", directory))

        def add_scalar(self, tag, value, step):
            calls.append(("scalar", tag, step))

        def add_image(self, tag, image, step):
            calls.append(("image", tag, tuple(image.shape), step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    train("speech-gan", 2, "cpu", batch_size=2, progress=False, log=lambda line: None, log_dir=str(tmp_path),
          sample_every=2)
    assert calls[0] == ("open", str(tmp_path / "tensorboard")) and calls[-1] == ("close",)
    assert ("scalar", "train/generator", 2) in calls and ("scalar", "train/samples_per_s", 1) in calls
    assert ("image", "samples/speech-gan", (3, 2 * 64, 8 * 48), 2) in calls  # made frames above the true ones
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,seconds,samples_per_s,lr,generator,discriminators,held_out" and len(rows) == 3
