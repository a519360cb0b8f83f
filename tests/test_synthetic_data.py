"""pyface.data: the drawn faces carry exact labels and landmarks, and samples are reproducible."""
import torch

from pyface.data import EMOTIONS, LANDMARKS, SyntheticEmotionFaces, draw_faces, emotion_batch, random_parameters
from pyface.data.faces import LABEL


def test_landmarks_land_on_their_parts():
    params = random_parameters(6, torch.Generator().manual_seed(0), mouth_open=torch.full((6,), 0.6))
    drawn = draw_faces(params, (128, 128))
    assert drawn["image"].shape == (6, 3, 128, 128) and drawn["parsing"].dtype == torch.uint8
    assert drawn["image"].min() >= 0 and drawn["image"].max() <= 1
    pixel = ((drawn["landmarks"] + 1) / 2 * 127).round().long().clamp(0, 127)  # (x, y) -> column, row
    expected = {"l_eye": "l_eye", "r_eye": "r_eye", "nose": "nose", "upper_lip": "u_lip", "lower_lip": "l_lip",
                "l_brow": "l_brow", "r_brow": "r_brow"}
    for index, name in enumerate(LANDMARKS):
        if name not in expected:
            continue
        labels = drawn["parsing"][torch.arange(6), pixel[:, index, 1], pixel[:, index, 0]]
        assert (labels == LABEL[expected[name]]).all(), (name, labels)


def test_mouth_opening_follows_its_parameter():
    g = torch.Generator().manual_seed(1)
    closed = random_parameters(1, g, mouth_open=torch.zeros(1), roll=torch.zeros(1), yaw=torch.zeros(1))
    opened = random_parameters(1, g, mouth_open=torch.ones(1), roll=torch.zeros(1), yaw=torch.zeros(1))
    area = [(draw_faces(p, (96, 96))["parsing"] == LABEL["mouth"]).sum().item() for p in (closed, opened)]
    assert area[1] > 4 * max(area[0], 1)


def test_emotion_samples_are_reproducible():
    data = SyntheticEmotionFaces(10, seed=3)
    a, b = data[4], data[4]
    assert torch.equal(a["face"], b["face"]) and torch.equal(a["context"], b["context"]) and a["label"] == b["label"]
    assert a["face"].shape == (3, 96, 96) and a["context"].shape == (3, 112, 112)
    assert not torch.equal(data[5]["face"], a["face"])


def test_emotion_batch():
    batch = emotion_batch(8, torch.Generator().manual_seed(0))
    assert batch["face"].shape == (8, 3, 96, 96) and batch["context"].shape == (8, 3, 112, 112)
    assert batch["label"].min() >= 0 and batch["label"].max() < len(EMOTIONS)
    assert (batch["context"] == 0).flatten(1).any(1).all()  # every context has its face box masked


def test_talking_face_folder_reads_frames_parsing_and_audio(tmp_path):
    import numpy as np
    from PIL import Image

    from pyface.data import TalkingFaceFolder, talking_sequence_batch

    clip = talking_sequence_batch(1, 3, torch.Generator().manual_seed(0), audio_dim=5, size=24, render=True)
    (tmp_path / "clip_a" / "frames").mkdir(parents=True)
    (tmp_path / "clip_a" / "parsing").mkdir()
    for t in range(3):
        rgb = (clip["frames"][0, t].permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(rgb).save(tmp_path / "clip_a" / "frames" / f"{t:06d}.png")
        Image.fromarray(clip["parsing"][0, t].numpy()).save(tmp_path / "clip_a" / "parsing" / f"{t:06d}.png")
    np.save(tmp_path / "clip_a" / "audio.npy", clip["audio"][0].numpy())
    item = TalkingFaceFolder(tmp_path)[0]
    assert item["name"] == "clip_a" and item["frames"].shape == (3, 3, 24, 24)
    torch.testing.assert_close(item["frames"], clip["frames"][0], atol=1 / 255, rtol=0)
    assert torch.equal(item["parsing"], clip["parsing"][0])
    torch.testing.assert_close(item["audio"], clip["audio"][0])


def test_talking_face_folder_errors(tmp_path):
    import pytest

    from pyface.data import TalkingFaceFolder

    with pytest.raises(ValueError, match="no <clip>/frames/ directories"):
        TalkingFaceFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        TalkingFaceFolder(tmp_path / "missing")
