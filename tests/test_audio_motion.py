"""Audio to motion: the manifold projection and AudioMotionGenerator on talking sequences."""
import helpers
import pytest
import torch
import torch.nn.functional as F

from pyface.data import talking_sequence_batch
from pyface.models import AudioMotionGenerator, manifold_projection


def test_projection_reconstructs_points_of_a_flat_manifold():
    g = torch.Generator().manual_seed(0)
    basis, origin = torch.randn(2, 8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    database = origin + torch.rand(200, 2, generator=g, dtype=torch.float64) @ basis  # a 2-D plane in 8-D
    features = origin + torch.rand(3, 5, 2, generator=g, dtype=torch.float64) @ basis
    projected = manifold_projection(features, database, k=6, regularization=1e-9)
    assert projected.shape == features.shape
    torch.testing.assert_close(projected, features, rtol=1e-5, atol=1e-5)


def test_projection_pulls_off_manifold_points_onto_it():
    g = torch.Generator().manual_seed(1)
    basis = torch.randn(2, 8, generator=g)
    database = torch.rand(300, 2, generator=g) @ basis
    on_plane = torch.rand(10, 2, generator=g) @ basis
    normal = torch.linalg.svd(basis, full_matrices=True).Vh[-1]  # orthogonal to the plane
    projected = manifold_projection(on_plane + 0.3 * normal, database, k=8)
    assert (projected - on_plane).norm(dim=1).max() < 0.1


def test_projection_is_differentiable():
    g = torch.Generator().manual_seed(2)
    database = torch.randn(30, 4, generator=g, dtype=torch.float64, requires_grad=True)
    features = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, d: manifold_projection(f, d, k=4), (features, database))


def test_projection_bad_inputs():
    with pytest.raises(ValueError, match="must share F"):
        manifold_projection(torch.zeros(3, 4), torch.zeros(10, 5))
    with pytest.raises(ValueError, match="k must be in \\[1, 10\\]"):
        manifold_projection(torch.zeros(3, 4), torch.zeros(10, 4), k=11)


def test_generator_learns_the_mouth_motion():
    torch.manual_seed(0)
    batch = talking_sequence_batch(8, 40, torch.Generator().manual_seed(0), audio_dim=16)
    model = AudioMotionGenerator(audio_dim=16, num_points=9, hidden=32, feature_dim=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss():
        return F.mse_loss(model(batch["audio"]), batch["motion"])

    before, after = helpers.loss_before_and_after(loss, optimizer, 40)
    assert after < 0.5 * before, (before, after)
    database = model.encode(batch["audio"][:1])[0].detach()  # a speaker's own features, (T, F)
    motion = model(batch["audio"][:1], database=database, k=5)
    assert motion.shape == (1, 40, 9, 2)


def test_generator_bad_audio():
    with pytest.raises(ValueError, match="audio must be \\(N, T, 16\\)"):
        AudioMotionGenerator(16, 9)(torch.zeros(2, 10, 12))
