"""What the op tests share: tolerances, fresh random inputs, and output poisoning."""
import torch

TOLERANCES = {  # (rtol, atol) against a float64 reference
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-2, 2e-3),  # atol covers a subnormal step (6e-8) of mean gradients
    torch.bfloat16: (2e-2, 1e-2),
}


def assert_close(got, want, dtype, scale=1.0):
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol * scale)


def poison_allocator(shape, dtype, device):
    """Leaves NaN in freshly freed memory of this size, so an output element a kernel
    forgets to write shows up as NaN (the allocator usually hands the block back)."""
    block = torch.full(shape, float("nan"), dtype=dtype, device=device)
    del block
