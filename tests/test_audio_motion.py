"""Audio to motion: the manifold projection, AudioMotionGenerator on talking sequences, its
speaking style, and the StyleEncoder that reads the style from style reference images."""
import helpers
import pytest
import torch
import torch.nn.functional as F

from pyface.data import talking_sequence_batch
from pyface.data.styles import SpeakingStyle, styled_talking_batch
from pyface.models import AudioMotionGenerator, StyleEncoder, manifold_projection


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


def test_the_style_drives_the_motion():
    torch.manual_seed(0)
    model = AudioMotionGenerator(audio_dim=16, num_points=9, hidden=32, feature_dim=16, style_dim=2)
    audio = torch.randn(2, 12, 16)
    styles = torch.tensor([[0.0, 0.6], [0.9, 1.0]])
    motion = model(audio, styles)
    assert motion.shape == (2, 12, 9, 2)
    assert not torch.allclose(model(audio, styles.flip(0)), motion)  # the style is an input
    database = model.encode(audio[:1])[0].detach()
    assert model(audio, styles, database=database, k=5).shape == (2, 12, 9, 2)
    with pytest.raises(ValueError, match="built for style_dim=2, given no style"):
        model(audio)
    with pytest.raises(ValueError, match=r"style must be \(2, 2\)"):
        model(audio, styles[:1])
    with pytest.raises(ValueError, match="built for style_dim=0, given a style"):
        AudioMotionGenerator(16, 9)(audio, styles)


def test_styled_clips_carry_their_style_references():
    identities_g = torch.Generator().manual_seed(3)
    from pyface.data.styles import speaker_identities

    identity = speaker_identities(2, identities_g)
    styles = SpeakingStyle(torch.tensor([0.9, -0.5]), torch.tensor([1.0, 0.3]))
    batch = styled_talking_batch(2, 40, torch.Generator().manual_seed(0), size=32, render=False, references=True,
                                 styles=styles, identities=identity)
    references = batch["references"]
    assert references.shape == (2, 4, 3, 32, 32) and "frames" not in batch
    # drawn in the clip's own colours, the O reference (the widest opening) darkest in the mouth
    from pyface import metrics

    opening = metrics.mouth_opening(references)
    assert (opening[:, 3] > opening[:, 0]).all() and (opening[:, 3] > opening[:, 1]).all()
    assert opening[0, 3] > opening[1, 3]  # the wide opener's O opens wider


def test_style_encoder_shapes_bad_input_and_learning():
    torch.manual_seed(0)
    encoder = StyleEncoder(references=4, style_dim=2, width=8, hidden=32)
    batch = styled_talking_batch(16, 30, torch.Generator().manual_seed(1), size=32, render=False, references=True)
    assert encoder(batch["references"]).shape == (16, 2)
    with pytest.raises(ValueError, match=r"references must be \(N, 4, 3, H, W\)"):
        encoder(batch["references"][:, :3])
    optimizer = torch.optim.Adam(encoder.parameters(), lr=2e-3)

    def loss():
        return F.mse_loss(encoder(batch["references"]), batch["style"])

    before, after = helpers.loss_before_and_after(loss, optimizer, 100)
    constant = F.mse_loss(batch["style"].mean(0).expand_as(batch["style"]), batch["style"]).item()
    assert after < 0.3 * constant < before, (before, after, constant)  # beyond the best guess that reads nothing


def test_the_motion_learns_the_style():
    torch.manual_seed(0)
    clips = lambda styles=None: styled_talking_batch(16, 30, torch.Generator().manual_seed(2), render=False,  # noqa: E731
                                                     styles=styles)
    batch = clips()
    model = AudioMotionGenerator(audio_dim=batch["audio"].shape[-1], num_points=9, hidden=32, feature_dim=16,
                                 style_dim=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    motion = lambda b: b["landmarks"] - b["rest_landmarks"].unsqueeze(1)  # noqa: E731
    helpers.loss_before_and_after(lambda: F.mse_loss(model(batch["audio"], batch["style"]), motion(batch)), optimizer,
                                  300)
    # the same speech said by a wide and by a narrow opener: each prediction near its own truth
    styles = {opening: SpeakingStyle(torch.zeros(16), torch.full((16,), opening)) for opening in (1.0, 0.3)}
    truth = {opening: motion(clips(style)) for opening, style in styles.items()}
    with torch.no_grad():
        predicted = {opening: model(batch["audio"], style.as_tensor()) for opening, style in styles.items()}
    between = F.mse_loss(truth[1.0], truth[0.3])
    for opening in styles:
        assert F.mse_loss(predicted[opening], truth[opening]) < 0.3 * between, (opening, between)
