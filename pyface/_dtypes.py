"""The dtype the kernels accumulate in: float32 for float32/float16/bfloat16, float64 for
float64 (kept for the tensors an op saves for its backward, such as attention weights)."""
from __future__ import annotations

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32
