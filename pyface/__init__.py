"""pyface: fused C++/CUDA and Triton kernels for audio-driven talking-head and
facial-emotion models, behind one PyTorch API.

    import pyface
    loss = pyface.ops.weighted_l1_loss(pred, target, labels=parsing, class_weights=table)
    pyface.backends()   # {"cpu": ["cpu", "reference"], "cuda": [...]}
"""
from pyface import (
    _extension,  # noqa: F401  (loads the compiled kernels; warns once if they are missing)
    geometry,
    nn,
    ops,
    reference,
)
from pyface._backends import backends

__version__ = "0.1.0"

__all__ = ["backends", "geometry", "nn", "ops", "reference", "__version__"]
