"""The ops and modules under torch.autocast: the policy of torch's float32 ops (pyface/_autocast.py).
Inside an autocast region the ops take half-precision activations beside float32 parameters,
run in float32 and return float32, with the answer of the op run in float32 on the same
inputs; gradients come back in each input's own dtype."""
import pytest
import torch
from helpers import BACKENDS, TOLERANCES, assert_close_to_largest, device_of, in_float64, outputs_and_grads

import pyface
from pyface import opinfo, ops, reference
from pyface.models import GLAMORNet
from pyface.nn import (
    DenseMotion,
    DynamicPixelWiseLoss,
    GlobalLocalAttention,
    LowerFaceL1Loss,
    StyleAwarePhotometricLoss,
)

HALF_TYPES = [torch.bfloat16, torch.float16]


# op name: (the inputs a layer in an autocast region would hand over in half precision (the
# others stay float32, as parameters do), the op's options); the inputs are its description's
# (pyface.opinfo), in float32
CASES = {
    "global_local_attention": (("face", "context"), {"return_attention": True}),
    "keypoint_heatmaps": (("kp_driving",), {"spatial_size": (6, 7), "variance": 0.05}),
    "keypoint_warp": (("feature", "mask"), {"return_deformation": True, "mask_logits": True}),
    "softmax_pool": (("scores",), {"return_attention": True}),
    "sparse_motion_warp": (("feature",), {}),
    "weighted_l1_loss": (("input",), {}),
}
INPUT_OPTIONS = {"weighted_l1_loss": {"weight": "N1S", "label_dtype": torch.int64}}  # the rest: the defaults


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("half", HALF_TYPES)
@pytest.mark.parametrize("op_name", CASES)
def test_op_runs_in_float32_under_autocast(op_name, half, backend):
    activations, options = CASES[op_name]
    tensors = getattr(opinfo, op_name).inputs(device=device_of(backend), **INPUT_OPTIONS.get(op_name, {}))
    tensors = {name: t.to(half) if name in activations else t for name, t in tensors.items()}
    got, got_grads = outputs_and_grads(getattr(ops, op_name), tensors, autocast_dtype=half, backend=backend, **options)
    want, want_grads = outputs_and_grads(getattr(reference, op_name), in_float64(tensors), **options)
    for g, w in zip(got, want):
        assert g.dtype == (torch.float32 if w.is_floating_point() else w.dtype)
        assert_close_to_largest(g, w, torch.float32)
    assert got_grads.keys() == want_grads.keys()
    for name, grad in got_grads.items():
        assert grad.dtype == tensors[name].dtype  # the cast's backward returns each input's dtype
        assert_close_to_largest(grad, want_grads[name], grad.dtype)


@pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")
def test_compiled_op_called_directly_under_autocast():
    # The products inside the C++ op were autocast to bfloat16 while its kernel read them as
    # float32, past the buffer's end: errors of 1.3-2.4 on outputs of magnitude 2.7.
    torch.manual_seed(0)
    face, context, w1 = torch.randn(4, 16), torch.randn(4, 24, 49), torch.randn(8, 40)
    b1, w2, b2 = torch.randn(8), torch.randn(8), torch.randn(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, attention, *_ = torch.ops.pyface.global_local_attention_forward(face, context, w1, b1, w2, b2,
                                                                                None, None)
    want = reference.global_local_attention(face.double(), context.double(), w1.double(), b1.double(), w2.double(),
                                            b2.double(), return_attention=True)
    assert pooled.dtype == torch.float32
    assert_close_to_largest(pooled, want[0], torch.float32)
    assert_close_to_largest(attention, want[1], torch.float32)


@pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")
def test_torch_compile_fullgraph_under_autocast():
    torch.manual_seed(0)
    layer, w1, b1, w2, b2 = torch.nn.Linear(16, 16), torch.randn(8, 40), torch.randn(8), torch.randn(8), torch.randn(1)

    def attend(face, context):  # the face arrives in bfloat16 from the layer, the weights are float32
        return ops.global_local_attention(layer(face), context, w1, b1, w2, b2, backend="cpu")

    face, context = torch.randn(4, 16), torch.randn(4, 24, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        compiled, eager = torch.compile(attend, fullgraph=True)(face, context), attend(face, context)
    assert compiled.dtype == torch.float32
    torch.testing.assert_close(compiled, eager)


def _module_cases():
    g = torch.Generator().manual_seed(0)
    kp = lambda: torch.rand(2, 5, 2, generator=g) * 2 - 1  # noqa: E731
    frames = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    labels = torch.randint(0, 19, (2, 16, 16), generator=g)
    return {
        "GlobalLocalAttention": (lambda: GlobalLocalAttention(6, 11, hidden=24),
                                 (torch.randn(4, 6, generator=g), torch.randn(4, 11, 5, 7, generator=g))),
        "GLAMORNet": (lambda: GLAMORNet(), (frames(2, 3, 96, 96), frames(2, 3, 112, 112))),
        "DenseMotion": (lambda: DenseMotion(3, 5, block_expansion=8, num_blocks=2, max_features=32),
                        (torch.randn(2, 3, 16, 16, generator=g), kp(), kp())),
        "StyleAwarePhotometricLoss": (lambda: StyleAwarePhotometricLoss(), (frames(2, 3, 16, 16), frames(2, 3, 16, 16),
                                                                           labels)),
        "DynamicPixelWiseLoss": (lambda: DynamicPixelWiseLoss(), (frames(2, 3, 16, 16), frames(2, 3, 16, 16),
                                                                 frames(2, 1, 16, 16))),
        "LowerFaceL1Loss": (lambda: LowerFaceL1Loss(), (frames(2, 3, 16, 16), frames(2, 3, 16, 16))),
    }


MODULE_CASES = _module_cases()


class _Stem(torch.nn.Module):
    """A 1x1 convolution before the module, so that its float inputs arrive as a layer in an
    autocast region hands them over: in half precision."""

    def __init__(self, module, inputs):
        super().__init__()
        self.module = module
        self.stems = torch.nn.ModuleList(torch.nn.Conv2d(x.shape[1], x.shape[1], 1) if x.is_floating_point()
                                         and x.dim() == 4 else torch.nn.Identity() for x in inputs)

    def forward(self, *inputs):
        out = self.module(*(stem(x) if isinstance(stem, torch.nn.Conv2d) else x for stem, x in zip(self.stems, inputs)))
        return [out] if isinstance(out, torch.Tensor) else list(out.values() if isinstance(out, dict) else out)


@pytest.mark.parametrize("half", HALF_TYPES)
@pytest.mark.parametrize("name", MODULE_CASES)
def test_module_trains_under_autocast(name, half):
    build, inputs = MODULE_CASES[name]
    torch.manual_seed(0)
    model = _Stem(build(), inputs)
    model.eval()  # batch statistics and dropout aside: the same function in both runs
    want = model(*inputs)
    sum(out.sum() for out in want).backward()
    trained = [p for p in model.parameters() if p.grad is not None]  # attention maps a loss detaches aside
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=half):
        got = model(*inputs)
    sum(out.float().sum() for out in got).backward()
    assert trained and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)
    # the layers around the ops compute in half precision; the answer stays within its rounding
    rtol, _ = TOLERANCES[half]
    for g, w in zip(got, want):
        torch.testing.assert_close(g.float(), w.detach(), rtol=10 * rtol, atol=10 * rtol * w.abs().max().item())
