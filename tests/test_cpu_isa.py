"""The CPU kernels exist in three copies on x86-64, baseline, AVX2+FMA and AVX-512
(csrc/cpu_isa.h), and in the baseline copy alone elsewhere or when built with
PYFACE_CPU_AVX2=0. The rest of the suite runs the widest copy this machine has; this test runs
the narrower ones too, in a subprocess (the choice is made once per process), against the
reference."""
import os
import platform
import subprocess
import sys

import pytest

import pyface

pytestmark = pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built")

CHECK_ALL_OPS = """
import torch, pyface
from pyface import ops, reference
assert pyface._extension._C.build_info["cpu_isa"] == "{isa}", pyface._extension._C.build_info["cpu_isa"]
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
    info = pyface._extension._C.build_info
    assert info["cpu_kernels_built"] in (("baseline",), ("baseline", "avx2", "avx512"))
    assert info["cpu_isa"] in info["cpu_kernels_built"]
    if os.environ.get("PYFACE_CPU_AVX2") == "0" or platform.machine().lower() not in ("x86_64", "amd64"):
        assert info["cpu_kernels_built"] == ("baseline",)  # a build for this setting, as CI makes it


@pytest.mark.parametrize("isa", ["baseline", "avx2"])
def test_narrower_kernels_match_the_reference(isa):
    info = pyface._extension._C.build_info
    if isa not in info["cpu_kernels_built"]:
        pytest.skip(f"the {isa} copy is not built here")
    if isa == "avx2" and info["cpu_isa"] == "baseline":
        pytest.skip("this CPU has no AVX2")
    env = dict(os.environ, PYFACE_CPU_ISA=isa)
    script = CHECK_ALL_OPS.replace("{isa}", isa)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_an_extension_built_for_another_torch_is_not_used():
    """An upgraded torch may still load an old _C (or fail to): either way pyface names the
    torch it was built for and the rebuild command, and serves from the other backends."""
    script = ("import warnings, torch; torch.__version__ = '0.0.1'\n"
              "with warnings.catch_warnings(record=True) as caught:\n"
              "    warnings.simplefilter('always')\n"
              "    import pyface\n"
              "print(pyface._extension.loaded())\n"
              "print(' | '.join(str(w.message) for w in caught))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded, message = result.stdout.splitlines()
    assert loaded == "False"
    built_for = pyface._extension._C.build_info["torch_version"]
    assert f"built for torch {built_for}, and this is torch 0.0.1" in message, message
    assert pyface._extension.REBUILD_COMMAND in message, message
