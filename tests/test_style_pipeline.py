"""The style-aware talking head end to end: the styled synthetic speakers, the stages' training
and evaluation, pyface.pipelines.StyleAwareTalkingHead, `pyface eval style-aware` and
`pyface demo style-aware`."""
import shutil

import helpers
import pytest
import torch
from test_eval import _speech, _usage_error

from pyface import metrics
from pyface.cli import main
from pyface.data import LANDMARKS
from pyface.data.styles import (
    NEUTRAL_STYLE,
    SpeakingStyle,
    audio_features,
    reading_batch,
    speaker_identities,
    style_transfer_batch,
    styled_talking_batch,
)
from pyface.evaluate import evaluate_modules, lip_gap, style_statistics, style_transfer_scores
from pyface.models import FaceReader, StyleMapping, mouth_descriptor, nearest_templates
from pyface.pipelines import STAGES, StyleAwareTalkingHead
from pyface.recipes import style_generator_inputs
from pyface.train import train


def test_a_style_shows_in_the_landmarks_and_the_lips():
    identities = speaker_identities(3, torch.Generator().manual_seed(9))
    styles = SpeakingStyle(torch.tensor([0.9, -0.5, 0.0]), torch.tensor([1.0, 0.3, NEUTRAL_STYLE[1]]))
    batch = styled_talking_batch(3, 40, torch.Generator().manual_seed(0), styles=styles, identities=identities)
    said_neutrally = styled_talking_batch(3, 40, torch.Generator().manual_seed(0), styles=SpeakingStyle.neutral(3),
                                          identities=identities)  # the same speech
    mouth, neutral = mouth_descriptor(batch["landmarks"]), mouth_descriptor(batch["neutral_landmarks"])
    lift = mouth[..., 1].mean(-1) - neutral[..., 1].mean(-1)
    assert lift[0] > 0.05 and lift[1] < -0.03  # smile / frown
    assert mouth[0, :, 0].max() > mouth[1, :, 0].max()  # the wide opener opens wider
    torch.testing.assert_close(mouth[2], neutral[2])  # the neutral style is the neutral landmarks
    # the lip curve read in the pixels, against the same face saying the same in the neutral
    # style, tells the smile from the frown
    curve = metrics.lip_curve(batch["frames"]).mean(-1) - metrics.lip_curve(said_neutrally["frames"]).mean(-1)
    assert curve[0] > 0.03 and curve[1] < -0.02 and curve[2] == 0, curve
    # the mouth follows the speech in every style
    for clip in range(3):
        assert torch.corrcoef(torch.stack([lip_gap(batch["landmarks"][clip]), batch["envelope"][clip]]))[0, 1] > 0.99


def test_style_statistics_read_the_smile_and_the_opening(stages):
    reader = StyleAwareTalkingHead.from_checkpoints(stages).face_reader
    clips = styled_talking_batch(2, 12, torch.Generator().manual_seed(7))["frames"]
    statistics = style_statistics(clips, reader)
    assert statistics.shape == (2, 2)
    torch.testing.assert_close(statistics[:, 0], metrics.lip_curve(clips).mean(-1))
    opening = reader.read(clips.flatten(0, 1))["mouth"][:, 0].view(2, 12)
    torch.testing.assert_close(statistics[:, 1], opening.quantile(0.9, dim=-1))


def test_style_transfer_scores_compare_the_change_the_style_makes():
    g = torch.Generator().manual_seed(3)
    drawn_neutral, change = torch.randn(10, 2, generator=g), 0.05 * torch.randn(10, 2, generator=g)
    rendering_offset = torch.tensor([0.03, 0.07])  # the same in every frame a generator makes
    made_neutral = drawn_neutral + rendering_offset
    # the right change on top of the offset: the ceiling, however large the offset
    perfect = style_transfer_scores(made_neutral + change, made_neutral, drawn_neutral + change, drawn_neutral)
    assert perfect["style_error"]["value"] < 1e-5 and perfect["style_error"]["gap_closed"] > 1 - 1e-5
    assert perfect["smile_follows_style"]["value"] > 0.999 and perfect["opening_error"]["value"] < 1e-5
    assert perfect["style_error"]["absolute_value"] > 0.5  # the absolute comparison keeps the offset
    # no change: the floor; half the change: half the gap
    none = style_transfer_scores(made_neutral, made_neutral, drawn_neutral + change, drawn_neutral)
    assert abs(none["style_error"]["gap_closed"]) < 1e-6 and none["style_error"]["floor"] > 0
    half = style_transfer_scores(made_neutral + change / 2, made_neutral, drawn_neutral + change, drawn_neutral)
    assert abs(half["style_error"]["gap_closed"] - 0.5) < 1e-5
    # the opposite change is worse than none
    wrong = style_transfer_scores(made_neutral - change, made_neutral, drawn_neutral + change, drawn_neutral)
    assert wrong["style_error"]["gap_closed"] < 0 and wrong["opening_follows_style"]["value"] < -0.999


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
    reading = reader(torch.rand(2, 3, 32, 32))
    assert reading["landmarks"].shape == (2, len(LANDMARKS), 2) and reading["mouth"].shape == (2, 2)
    assert reading["landmarks"].abs().max() <= 1  # soft-argmax: a mean of grid positions
    read = reader.read(torch.rand(70, 3, 32, 32), batch=64)
    assert read["landmarks"].shape == (70, len(LANDMARKS), 2) and read["mouth"].shape == (70, 2)
    with pytest.raises(ValueError, match="must be 32 x 32"):
        reader(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="multiple of 8"):
        FaceReader(36)


def test_face_reader_learns():
    torch.manual_seed(0)
    reader = FaceReader(32, width=8)
    optimizer = torch.optim.Adam(reader.parameters(), lr=2e-3)
    batch = reading_batch(64, torch.Generator().manual_seed(3), size=32)

    def loss():
        return torch.nn.functional.mse_loss(reader(batch["image"])["landmarks"], batch["landmarks"])

    before, after = helpers.loss_before_and_after(loss, optimizer, 30)
    assert after < 0.2 * before, (before, after)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A checkpoint of every stage after one training step, in one directory."""
    directory = tmp_path_factory.mktemp("style-aware")
    for stage in STAGES:  # the style mapping before the generator, which learns from its patterns
        mapping = str(directory / "style-mapping.pt") if stage == "style-generator" else None
        train(stage, 1, "cpu", batch_size=2, checkpoint=str(directory / f"{stage}.pt"), style_mapping=mapping,
              progress=False, log=lambda line: None)
    return directory


def test_some_samples_have_no_style_references():
    g = torch.Generator().manual_seed(6)
    batch = style_transfer_batch(12, 2, g, size=32, unreferenced=0.5)
    referenced = batch["referenced"]
    assert referenced.any() and not referenced.all()
    # they keep their style (the facial map carries it); their patterns are the source's as its own
    # reference: the true ones the source itself, a mapping's those it makes of the source and the source
    inputs = style_generator_inputs(batch, 32)
    source, patterns = inputs["source"], inputs["style_patterns"]
    unreferenced = (~referenced).repeat_interleave(2)
    assert torch.equal(patterns[unreferenced], source[unreferenced].unsqueeze(1).expand(-1, 4, -1, -1, -1))
    assert torch.equal(patterns[~unreferenced], batch["patterns"][referenced].repeat_interleave(2, 0))
    mapping = StyleMapping(residual=True)
    mapping.decoder[-1].bias.data.fill_(0.1)  # so that a mapped face differs from the face
    mapped = style_generator_inputs(batch, 32, mapping)["style_patterns"].unflatten(0, (12, 2))[:, 0]
    own = batch["source"].unsqueeze(1).expand(-1, 4, -1, -1, -1)
    torch.testing.assert_close(mapped[~referenced], mapping.patterns(batch["source"], own)[~referenced])
    torch.testing.assert_close(mapped[referenced], mapping.patterns(batch["source"], batch["references"])[referenced])
    assert not torch.allclose(mapped[~referenced], own[~referenced])
    # without the option, every sample is referenced
    assert style_transfer_batch(3, 2, g, size=32)["referenced"].all()


def test_the_generator_learns_from_a_trained_style_mapping(stages, tmp_path):
    from pyface._usage import UsageError
    from pyface.recipes import load_checkpoint

    generator = load_checkpoint(str(stages / "style-generator.pt"), "style-generator")
    mapping = load_checkpoint(str(stages / "style-mapping.pt"), "style-mapping")
    assert generator["config"]["style_mapping"]["path"] == str(stages / "style-mapping.pt")
    assert set(generator["optimizers"]) == {"model"}  # the mapping is frozen
    for name, weight in mapping["modules"]["model"].items():
        assert torch.equal(generator["modules"]["style_mapping"][name], weight), name
    quiet = {"progress": False, "log": lambda line: None}
    with pytest.raises(UsageError, match="--style-mapping belongs to a new style-generator training"):
        train("face-reader", 1, "cpu", batch_size=2, style_mapping=str(stages / "style-mapping.pt"), **quiet)
    with pytest.raises(UsageError, match="holds a face-reader checkpoint"):
        train("style-generator", 1, "cpu", batch_size=2, style_mapping=str(stages / "face-reader.pt"), **quiet)


def test_every_stage_trains_resumes_and_evaluates(stages, tmp_path):
    for stage in ("audio-motion", "face-reader", "style-mapping", "style-generator"):
        checkpoint = tmp_path / f"{stage}.pt"
        shutil.copy(stages / f"{stage}.pt", checkpoint)
        result = train(stage, 1, "cpu", batch_size=2, checkpoint=str(checkpoint), resume=True, progress=False,
                       log=lambda line: None)
        assert (result.first_step, result.last_step) == (2, 2) and result.last_loss == result.last_loss
        from pyface.recipes import build_modules, load_checkpoint

        modules, config = build_modules(stage, load_checkpoint(str(checkpoint), stage))
        scores = evaluate_modules(stage, modules, config, "curve")["metrics"]
        assert all(set(m) >= {"value", "floor", "ceiling", "gap_closed"} for m in scores.values())


def test_pipeline_makes_frames_in_the_style_asked(stages):
    pipeline = StyleAwareTalkingHead.from_checkpoints(stages)
    batch = styled_talking_batch(1, 30, torch.Generator().manual_seed(4))
    frames = pipeline(batch["source"][0], batch["waveform"][0], batch["frames"][0])
    assert frames.shape == (30, 3, 64, 64) and frames.min() >= 0 and frames.max() <= 1
    assert pipeline.style_references(batch["frames"][0]).shape == (4,)
    patterns, style = pipeline.style(batch["source"], batch["frames"][0])
    assert patterns.shape == (4, 3, 64, 64) and style.shape == (1, 2)
    # the frames are the parts composed: the style's keypoints rendered with its patterns
    keypoints = pipeline.keypoints(batch["source"], batch["waveform"][0], style)
    torch.testing.assert_close(pipeline.render(batch["source"], keypoints, patterns), frames)
    patterns, style = pipeline.style(batch["source"], None)  # the neutral style, the face as its own reference
    own = pipeline.style_mapping.patterns(batch["source"], batch["source"].expand(4, -1, -1, -1).unsqueeze(0))[0]
    assert torch.equal(style, torch.tensor([NEUTRAL_STYLE])) and torch.equal(patterns, own)
    # the style is an input of the motion (that it learns to open wider: test_audio_motion)
    wide, narrow = (pipeline.keypoints(batch["source"], batch["waveform"][0], torch.tensor([[0.0, opening]]))
                    for opening in (1.0, 0.3))
    assert not torch.equal(wide, narrow)
    neutral = pipeline(batch["source"], batch["waveform"][0])
    assert neutral.shape == frames.shape and not torch.equal(neutral, frames)  # the references change the frames
    # batching over time does not change the frames
    torch.testing.assert_close(pipeline(batch["source"], batch["waveform"][0], batch["frames"][0], batch=7), frames)
    # with the style speaker's speech, the motion comes from features projected onto theirs
    speech = styled_talking_batch(1, 40, torch.Generator().manual_seed(8), render=False)["waveform"][0]
    projected = pipeline.keypoints(batch["source"], batch["waveform"][0], style_waveform=speech)
    assert projected.shape == (30, len(LANDMARKS), 2)
    assert not torch.equal(projected, pipeline.keypoints(batch["source"], batch["waveform"][0]))
    assert pipeline(batch["source"], batch["waveform"][0], batch["frames"][0], speech).shape == frames.shape


def test_pipeline_bad_inputs(stages, tmp_path):
    pipeline = StyleAwareTalkingHead.from_checkpoints(stages)
    face = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="style_frames holds no frame"):
        pipeline(face, torch.randn(16000) * 0.1, torch.rand(0, 3, 64, 64))
    with pytest.raises(ValueError, match=r"face must be \(N, 3, 64, 64\)"):
        pipeline(torch.rand(1, 3, 32, 32), torch.randn(16000) * 0.1)
    with pytest.raises(ValueError, match="too short"):
        pipeline(face, torch.randn(100) * 0.1)
    with pytest.raises(ValueError, match="style_waveform holds 5 frames of speech; the manifold projection needs"):
        pipeline(face, torch.randn(16000) * 0.1, style_waveform=torch.randn(5 * 640) * 0.1)
    mixed = tmp_path / "mixed"
    shutil.copytree(stages, mixed)
    shutil.copy(stages / "face-reader.pt", mixed / "style-generator.pt")
    with pytest.raises(ValueError, match="holds a face-reader checkpoint"):
        StyleAwareTalkingHead.from_checkpoints(mixed)
    shutil.copy(stages / "style-generator.pt", mixed / "style-generator.pt")
    train("style-mapping", 1, "cpu", batch_size=2, seed=1, checkpoint=str(mixed / "style-mapping.pt"), progress=False,
          log=lambda line: None)  # another style mapping than the generator learned from
    with pytest.raises(ValueError, match="learned from the patterns of another style mapping"):
        StyleAwareTalkingHead.from_checkpoints(mixed)
    (mixed / "style-generator.pt").unlink()
    with pytest.raises(ValueError, match="no checkpoint file"):
        StyleAwareTalkingHead.from_checkpoints(mixed)


def test_checkpoints_of_an_older_model_are_clear_errors(stages, tmp_path):
    from pyface._usage import UsageError
    from pyface.recipes import build_modules, load_checkpoint

    state = load_checkpoint(str(stages / "audio-motion.pt"), "audio-motion")
    del state["modules"]["style_encoder"]  # an audio-motion stage from before the StyleEncoder
    with pytest.raises(UsageError, match="holds no 'style_encoder' weights: it was saved by an older pyface"):
        build_modules("audio-motion", state)
    state = load_checkpoint(str(stages / "style-generator.pt"), "style-generator")
    state["config"]["warp_sigma"] = None  # weights of a generator built with the warp, config of one without
    with pytest.raises(UsageError, match="'model' weights do not fit this pyface's style-generator"):
        build_modules("style-generator", state)
    older = tmp_path / "style-aware"
    shutil.copytree(stages, older)
    torch.save({**state, "config": {**state["config"], "warp_sigma": None}}, older / "style-generator.pt")
    with pytest.raises(ValueError, match="do not fit"):
        StyleAwareTalkingHead.from_checkpoints(older)
    with pytest.raises(UsageError, match="do not fit"):
        train("style-generator", 1, "cpu", batch_size=2, checkpoint=str(older / "style-generator.pt"), resume=True,
              progress=False, log=lambda line: None)


def test_eval_style_aware(stages, tmp_path, capsys, monkeypatch):
    from pyface import evaluate

    monkeypatch.setattr(evaluate, "STYLE_CLIPS", 3)
    monkeypatch.setattr(evaluate, "CLIP_FRAMES", 20)
    assert main(["eval", "style-aware", "--checkpoints", str(stages), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    for metric in ("style_error", "smile_error", "opening_error", "smile_follows_style", "opening_follows_style",
                   "lip_sync", "mouth_ssim", "absolute_value", "absolute_floor", "style_error_motion_only"):
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
    # the style source as a video: silent, then with the speaker's speech (the projection's database)
    video = tmp_path / "style.mp4"
    from pyface.demo import write_video

    write_video(clip, torch.zeros(12 * 640), video)
    capsys.readouterr()
    assert main(["demo", "style-aware", "--wav", str(wav), "--style", str(video), "--checkpoints", str(stages),
                 "--out", str(tmp_path / "grid.png")]) == 0
    assert "not projected onto the character's sounds" in capsys.readouterr().err
    speaking_clip = styled_talking_batch(1, 12, torch.Generator().manual_seed(5))
    write_video(speaking_clip["frames"][0], speaking_clip["waveform"][0], video)
    assert main(["demo", "style-aware", "--wav", str(wav), "--style", str(video), "--checkpoints", str(stages),
                 "--out", str(tmp_path / "grid.png")]) == 0
    assert "not projected" not in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    demo = ["demo", "style-aware", "--wav", str(wav), "--checkpoints", str(stages), "--out", str(tmp_path / "t.mp4")]
    _usage_error(capsys, [*demo, "--style", str(empty)], "holds no readable frame")
    _usage_error(capsys, [*demo, "--style", str(tmp_path / "none")], "no style source")
    _usage_error(capsys, ["demo", "style-aware", "--wav", str(wav), "--out", str(out)], "needs --checkpoints")
    _usage_error(capsys, ["demo", "style-aware", "--wav", str(wav), "--checkpoints", str(tmp_path), "--out", str(out)],
                 "no checkpoint file")


def test_the_generator_stays_alive_under_its_training(tmp_path):
    # Its inputs are images, all positive: Adam's first steps moved every weight of a stem
    # channel the same way, and a stem without normalisation ended with its ReLUs dead
    # everywhere (the U-Net's output constant, the frames the warped photo) within 30 steps.
    from pyface.models.style_aware import landmark_warp
    from pyface.recipes import build_modules, load_checkpoint

    checkpoint = str(tmp_path / "style-generator.pt")
    train("style-generator", 30, "cpu", batch_size=2, checkpoint=checkpoint, progress=False, log=lambda line: None)
    generator = build_modules("style-generator", load_checkpoint(checkpoint, "style-generator"))[0]["model"].eval()
    inputs = style_generator_inputs(style_transfer_batch(2, 2, torch.Generator().manual_seed(8), size=64), 64)
    warped = landmark_warp(inputs["source"], inputs["source_landmarks"], inputs["landmarks"], generator.warp_sigma)
    stem_outputs = []
    generator.stem.register_forward_hook(lambda module, args, output: stem_outputs.append(output))
    with torch.no_grad():
        change = (generator(**inputs) - warped).abs().mean().item()
    alive = (stem_outputs[0] > 0).float().mean().item()
    assert alive > 0.1, f"{alive:.2%} of the stem's ReLUs pass anything"
    assert change > 1e-3, "the generator returns the warped photo"
