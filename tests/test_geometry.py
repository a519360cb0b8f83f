"""pyface.geometry: pose bins, rotations, the keypoint transformation and jacobian combination."""
import math

import pytest
import torch

from pyface import geometry


def test_bins_to_degrees_reads_the_bin_centres():
    logits = torch.full((3, 66), -1e4, dtype=torch.float64)
    for row, index in enumerate((0, 33, 65)):
        logits[row, index] = 0
    torch.testing.assert_close(geometry.bins_to_degrees(logits), torch.tensor([-97.5, 1.5, 97.5], dtype=torch.float64))


def test_bins_to_degrees_is_the_softmax_expectation():
    logits = torch.randn(4, 66, dtype=torch.float64)
    centres = torch.arange(66, dtype=torch.float64) * 3 - 97.5
    torch.testing.assert_close(geometry.bins_to_degrees(logits), (torch.softmax(logits, 1) * centres).sum(1))


def _axis_rotation(axis, degrees):
    """The rotation about one axis (column-vector convention), written out directly."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis].double()


def test_rotation_matrix_composes_pitch_yaw_roll():
    yaw, pitch, roll = torch.tensor([30.0, -12.0]), torch.tensor([10.0, 45.0]), torch.tensor([-20.0, 5.0])
    got = geometry.rotation_matrix(yaw.double(), pitch.double(), roll.double())
    for i in range(2):
        want = _axis_rotation("x", pitch[i]) @ _axis_rotation("y", yaw[i]) @ _axis_rotation("z", roll[i])
        torch.testing.assert_close(got[i], want.T)
    torch.testing.assert_close(got @ got.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    torch.testing.assert_close(torch.linalg.det(got), torch.ones(2, dtype=torch.float64))


def test_yaw_of_90_degrees_turns_x_into_minus_z():
    zero = torch.zeros(1, dtype=torch.float64)
    rotation = geometry.rotation_matrix(zero + 90, zero, zero)
    point = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(point @ rotation, torch.tensor([[[0.0, 0.0, -1.0]]], dtype=torch.float64))


def test_transform_keypoints():
    g = torch.Generator().manual_seed(0)
    canonical, expression = torch.randn(2, 15, 3, generator=g), torch.randn(2, 15, 3, generator=g)
    rotation = geometry.rotation_matrix(*(torch.randn(2, generator=g) * 30 for _ in range(3)))
    translation, scale = torch.randn(2, 3, generator=g), torch.rand(2, generator=g) + 0.5
    got = geometry.transform_keypoints(canonical, rotation, translation, expression, scale)
    for i in range(2):
        want = scale[i] * (canonical[i] @ rotation[i] + expression[i]) + translation[i]
        torch.testing.assert_close(got[i], want)
    plain = geometry.transform_keypoints(canonical, rotation, translation)
    torch.testing.assert_close(plain, canonical @ rotation + translation[:, None])


def test_combine_jacobians():
    g = torch.Generator().manual_seed(0)
    source = torch.eye(2) + 0.3 * torch.randn(2, 10, 2, 2, generator=g)
    driving = torch.eye(2) + 0.3 * torch.randn(2, 10, 2, 2, generator=g)
    combined = geometry.combine_jacobians(source, driving)
    torch.testing.assert_close(combined @ driving, source, rtol=1e-5, atol=1e-5)


def test_geometry_is_differentiable():
    angles = [torch.randn(2, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    canonical = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    translation = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda y, p, r, c, t: geometry.transform_keypoints(c, geometry.rotation_matrix(y, p, r), t),
        (*angles, canonical, translation))


def test_bad_inputs():
    with pytest.raises(ValueError, match="logits must be \\(N, 66\\)"):
        geometry.bins_to_degrees(torch.randn(2, 65))
    with pytest.raises(TypeError, match="logits must be a float tensor"):
        geometry.bins_to_degrees(torch.zeros(2, 66, dtype=torch.long))
    with pytest.raises(ValueError, match="must have one shape"):
        geometry.rotation_matrix(torch.zeros(2), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="rotation must be \\(2, 3, 3\\)"):
        geometry.transform_keypoints(torch.zeros(2, 5, 3), torch.zeros(3, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="expression must be \\(2, 5, 3\\)"):
        geometry.transform_keypoints(torch.zeros(2, 5, 3), torch.zeros(2, 3, 3), torch.zeros(2, 3), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="must have one shape"):
        geometry.combine_jacobians(torch.zeros(2, 5, 2, 2), torch.zeros(2, 4, 2, 2))
