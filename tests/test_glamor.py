"""pyface.models.GLAMORNet: shapes, learning, fused vs reference backends, compile, bad inputs."""
import helpers
import pytest
import torch
import torch.nn.functional as F

import pyface
from pyface.data import emotion_batch
from pyface.models import GLAMORNet

needs_extension = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")


def batch(n=4, seed=0):
    return emotion_batch(n, torch.Generator().manual_seed(seed))


def test_shapes():
    torch.manual_seed(0)
    model = GLAMORNet().eval()
    b = batch()
    logits, attention = model(b["face"], b["context"], return_attention=True)
    assert logits.shape == (4, 7) and attention.shape == (4, 7, 7)
    torch.testing.assert_close(attention.sum((1, 2)), torch.ones(4))


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = GLAMORNet().train()
    b = batch(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss():
        torch.manual_seed(1)  # the same dropout mask each time: the loss moves with the weights only
        return F.cross_entropy(model(b["face"], b["context"]), b["label"])

    before, after = helpers.loss_before_and_after(loss, optimizer, 8)
    assert after < 0.7 * before, (before, after)


@needs_extension
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fused_backend_matches_reference(mode):
    torch.manual_seed(0)
    fused = GLAMORNet().double()
    reference = GLAMORNet(backend="reference").double()
    reference.load_state_dict(fused.state_dict())
    b = batch(3)
    face, context = b["face"].double(), b["context"].double()
    results = []
    for model in (fused, reference):
        model.train(mode == "train")
        torch.manual_seed(1)  # the same dropout mask for both
        logits = model(face, context)
        grads = torch.autograd.grad(F.cross_entropy(logits, b["label"]), list(model.parameters()))
        results.append((logits, grads, model.attention.batchnorm.running_mean.clone()))
    (got, got_grads, got_stats), (want, want_grads, want_stats) = results
    helpers.assert_close_to_largest(got, want, torch.float64)
    for g, w in zip(got_grads, want_grads):
        helpers.assert_close_to_largest(g, w, torch.float64)
    torch.testing.assert_close(got_stats, want_stats)


@needs_extension
def test_eval_forward_compiles():
    torch.manual_seed(0)
    model = GLAMORNet().eval()
    b = batch(2)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        helpers.assert_close_to_largest(compiled(b["face"], b["context"]), model(b["face"], b["context"]),
                                        torch.float32)


def test_bad_inputs():
    model = GLAMORNet()
    face, context = torch.rand(2, 3, 96, 96), torch.rand(2, 3, 112, 112)
    with pytest.raises(ValueError, match="face must be 96x96"):
        model(torch.rand(2, 3, 64, 64), context)
    with pytest.raises(ValueError, match="context must have 3 channels"):
        model(face, torch.rand(2, 1, 112, 112))
    with pytest.raises(ValueError, match="face batch 2 != context batch 1"):
        model(face, context[:1])
    with pytest.raises(ValueError, match="context must be an \\(N, 3, 112, 112\\)"):
        model(face, context[0])
