"""The style-aware talking head end to end: the styled synthetic speakers, the stages' training
and evaluation, pyface.pipelines.StyleAwareTalkingHead, `pyface eval style-aware` and
`pyface demo style-aware`."""
import shutil

import pytest
import torch

from pyface.cli import main
from pyface.data import LANDMARKS
from pyface.data.styles import (
    NEUTRAL_STYLE, SpeakingStyle, audio_features, reading_batch, style_transfer_batch, styled_talking_batch,
)
from pyface.evaluate import evaluate_modules, lip_gap, style_statistics
from pyface.models import FaceReader, mouth_descriptor, nearest_templates
from pyface.pipelines import STAGES, StyleAwareTalkingHead
from pyface.train import train

from test_eval import _speech, _usage_error


def test_a_style_shows_in_the_landmarks():
    g = torch.Generator().manual_seed(0)
    styles = SpeakingStyle(torch.tensor([0.9, -0.5, 0.0]), torch.tensor([1.0, 0.3, NEUTRAL_STYLE[1]]))
    batch = styled_talking_batch(3, 40, g, render=False, styles=styles)
    statistics = style_statistics(batch["landmarks"])
    neutral = style_statistics(batch["neutral_landmarks"])
    assert statistics[0, 0] > neutral[0, 0] + 0.05 and statistics[1, 0] < neutral[1, 0] - 0.03  # smile / frown
    assert statistics[0, 1] > statistics[1, 1]  # the wide opener opens wider
    torch.testing.assert_close(statistics[2], neutral[2])  # the neutral style is the neutral landmarks
    # the mouth follows the speech in every style
    for clip in range(3):
        assert torch.corrcoef(torch.stack([lip_gap(batch["landmarks"][clip]), batch["envelope"][clip]]))[0, 1] > 0.99


def test_styled_clips_render_and_carry_their_audio():
    batch = styled_talking_batch(2, 10, torch.Generator().manual_seed(1), size=32)
    assert batch["frames"].shape == (2, 10, 3, 32, 32) and batch["source"].shape == (2, 3, 32, 32)
    assert batch["audio"].shape == (2, 10, 40) and batch["waveform"].shape == (2, 10 * 640)
    loud = batch["audio"][0].mean(-1)
    assert torch.corrcoef(torch.stack([loud, batch["envelope"][0]]))[0, 1] > 0.8
    # standardised per clip: the level of a recording does not matter
    torch.testing.assert_close(audio_features(3 * batch["waveform"][0], 10), batch["audio"][0], atol=1e-4, rtol=1e-4)


def test_style_patterns_show_the_templates_on_the_new_face():
    batch = style_transfer_batch(6, 3, torch.Generator().manual_seed(2), size=32)
    assert batch["patterns"].shape == (6, 4, 3, 32, 32) and batch["frames"].shape == (6, 3, 3, 32, 32)
    # pattern 0 (None) and 3 (O) differ in the mouth; the background is the new face's own
    assert (batch["patterns"][:, 0] - batch["patterns"][:, 3]).abs().amax(dim=(1, 2, 3)).min() > 0.1
    torch.testing.assert_close(batch["patterns"][:, :, :, 0, 0], batch["source"][:, None, :, 0, 0].expand(-1, 4, -1))
    templates = nearest_templates(mouth_descriptor(batch["landmarks"]))
    assert templates.shape == (6, 3) and templates.min() >= 0 and templates.max() <= 3


def test_face_reader_shapes_and_bad_input():
    reader = FaceReader(32, width=4)
    assert reader(torch.rand(2, 3, 32, 32)).shape == (2, len(LANDMARKS), 2)
    assert reader.read(torch.rand(70, 3, 32, 32), batch=64).shape == (70, len(LANDMARKS), 2)
    with pytest.raises(ValueError, match="must be 32 x 32"):
        reader(torch.rand(1, 3, 64, 64))


def test_face_reader_learns():
    torch.manual_seed(0)
    reader = FaceReader(32, width=8)
    optimizer = torch.optim.Adam(reader.parameters(), lr=2e-3)
    batch = reading_batch(64, torch.Generator().manual_seed(3), size=32)

    def loss():
        return torch.nn.functional.mse_loss(reader(batch["image"]), batch["landmarks"])

    before = loss().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.2 * before


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A checkpoint of every stage after one training step, in one directory."""
    directory = tmp_path_factory.mktemp("style-aware")
    for stage in STAGES:
        train(stage, 1, "cpu", batch_size=2, checkpoint=str(directory / f"{stage}.pt"), progress=False,
              log=lambda line: None)
    return directory


def test_every_stage_trains_resumes_and_evaluates(stages, tmp_path):
    for stage in ("audio-motion", "face-reader", "style-generator"):
        checkpoint = tmp_path / f"{stage}.pt"
        shutil.copy(stages / f"{stage}.pt", checkpoint)
        result = train(stage, 1, "cpu", batch_size=2, checkpoint=str(checkpoint), resume=True, progress=False,
                       log=lambda line: None)
        assert (result.first_step, result.last_step) == (2, 2) and result.last_loss == result.last_loss
        from pyface.train import build_modules, load_checkpoint

        modules, config = build_modules(stage, load_checkpoint(str(checkpoint), stage))
        scores = evaluate_modules(stage, modules, config, "curve")["metrics"]
        assert all(set(m) >= {"value", "floor", "ceiling", "gap_closed"} for m in scores.values())


def test_pipeline_makes_frames_in_the_style_asked(stages):
    pipeline = StyleAwareTalkingHead.from_checkpoints(stages)
    batch = styled_talking_batch(1, 30, torch.Generator().manual_seed(4))
    frames = pipeline(batch["source"][0], batch["waveform"][0], batch["frames"][0])
    assert frames.shape == (30, 3, 64, 64) and frames.min() >= 0 and frames.max() <= 1
    assert pipeline.style_references(batch["frames"][0]).shape == (4,)
    neutral = pipeline(batch["source"], batch["waveform"][0])
    assert neutral.shape == frames.shape and not torch.equal(neutral, frames)  # the references change the frames
    # batching over time does not change the frames
    torch.testing.assert_close(pipeline(batch["source"], batch["waveform"][0], batch["frames"][0], batch=7), frames)


def test_pipeline_bad_inputs(stages, tmp_path):
    pipeline = StyleAwareTalkingHead.from_checkpoints(stages)
    face = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="style_frames holds no frame"):
        pipeline(face, torch.randn(16000) * 0.1, torch.rand(0, 3, 64, 64))
    with pytest.raises(ValueError, match=r"face must be \(N, 3, 64, 64\)"):
        pipeline(torch.rand(1, 3, 32, 32), torch.randn(16000) * 0.1)
    with pytest.raises(ValueError, match="too short"):
        pipeline(face, torch.randn(100) * 0.1)
    mixed = tmp_path / "mixed"
    shutil.copytree(stages, mixed)
    shutil.copy(stages / "face-reader.pt", mixed / "style-generator.pt")
    with pytest.raises(ValueError, match="holds a face-reader checkpoint"):
        StyleAwareTalkingHead.from_checkpoints(mixed)
    (mixed / "style-generator.pt").unlink()
    with pytest.raises(ValueError, match="no checkpoint file"):
        StyleAwareTalkingHead.from_checkpoints(mixed)


def test_eval_style_aware(stages, tmp_path, capsys, monkeypatch):
    from pyface import evaluate

    monkeypatch.setattr(evaluate, "STYLE_CLIPS", 3)
    monkeypatch.setattr(evaluate, "CLIP_FRAMES", 20)
    assert main(["eval", "style-aware", "--checkpoints", str(stages), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    for metric in ("style_error", "smile_follows_style", "opening_follows_style", "lip_sync", "mouth_ssim"):
        assert metric in out
    _usage_error(capsys, ["eval", "style-aware"], "needs --checkpoints")


def test_demo_style_aware_writes_a_video_with_sound(stages, tmp_path, capsys):
    import av
    from PIL import Image

    wav = _speech(tmp_path / "speech.wav")
    style = tmp_path / "style"
    style.mkdir()
    clip = styled_talking_batch(1, 12, torch.Generator().manual_seed(5))["frames"][0]
    for i, frame in enumerate(clip):
        Image.fromarray((frame.permute(1, 2, 0) * 255).round().byte().numpy()).save(style / f"{i:03d}.png")
    out = tmp_path / "talk.mp4"
    assert main(["demo", "style-aware", "--wav", str(wav), "--style", str(style), "--checkpoints", str(stages),
                 "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
    # the style source as a video
    video = tmp_path / "style.mp4"
    from pyface.demo import write_video

    write_video(clip, torch.zeros(12 * 640), video)
    assert main(["demo", "style-aware", "--wav", str(wav), "--style", str(video), "--checkpoints", str(stages),
                 "--out", str(tmp_path / "grid.png")]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    demo = ["demo", "style-aware", "--wav", str(wav), "--checkpoints", str(stages), "--out", str(tmp_path / "t.mp4")]
    _usage_error(capsys, [*demo, "--style", str(empty)], "holds no readable frame")
    _usage_error(capsys, [*demo, "--style", str(tmp_path / "none")], "no style source")
    _usage_error(capsys, ["demo", "style-aware", "--wav", str(wav), "--out", str(out)], "needs --checkpoints")
    _usage_error(capsys, ["demo", "style-aware", "--wav", str(wav), "--checkpoints", str(tmp_path), "--out", str(out)],
                 "no checkpoint file")
