"""The speech-driven temporal GAN: shapes through time, the generator learns, bad inputs."""
import pytest
import torch

from pyface.data import talking_sequence_batch
from pyface.models import FrameDiscriminator, SequenceDiscriminator, SpeechDrivenGenerator
from pyface.nn import LowerFaceL1Loss


def batch(n=2, frames=5):
    return talking_sequence_batch(n, frames, torch.Generator().manual_seed(0), render=True, frame_size=(32, 24),
                                  features=("windows",))


def test_shapes_through_time():
    torch.manual_seed(0)
    b = batch()
    generator = SpeechDrivenGenerator((32, 24), width=8, blocks=3)
    fake = generator(b["frames"][:, 0], b["windows"])
    assert fake.shape == (2, 5, 3, 32, 24)
    assert FrameDiscriminator(width=8)(fake, b["frames"][:, 0]).shape == (2, 5)
    assert SequenceDiscriminator(width=8, hidden=16)(fake, b["windows"]).shape == (2,)
    noise = torch.zeros(2, 5, generator.noise_dim)
    generator.eval()
    torch.testing.assert_close(generator(b["frames"][:, 0], b["windows"], noise),
                               generator(b["frames"][:, 0], b["windows"], noise))


def test_generator_reconstruction_improves():
    torch.manual_seed(0)
    b = batch(4, 4)
    generator = SpeechDrivenGenerator((32, 24), width=8, blocks=3)
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    criterion = LowerFaceL1Loss()
    noise = torch.zeros(4, 4, generator.noise_dim)
    losses = []
    for _ in range(10):
        loss = criterion(generator(b["frames"][:, 0], b["windows"], noise), b["frames"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_bad_inputs():
    generator = SpeechDrivenGenerator((32, 24), width=8, blocks=3)
    with pytest.raises(ValueError, match="still must be \\(N, 3, 32, 24\\)"):
        generator(torch.rand(1, 3, 32, 32), torch.randn(1, 4, 3200))
    with pytest.raises(ValueError, match="audio must be \\(N, T, samples\\) with N = 1"):
        generator(torch.rand(1, 3, 32, 24), torch.randn(2, 4, 3200))
    with pytest.raises(ValueError, match="must divide by 2\\^blocks"):
        SpeechDrivenGenerator((30, 24), blocks=3)
    with pytest.raises(ValueError, match="must share N and T"):
        SequenceDiscriminator(width=8)(torch.rand(1, 4, 3, 32, 24), torch.randn(1, 3, 3200))


@pytest.mark.skipif(not __import__("pyface")._extension.loaded(), reason="compiled extension not built")
def test_fused_loss_matches_reference_backend():
    torch.manual_seed(0)
    b = batch(2, 3)
    generator = SpeechDrivenGenerator((32, 24), width=8, blocks=3).double()
    noise = torch.zeros(2, 3, generator.noise_dim, dtype=torch.float64)
    results = []
    for backend in ("cpu", "reference"):
        fake = generator(b["frames"][:, 0].double(), b["windows"].double(), noise)
        loss = LowerFaceL1Loss(backend=backend)(fake, b["frames"].double())
        results.append((loss, torch.autograd.grad(loss, list(generator.parameters()))))
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
