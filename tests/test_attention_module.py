"""pyface.nn.GlobalLocalAttention against GLAMOR-Net's score net written in eager PyTorch on
the concatenation, in training mode (batch statistics, running statistics updated) and in
eval mode (the BatchNorm folded into one fused call)."""
import copy

import pytest
import torch
from helpers import BACKENDS, assert_close_to_largest, device_of
from torch import nn

from pyface.nn import GlobalLocalAttention


def eager_forward(module: GlobalLocalAttention, face, context):
    """The anchor's formulation: concatenate, Linear-ReLU-BN-ReLU-Linear, softmax, pool."""
    cells = context.flatten(2).transpose(1, 2)  # (N, P, Dc)
    n, p, _ = cells.shape
    concatenated = torch.cat([face.unsqueeze(1).expand(-1, p, -1), cells], dim=2)
    hidden = torch.relu(module.linear1(concatenated)).reshape(n * p, -1)
    if module.batchnorm is not None:
        hidden = torch.relu(module.batchnorm(hidden))
    scores = module.linear2(hidden).view(n, p)
    attention = torch.softmax(scores, dim=1)
    return (cells * attention.unsqueeze(2)).sum(1), attention.view(n, *context.shape[2:])


def make(device, n=4, face_dim=6, context_dim=11, spatial=(5, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    face = torch.randn(n, face_dim, generator=g).to(device)
    context = torch.randn(n, context_dim, *spatial, generator=g).to(device)
    return face, context


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_matches_eager_score_net(backend, training, batchnorm):
    device = device_of(backend)
    torch.manual_seed(0)
    fused = GlobalLocalAttention(6, 11, hidden=24, batchnorm=batchnorm, backend=backend).to(device)
    if batchnorm:  # running statistics that differ from a fresh module's
        fused.batchnorm.running_mean.uniform_(-0.5, 0.5)
        fused.batchnorm.running_var.uniform_(0.5, 2.0)
    eager = copy.deepcopy(fused)
    fused.train(training)
    eager.train(training)
    face, context = make(device)
    leaves = [t.clone().requires_grad_() for t in (face, context)]
    eager_leaves = [t.clone().requires_grad_() for t in (face, context)]
    got = fused(*leaves)
    want = eager_forward(eager, *eager_leaves)
    weighting = [torch.rand_like(o) for o in want]
    sum((o * w).sum() for o, w in zip(got, weighting)).backward()
    sum((o * w).sum() for o, w in zip(want, weighting)).backward()
    for g, w in zip(got, want):
        assert_close_to_largest(g.detach(), w.detach(), torch.float32)
    for g, w in zip(leaves, eager_leaves):
        assert_close_to_largest(g.grad, w.grad, torch.float32)
    for (name, p), (_, q) in zip(fused.named_parameters(), eager.named_parameters()):
        if name == "linear2.bias":  # softmax ignores it: both gradients are (about) zero
            assert p.grad.abs().max() < 1e-5 and q.grad.abs().max() < 1e-5
        else:
            assert_close_to_largest(p.grad, q.grad, torch.float32)
    if batchnorm:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(fused.batchnorm, name), getattr(eager.batchnorm, name))


def test_eval_mode_is_one_fused_call(monkeypatch):
    import pyface.nn.attention as attention_module

    calls = []
    original = attention_module.global_local_attention
    monkeypatch.setattr(attention_module, "global_local_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(torch, "var_mean", None)  # eval mode computes no batch statistics
    module = GlobalLocalAttention(6, 11, hidden=8).eval()
    pooled, attention = module(*make("cpu"))
    assert len(calls) == 1 and pooled.shape == (4, 11) and attention.shape == (4, 5, 7)


def test_momentum_none_is_a_cumulative_average():
    fused = GlobalLocalAttention(6, 11, hidden=8)
    fused.batchnorm.momentum = None
    eager = copy.deepcopy(fused)
    for seed in range(3):
        face, context = make("cpu", seed=seed)
        fused(face, context)
        eager_forward(eager, face, context)
    torch.testing.assert_close(fused.batchnorm.running_var, eager.batchnorm.running_var)
    torch.testing.assert_close(fused.batchnorm.running_mean, eager.batchnorm.running_mean)


def test_repr_names_the_sizes():
    assert "face_dim=6, context_dim=11, hidden=8, batchnorm=True" in repr(GlobalLocalAttention(6, 11, hidden=8))
    assert isinstance(GlobalLocalAttention(6, 11).linear1, nn.Linear)
