"""The facial map and the style-reference search."""
import pytest
import torch

from pyface.data import talking_sequence_batch
from pyface.models import MOUTH_TEMPLATES, mouth_descriptor, render_facial_map, select_style_references


def test_a_segment_is_drawn_where_it_lies():
    keypoints = torch.tensor([[[-0.5, 0.0], [0.5, 0.0]]])
    facial_map = render_facial_map(keypoints, [(0, 1)], (21, 21))
    assert facial_map.shape == (1, 1, 21, 21)
    assert (facial_map[0, 0, 10, 5:16] == 1).all()  # row 10 is y = 0; columns 5..15 span x = -0.5..0.5
    assert facial_map[0, 0, :8].max() == 0 and facial_map[0, 0, 13:].max() == 0
    assert facial_map[0, 0, 10, :4].max() == 0 and facial_map[0, 0, 10, 17:].max() == 0


def test_camera_projection():
    g = torch.Generator().manual_seed(0)
    keypoints = torch.rand(2, 5, 3, generator=g) - 0.5
    orthographic = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    groups = [(0, 1, 2), (3, 4)]
    torch.testing.assert_close(render_facial_map(keypoints, groups, (16, 16), camera=orthographic),
                               render_facial_map(keypoints[..., :2], groups, (16, 16)))
    zoom = orthographic * torch.tensor([[2.0], [2.0], [1.0]])  # points twice as far from the centre
    doubled = render_facial_map(keypoints, groups, (16, 16), camera=zoom)
    torch.testing.assert_close(doubled, render_facial_map(keypoints[..., :2] * 2, groups, (16, 16)))


def test_facial_map_bad_inputs():
    with pytest.raises(ValueError, match="connections name keypoints outside"):
        render_facial_map(torch.zeros(1, 3, 2), [(0, 3)], (8, 8))
    with pytest.raises(ValueError, match="camera must be \\(3, 4\\)"):
        render_facial_map(torch.zeros(1, 3, 3), [(0, 1)], (8, 8), camera=torch.eye(3))


def test_style_references_pick_the_matching_mouths():
    batch = talking_sequence_batch(3, 60, torch.Generator().manual_seed(0))
    picked = select_style_references(mouth_descriptor(batch["landmarks"]))
    assert picked.shape == (3, len(MOUTH_TEMPLATES))
    envelope = batch["envelope"]
    assert torch.equal(picked[:, 3], envelope.argmax(1))  # O: the widest-open frame
    closed = envelope.gather(1, picked[:, 1:2]).squeeze(1)  # M: a closed mouth (ties differ in corner lift)
    assert (closed - envelope.min(1).values < 0.02).all()


def test_style_references_bad_inputs():
    with pytest.raises(ValueError, match="frame_descriptors must be"):
        select_style_references(torch.zeros(10, 3))
    with pytest.raises(ValueError, match="no frames"):
        select_style_references(torch.zeros(0, 2))
