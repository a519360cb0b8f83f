"""Running trained modules for their output alone, wherever that happens (evaluation, a frozen
stage inside another's training, a pipeline)."""
from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """The modules in eval mode for the block (batch norms on their running statistics,
    dropout off), then back in the modes they were in."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
