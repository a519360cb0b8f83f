"""ATVGnet: landmark PCA, ATNet, VGNet and the regression discriminator on synthetic talking
sequences; shapes through time, learning, the dynamic pixel-wise loss, bad inputs."""
import pytest
import torch
import torch.nn.functional as F

from pyface.data import talking_sequence_batch
from pyface.models import ATNet, LandmarkPCA, RegressionDiscriminator, VGNet
from pyface.models.facial_map import DRAWN_FACE_CONNECTIONS
from pyface.nn import DynamicPixelWiseLoss


def sequences(n=2, frames=6, size=32, seed=0):
    return talking_sequence_batch(n, frames, torch.Generator().manual_seed(seed), size=size, render=True)


def fitted_pca(components=4):
    batch = talking_sequence_batch(8, 20, torch.Generator().manual_seed(1))
    return LandmarkPCA(9, components).fit(batch["landmarks"])


def test_pca_round_trips_landmarks_in_its_span():
    pca = fitted_pca(6)
    landmarks = talking_sequence_batch(2, 5, torch.Generator().manual_seed(2))["landmarks"]
    rebuilt = pca.inverse(pca.transform(landmarks))
    assert rebuilt.shape == landmarks.shape
    assert (rebuilt - landmarks).abs().max() < 0.05  # the drawn faces vary in few directions
    with pytest.raises(ValueError, match="need more than 6 landmark sets"):
        LandmarkPCA(9, 6).fit(landmarks[0, :3])


def test_atnet_learns_landmarks_from_mfcc():
    torch.manual_seed(0)
    batch = sequences(4, 8)
    mfcc = torch.randn(4, 8, 28, 12) + batch["envelope"].view(4, 8, 1, 1) * 3  # MFCC-like windows carrying the envelope
    net = ATNet(fitted_pca(), hidden=32)
    predicted = net(mfcc, batch["landmarks"][:, 0])
    assert predicted.shape == (4, 8, 9, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = F.mse_loss(net(mfcc, batch["landmarks"][:, 0]), batch["landmarks"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_vgnet_frames_through_time_and_dynamic_loss():
    torch.manual_seed(0)
    batch = sequences(2, 4, size=32)
    net = VGNet(DRAWN_FACE_CONNECTIONS, width=8)
    out = net(batch["frames"][:, 0], batch["landmarks"][:, 0], batch["landmarks"])
    assert out["frames"].shape == (2, 4, 3, 32, 32) and out["attention"].shape == (2, 4, 1, 32, 32)
    # frame = attention * colour + (1 - attention) * the example image
    torch.testing.assert_close(out["frames"], out["attention"] * out["colour"] +
                               (1 - out["attention"]) * batch["frames"][:, :1])
    criterion = DynamicPixelWiseLoss(beta=0.5)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        out = net(batch["frames"][:, 0], batch["landmarks"][:, 0], batch["landmarks"])
        loss = criterion(out["frames"], batch["frames"], out["attention"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_regression_discriminator():
    torch.manual_seed(0)
    score, coefficients = RegressionDiscriminator(4, width=8, hidden=16)(sequences(2, 5)["frames"])
    assert score.shape == (2, 5) and coefficients.shape == (2, 5, 4)


def test_bad_inputs():
    net = ATNet(fitted_pca(), hidden=16)
    with pytest.raises(ValueError, match="mfcc must be \\(N, T, 28, 12\\)"):
        net(torch.zeros(2, 5, 28, 13), torch.zeros(2, 9, 2))
    with pytest.raises(ValueError, match="example_landmarks must be \\(N, 9, 2\\)"):
        net(torch.zeros(2, 5, 28, 12), torch.zeros(2, 8, 2))
    vg = VGNet(DRAWN_FACE_CONNECTIONS, width=8)
    with pytest.raises(ValueError, match="multiples of 8"):
        vg(torch.zeros(1, 3, 30, 30), torch.zeros(1, 9, 2), torch.zeros(1, 2, 9, 2))
    with pytest.raises(ValueError, match="frames must be \\(N, T, 3, H, W\\)"):
        RegressionDiscriminator(4)(torch.zeros(2, 3, 32, 32))


@pytest.mark.skipif(not __import__("pyface")._extension.loaded(), reason="compiled extension not built")
def test_fused_loss_matches_reference_backend():
    torch.manual_seed(0)
    batch = sequences(2, 3, size=32)
    net = VGNet(DRAWN_FACE_CONNECTIONS, width=8).double()
    results = []
    for backend in ("cpu", "reference"):
        out = net(batch["frames"][:, 0].double(), batch["landmarks"][:, 0].double(), batch["landmarks"].double())
        loss = DynamicPixelWiseLoss(beta=0.5, backend=backend)(out["frames"], batch["frames"].double(), out["attention"])
        results.append((loss, torch.autograd.grad(loss, list(net.parameters()))))
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
