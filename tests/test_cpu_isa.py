"""The CPU kernels exist in two copies, baseline x86-64 and AVX2+FMA (csrc/cpu_isa.h). The
rest of the suite runs the copy this machine picks; this test runs the other one too, in a
subprocess (the choice is made once per process), against the reference."""
import os
import subprocess
import sys

import pytest

import pyface

pytestmark = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")

CHECK_ALL_OPS = """
import torch, pyface
from pyface import ops, reference
assert pyface._extension._C.build_info["cpu_isa"] == "baseline"
g = torch.Generator().manual_seed(0)
r = lambda *s: torch.randn(*s, generator=g)
x, t = r(2, 3, 9, 13), r(2, 3, 9, 13)
labels, table = torch.randint(0, 5, (2, 9, 13), generator=g, dtype=torch.uint8), torch.rand(5, generator=g)
torch.testing.assert_close(ops.weighted_l1_loss(x, t, labels=labels, class_weights=table, backend="cpu"),
                           reference.weighted_l1_loss(x, t, labels=labels, class_weights=table))
scores, values = r(2, 7, 7), r(2, 37, 7, 7)
torch.testing.assert_close(ops.softmax_pool(scores, values, backend="cpu"), reference.softmax_pool(scores, values))
args = (r(2, 6), r(2, 37, 5, 5), r(40, 43) * 0.2, r(40), r(40), r(1))
torch.testing.assert_close(ops.global_local_attention(*args, backend="cpu"), reference.global_local_attention(*args))
print("ok")
"""


def test_build_reports_the_kernels_in_use():
    assert pyface._extension._C.build_info["cpu_isa"] in ("avx2", "baseline")


def test_baseline_kernels_match_the_reference():
    env = dict(os.environ, PYFACE_CPU_ISA="baseline")
    result = subprocess.run([sys.executable, "-c", CHECK_ALL_OPS], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
