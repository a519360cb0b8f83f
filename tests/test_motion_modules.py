"""pyface.nn.KeypointWarp and pyface.nn.DenseMotion: shapes, and the fused backends give the
outputs and gradients of backend="reference"."""
import helpers
import pytest
import torch

import pyface
from pyface.nn import DenseMotion, KeypointWarp

needs_extension = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")


def keypoints(n, k, dims, generator):
    return (torch.rand(n, k, dims, generator=generator) * 2 - 1) * 0.9


@needs_extension
def test_keypoint_warp_module_is_the_op():
    g = torch.Generator().manual_seed(0)
    feature, mask = torch.randn(2, 3, 6, 7, generator=g), torch.randn(2, 5, 6, 7, generator=g)
    kp_source, kp_driving = keypoints(2, 4, 2, g), keypoints(2, 4, 2, g)
    module = KeypointWarp(padding_mode="border", return_deformation=True)
    got = module(feature, kp_source, kp_driving, mask)
    want = pyface.ops.keypoint_warp(feature, kp_source, kp_driving, mask, mask_logits=True, padding_mode="border",
                                    return_deformation=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def _dense_motion_pair(dims, **options):
    torch.manual_seed(0)
    fused = DenseMotion(3, 5, dims=dims, block_expansion=4, num_blocks=2, max_features=16, **options).double()
    reference = DenseMotion(3, 5, dims=dims, block_expansion=4, num_blocks=2, max_features=16, backend="reference",
                            **options).double()
    for name, buffer in fused.named_buffers():  # running statistics far from (0, 1), for the folded BatchNorm
        if name.endswith("running_mean"):
            buffer.normal_()
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    reference.load_state_dict(fused.state_dict())
    return fused.eval(), reference.eval()


@needs_extension
# odd sizes (the decoder upsamples to a skip's size), and even ones whose decoder doubles H and W
# (folded into its convolutions from 16x16 inputs on: pyface.nn.convolution.upsampled_conv)
@pytest.mark.parametrize("size", [(9, 10), (32, 34), (3, 9, 10), (3, 32, 32)], ids=str)
def test_dense_motion_fused_matches_reference(size):
    g = torch.Generator().manual_seed(1)
    dims = len(size)
    fused, reference = _dense_motion_pair(dims, depth=3 if dims == 3 else None)
    inputs = {
        "feature": torch.randn(2, 3, *size, generator=g, dtype=torch.float64),
        "kp_source": keypoints(2, 5, dims, g).double(),
        "kp_driving": keypoints(2, 5, dims, g).double(),
        "jacobian": torch.eye(dims, dtype=torch.float64) + 0.2 * torch.randn(2, 5, dims, dims, generator=g,
                                                                            dtype=torch.float64),
    }

    def run(module):
        leaves = {name: t.clone().requires_grad_() for name, t in inputs.items()}
        out = module(**leaves)
        total = sum((v * torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype).view(v.shape)).sum() for v in out.values())
        params = list(module.parameters())
        grads = torch.autograd.grad(total, [*leaves.values(), *params])
        return out, grads

    got, got_grads = run(fused)
    want, want_grads = run(reference)
    assert got.keys() == want.keys() == {"mask_logits", "deformation", "deformed", "occlusion"}
    assert got["deformed"].shape == (2, 3, *size) and got["mask_logits"].shape == (2, 6, *size)
    assert got["occlusion"].shape == (2, 1, *size[-2:])
    for name in got:
        helpers.assert_close_to_largest(got[name], want[name], torch.float64)
    for a, b in zip(got_grads, want_grads):
        helpers.assert_close_to_largest(a, b, torch.float64)


@needs_extension
def test_dense_motion_in_training_mode_normalizes_by_the_batch():
    """Training mode: BatchNorm is not folded (the batch's statistics), and the running ones
    are updated as the reference's are."""
    g = torch.Generator().manual_seed(2)
    fused, reference = _dense_motion_pair(2)
    feature = torch.randn(2, 3, 32, 34, generator=g, dtype=torch.float64)
    kp_source, kp_driving = keypoints(2, 5, 2, g).double(), keypoints(2, 5, 2, g).double()
    got = fused.train()(feature, kp_source, kp_driving)
    want = reference.train()(feature, kp_source, kp_driving)
    for name in want:
        helpers.assert_close_to_largest(got[name], want[name], torch.float64)
    for (name, a), (_, b) in zip(fused.named_buffers(), reference.named_buffers()):
        torch.testing.assert_close(a, b, msg=name)


def test_dense_motion_bad_inputs():
    module = DenseMotion(3, 5, dims=2, block_expansion=4, num_blocks=2, max_features=16)
    feature = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="kp_source must be \\(N, 5, 2\\)"):
        module(feature, torch.zeros(1, 4, 2), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="feature must be \\(N, C, H, W\\) with C = 3"):
        module(torch.randn(1, 4, 8, 8), torch.zeros(1, 5, 2), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="needs the feature's depth"):
        DenseMotion(3, 5, dims=3)


@needs_extension
def test_dense_motion_compiles_fullgraph():
    torch.manual_seed(0)
    module = DenseMotion(3, 5, dims=3, block_expansion=4, num_blocks=2, max_features=16, depth=3).eval()
    feature, kp_source, kp_driving = torch.randn(2, 3, 3, 9, 10), torch.rand(2, 5, 3) - 0.5, torch.rand(2, 5, 3) - 0.5
    compiled = torch.compile(module, fullgraph=True)
    got, want = compiled(feature, kp_source, kp_driving), module(feature, kp_source, kp_driving)
    for name in want:
        helpers.assert_close_to_largest(got[name], want[name], torch.float32)
