"""pyface.ops.keypoint_heatmaps on every backend against the reference (the Triton backend
runs in Triton's interpreter on small grids when there is no GPU; CUDA tests skip without one)."""
import helpers
import pytest
import torch
from helpers import BACKENDS, device_of, poison_allocator

import pyface
from pyface.ops import keypoint_heatmaps
from pyface.reference import keypoint_heatmaps as reference

SIZES = {2: (9, 13), 3: (5, 6, 7)}


def make(dims=2, n=2, k=3, spread=1.2, dtype=torch.float32, device="cpu", seed=0):
    """Keypoints in [-spread, spread]: spread > 1 puts some outside the grid."""
    g = torch.Generator().manual_seed(seed)
    kp = lambda: (torch.rand(n, k, dims, generator=g, dtype=torch.float64) * 2 - 1) * spread  # noqa: E731
    return {"kp_driving": kp().to(device, dtype), "kp_source": kp().to(device, dtype)}


def check_against_reference(tensors, backend, dtype, spatial_size, variance=0.05):
    helpers.check_against_reference(
        keypoint_heatmaps, reference, tensors, backend, dtype, spatial_size=spatial_size, variance=variance
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("keypoints", [1, 21])
def test_matches_reference(backend, dims, keypoints):
    tensors = make(dims, k=keypoints, device=device_of(backend))
    poison_allocator((2, keypoints + 1, *SIZES[dims]), torch.float32, device_of(backend))
    check_against_reference(tensors, backend, torch.float32, SIZES[dims])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
def test_no_keypoints(backend, dims):
    # K = 0 leaves the background slot alone; the Triton kernel once read a keypoint that
    # did not exist (a crash in the interpreter)
    check_against_reference(make(dims, k=0, device=device_of(backend)), backend, torch.float32, SIZES[dims])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spatial_size", [(1, 1), (1, 17), (16, 1), (3, 1, 4), (1, 8, 8)])
def test_degenerate_axes(backend, spatial_size):
    tensors = make(len(spatial_size), device=device_of(backend))
    check_against_reference(tensors, backend, torch.float32, spatial_size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keypoints_far_outside_the_grid(backend):
    tensors = make(2, spread=3.0, device=device_of(backend))
    check_against_reference(tensors, backend, torch.float32, (12, 12), variance=0.01)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(backend, dtype):
    if dtype == torch.float64 and backend != "cpu":
        pytest.skip("float64 is a CPU dtype (for gradcheck)")
    check_against_reference(make(3, dtype=dtype, device=device_of(backend)), backend, dtype, (4, 6, 8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_keypoints(backend):
    tensors = make(2, k=4, device=device_of(backend))
    tensors = {name: kp.transpose(0, 1).contiguous().transpose(0, 1) for name, kp in tensors.items()}
    check_against_reference(tensors, backend, torch.float32, (8, 10))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
def test_opcheck(backend, dims):
    device = device_of(backend)
    suffix = "_triton" if backend == "triton" else ""
    forward = getattr(torch.ops.pyface, f"keypoint_heatmaps_forward{suffix}").default
    backward = getattr(torch.ops.pyface, f"keypoint_heatmaps_backward{suffix}").default
    t = make(dims, device=device)
    size = list(SIZES[dims])
    torch.library.opcheck(forward, (t["kp_driving"].requires_grad_(), t["kp_source"].requires_grad_(), size, 0.05))
    grad = torch.rand(2, 4, *size, device=device)
    torch.library.opcheck(backward, (grad, t["kp_driving"].detach(), t["kp_source"].detach(), 0.05))


@pytest.mark.parametrize("dims", [2, 3])
def test_gradcheck(dims):
    t = make(dims, k=2, dtype=torch.float64)
    size = (4, 5) if dims == 2 else (3, 4, 5)
    fn = lambda d, s: keypoint_heatmaps(d, s, size, variance=0.1, backend="cpu")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (t["kp_driving"].requires_grad_(), t["kp_source"].requires_grad_()))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_torch_compile_fullgraph(backend):
    t = make(3)
    compiled = torch.compile(lambda d, s: keypoint_heatmaps(d, s, (4, 6, 8), backend=backend), fullgraph=True)
    helpers.assert_close_to_largest(compiled(t["kp_driving"], t["kp_source"]),
                                    reference(t["kp_driving"], t["kp_source"], (4, 6, 8)), torch.float32)


def test_default_backend_is_the_cpu_kernel():
    assert pyface._backends.resolve("keypoint_heatmaps", torch.device("cpu"), None) == "cpu"


# --- bad input: each raises a clear error naming the argument --------------------------------


def test_shape_mismatch():
    t = make(2)
    with pytest.raises(ValueError, match="kp_source shape"):
        keypoint_heatmaps(t["kp_driving"], t["kp_source"][:, :2], (8, 8))


def test_keypoint_dims():
    t = make(2)
    with pytest.raises(ValueError, match="kp_driving must be \\(N, K, d\\)"):
        keypoint_heatmaps(t["kp_driving"][..., :1], t["kp_source"][..., :1], (8,))


def test_spatial_size_does_not_match_keypoint_dims():
    t = make(3)
    with pytest.raises(ValueError, match="spatial_size must be 3 positive ints"):
        keypoint_heatmaps(t["kp_driving"], t["kp_source"], (8, 8))


def test_non_positive_size():
    t = make(2)
    with pytest.raises(ValueError, match="spatial_size must be 2 positive ints"):
        keypoint_heatmaps(t["kp_driving"], t["kp_source"], (8, 0))


def test_non_positive_variance():
    t = make(2)
    with pytest.raises(ValueError, match="variance must be a positive number"):
        keypoint_heatmaps(t["kp_driving"], t["kp_source"], (8, 8), variance=0.0)


def test_integer_keypoints():
    t = make(2)
    with pytest.raises(TypeError, match="kp_driving must be float"):
        keypoint_heatmaps(t["kp_driving"].long(), t["kp_source"], (8, 8))


def test_dtype_mismatch():
    t = make(2)
    with pytest.raises(TypeError, match="kp_source must have kp_driving's dtype"):
        keypoint_heatmaps(t["kp_driving"], t["kp_source"].double(), (8, 8))


def test_mixed_devices():
    t = make(2)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        keypoint_heatmaps(t["kp_driving"], t["kp_source"].to("meta"), (8, 8))
