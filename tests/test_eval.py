"""`pyface eval` and its metrics, learning that breaks when training breaks, and the demo's
MP4: the lip-sync score ranks the truth above a shifted truth above a still face, a GLAMOR-Net
learns an easy two-class task in a few dozen steps, the eval JSON has its shape, the MP4
decodes with its sound, and each bad input is a one-line usage error."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from pyface import evaluate, metrics
from pyface.cli import main
from pyface.data import EMOTIONS, talking_sequence_batch
from pyface.data.emotion import draw_emotion_batch
from pyface.models import GLAMORNet
from pyface.train import train


def _usage_error(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"pyface {argv[0]}: error: ") and expected in err, err


@pytest.fixture(scope="module")
def clips():
    return talking_sequence_batch(12, evaluate.CLIP_FRAMES, torch.Generator().manual_seed(evaluate.HELD_OUT_SEED),
                                  render=True, frame_size=(64, 48), waveform=True)


def test_lip_sync_ranks_truth_above_shifted_above_still(clips):
    frames, waveform = clips["frames"], clips["waveform"]
    truth = metrics.lip_sync(frames, waveform).mean().item()
    shifted = metrics.lip_sync(frames.roll(evaluate.SHIFT_FRAMES, dims=1), waveform).mean().item()
    still = metrics.lip_sync(frames[:, :1].expand_as(frames), waveform).mean().item()
    assert truth > 0.8 and still == 0.0 and truth - 0.5 > shifted, (truth, shifted, still)
    # the same frames against another clip's audio are out of sync too
    assert metrics.lip_sync(frames, waveform.roll(1, dims=0)).mean().item() < 0.3


def test_mouth_opening_follows_the_drawn_mouth(clips):
    opening = metrics.mouth_opening(clips["frames"])
    assert metrics.correlation(opening, clips["envelope"]).mean() > 0.8


def test_lip_curve_reads_the_smile_whatever_the_opening():
    from dataclasses import replace

    from pyface.data.faces import draw_faces
    from pyface.data.styles import speaker_identities

    smiles, openings = torch.tensor([-0.8, 0.0, 1.0]), torch.tensor([0.05, 0.6])
    for seed in range(4):
        identity = speaker_identities(1, torch.Generator().manual_seed(seed))
        faces = replace(identity, **{name: getattr(identity, name).repeat_interleave(6, 0) for name in
                                     ("center_x", "center_y", "scale", "roll", "yaw", "eye_open", "brow_tilt", "skin",
                                      "hair", "background")},
                        smile=smiles.repeat(2), mouth_open=openings.repeat_interleave(3))
        curve = metrics.lip_curve(draw_faces(faces, (64, 64))["image"]).view(2, 3)  # (opening, smile)
        assert (curve[:, 0] < curve[:, 1]).all() and (curve[:, 1] < curve[:, 2]).all(), curve  # frown, straight, smile
        assert (curve[:, 2] - curve[:, 0]).min() > 0.12, curve
    assert torch.equal(metrics.lip_curve(torch.full((2, 3, 64, 64), 0.6)), torch.zeros(2))  # no lips: 0


def test_image_metrics():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 3, 32, 24)
    assert torch.isinf(metrics.psnr(a, a)).all() and torch.allclose(metrics.ssim(a, a), torch.ones(2, 3))
    noisy = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    expected = -10 * torch.log10((noisy - a).pow(2).flatten(-3).mean(-1))
    torch.testing.assert_close(metrics.psnr(noisy, a), expected)
    assert (metrics.ssim(noisy, a) < 1).all() and (metrics.ssim(noisy, a) > metrics.ssim(torch.rand_like(a), a)).all()


def test_landmark_error_is_normalised_by_the_eyes():
    truth = torch.tensor([[[-0.5, 0.0], [0.5, 0.0], [0.0, 0.5]]])
    torch.testing.assert_close(metrics.landmark_error(truth + torch.tensor([0.1, 0.0]), truth), torch.tensor([0.1]))
    torch.testing.assert_close(metrics.landmark_error(2 * truth, 2 * truth + 0.2), torch.tensor([0.2 * math.sqrt(2) / 2]))


def test_gap_closed():
    assert metrics.scored(0.75, 0.5, 1.0)["gap_closed"] == pytest.approx(0.5)
    assert metrics.scored(20.0, 10.0, None, value_error=0.01, floor_error=0.1)["gap_closed"] == pytest.approx(0.9)


def test_glamor_learns_an_easy_two_class_task():
    """happy against sad, clear faces: chance is 50%; a hundred steps get well past it."""
    torch.manual_seed(0)
    model = GLAMORNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    classes = torch.tensor([EMOTIONS.index("happy"), EMOTIONS.index("sad")])
    generator = torch.Generator().manual_seed(0)

    def batch(n, g):
        labels = torch.randint(2, (n,), generator=g)
        drawn = draw_emotion_batch(classes[labels], g)
        return drawn["face"], drawn["context"], labels

    for _ in range(100):  # about 40 to learn it, more for BatchNorm's running statistics to follow
        face, context, labels = batch(16, generator)
        loss = F.cross_entropy(model(face, context)[:, classes], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    face, context, labels = batch(200, torch.Generator().manual_seed(evaluate.HELD_OUT_SEED))
    with torch.no_grad():
        accuracy = (model(face, context)[:, classes].argmax(1) == labels).float().mean().item()
    assert accuracy > 0.75, accuracy


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A one-step checkpoint of each model (what eval reads, not what it is good at)."""
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for model in ("glamor", "speech-gan", "atvgnet", "style-mapping"):
        paths[model] = root / f"{model}.pt"
        train(model, 1, "cpu", batch_size=2, checkpoint=str(paths[model]), progress=False, log=lambda line: None)
    return paths


@pytest.mark.parametrize("model", ["glamor", "speech-gan", "atvgnet", "style-mapping"])
def test_eval_json(model, checkpoints, tmp_path, monkeypatch, capsys):
    # a few held-out samples: this checks the report, not the model
    monkeypatch.setitem(evaluate._SIZES[model], evaluate.FULL, 14 if model == "glamor" else 2)
    out = tmp_path / "eval.json"
    assert main(["eval", model, "--checkpoint", str(checkpoints[model]), "--json", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == model and result["checkpoint"] == str(checkpoints[model]) and result["steps"] == 1
    assert evaluate.MAIN_METRIC[model] in result["metrics"]
    for name, entry in result["metrics"].items():
        assert {"value", "floor", "ceiling", "gap_closed"} <= set(entry), name
        assert all(math.isfinite(entry[key]) for key in ("value", "floor", "gap_closed")), (name, entry)
        if entry["ceiling"] is not None and entry["ceiling"] != entry["floor"]:
            gap = (entry["value"] - entry["floor"]) / (entry["ceiling"] - entry["floor"])
            assert entry["gap_closed"] == pytest.approx(gap), name
    printed = capsys.readouterr().out
    assert "gap closed" in printed and evaluate.MAIN_METRIC[model] in printed
    if model == "glamor":
        confusion = torch.tensor(result["confusion"]["rows_true_columns_predicted"])
        assert confusion.shape == (7, 7) and confusion.sum() == 14


def test_eval_refuses_bad_checkpoints(capsys, checkpoints, tmp_path):
    _usage_error(capsys, ["eval", "atvgnet", "--checkpoint", str(checkpoints["glamor"])], "holds a glamor checkpoint")
    _usage_error(capsys, ["eval", "glamor", "--checkpoint", str(tmp_path / "missing.pt")], "no checkpoint file")


def test_train_refuses_held_out_seeds(capsys):
    _usage_error(capsys, ["train", "glamor", "--synthetic", "--seed", str(evaluate.HELD_OUT_SEED)], "--seed must lie in")


def test_learning_curve_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(evaluate._SIZES["glamor"], evaluate.CURVE, 7)
    checkpoint = tmp_path / "glamor.pt"
    logged = []
    train("glamor", 2, "cpu", batch_size=2, checkpoint=str(checkpoint), eval_every=1, progress=False,
          log=logged.append)
    curve = json.loads((tmp_path / "glamor.pt.curve.json").read_text())
    assert curve["metric"] == "accuracy" and [p["step"] for p in curve["points"]] == [1, 2]
    assert any("held-out accuracy" in line for line in logged)


def _speech(path, seconds=1.3, seed=5):
    import soundfile

    from pyface.data import speech_envelope, speech_waveform

    g = torch.Generator().manual_seed(seed)
    waveform = speech_waveform(speech_envelope(1, round(25 * seconds), g), g)[0]
    soundfile.write(str(path), waveform.numpy(), 16000)
    return path


def _streams(path):
    import av

    with av.open(str(path)) as container:
        kinds = sorted(stream.type for stream in container.streams)
        frames = sum(1 for _ in container.decode(video=0))
        height = container.streams.video[0].height
    with av.open(str(path)) as container:
        audio_seconds = sum(frame.samples for frame in container.decode(audio=0)) / container.streams.audio[0].rate
    return kinds, frames, height, audio_seconds


@pytest.mark.parametrize("model", ["speech-gan", "atvgnet"])
def test_demo_writes_an_mp4_with_its_sound(model, checkpoints, tmp_path, capsys):
    pytest.importorskip("av")
    from PIL import Image

    wav = _speech(tmp_path / "speech.wav", seconds=1.3)
    # any face size: scaled to cover the model's frame and cropped
    Image.new("RGB", (301, 173), (200, 150, 120)).save(tmp_path / "face.png")
    out = tmp_path / "talk.mp4"
    assert main(["demo", model, "--wav", str(wav), "--checkpoint", str(checkpoints[model]), "--image",
                 str(tmp_path / "face.png"), "--out", str(out)]) == 0
    kinds, frames, height, audio_seconds = _streams(out)
    assert kinds == ["audio", "video"] and frames == 32 and height == 256  # 1.3 s at 25 fps; 64 rows x 4
    assert audio_seconds == pytest.approx(1.3, abs=0.05)
    assert "barely trained" in capsys.readouterr().err
    # a video's sound track drives it as well as a wav
    again = tmp_path / "again.mp4"
    assert main(["demo", model, "--wav", str(out), "--checkpoint", str(checkpoints[model]), "--out", str(again)]) == 0
    assert _streams(again)[1] == 32
    grid = tmp_path / "grid.png"
    assert main(["demo", model, "--wav", str(wav), "--checkpoint", str(checkpoints[model]), "--out", str(grid),
                 "--max-frames", "12"]) == 0
    h, w = (64, 48) if model == "speech-gan" else (64, 64)
    assert Image.open(grid).size == (10 * w, 2 * h)


def test_demo_refuses_bad_inputs(capsys, checkpoints, tmp_path):
    wav = _speech(tmp_path / "speech.wav")
    checkpoint = str(checkpoints["speech-gan"])
    demo = ["demo", "speech-gan", "--wav", str(wav), "--checkpoint", checkpoint]
    not_an_image = tmp_path / "face.png"
    not_an_image.write_text("not an image")
    _usage_error(capsys, [*demo, "--out", str(tmp_path / "t.mp4"), "--image", str(not_an_image)], "cannot read")
    _usage_error(capsys, [*demo, "--out", str(tmp_path / "t.mp4"), "--image", str(tmp_path / "none.png")],
                 "no image file")
    _usage_error(capsys, [*demo, "--out", str(tmp_path / "t.gif")], "--out must end in .mp4")
    not_audio = tmp_path / "noise.wav"
    not_audio.write_bytes(b"RIFF nonsense")
    _usage_error(capsys, ["demo", "speech-gan", "--wav", str(not_audio), "--checkpoint", checkpoint, "--out",
                          str(tmp_path / "t.mp4")], "cannot decode")
    _usage_error(capsys, ["demo", "speech-gan", "--wav", str(tmp_path / "none.wav"), "--checkpoint", checkpoint,
                          "--out", str(tmp_path / "t.mp4")], "no such file")
    _usage_error(capsys, ["demo", "atvgnet", "--wav", str(wav), "--checkpoint", checkpoint, "--out",
                          str(tmp_path / "t.mp4")], "holds a speech-gan checkpoint")
    _usage_error(capsys, ["demo", "atvgnet", "--wav", str(wav), "--checkpoint", str(tmp_path / "none.pt"), "--out",
                          str(tmp_path / "t.mp4")], "no checkpoint file")
