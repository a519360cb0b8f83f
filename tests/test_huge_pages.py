"""Large CPU outputs of the compiled ops ask Linux for transparent huge pages before their first
write (csrc/huge_pages.h); PYFACE_CPU_HUGE_PAGES=0 turns that off. Checked in a subprocess, as
the setting is read once per process, from the kernel's flags of the memory an output lies in."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyface

pytestmark = [
    pytest.mark.skipif(not pyface._extension.loaded(), reason="compiled extension not built"),
    pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists(),
                       reason="a kernel without transparent huge pages"),
]

# For each op's large output: whether the mapping that holds its first 2 MB aligned page
# carries the kernel's huge-page advice ("hg" in /proc/self/smaps' VmFlags).
ADVISED = """
import torch, pyface
from pyface import ops

def advised(t):
    first = (t.data_ptr() + (2 << 20) - 1) & ~((2 << 20) - 1)
    assert first + (2 << 20) <= t.data_ptr() + t.nbytes
    mapping = None
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:
            low, high = (int(x, 16) for x in fields[0].split("-"))
            mapping = low <= first < high
        elif fields[0] == "VmFlags:" and mapping:
            return "hg" in fields[1:]
    raise AssertionError("no mapping holds the tensor")

g = torch.Generator().manual_seed(0)
r = lambda *s: torch.randn(*s, generator=g)
x, t = r(4, 4, 512, 512), r(4, 4, 512, 512)  # 16 MB each
loss_map = ops.weighted_l1_loss(x, t, reduction="none", backend="cpu")
torch.testing.assert_close(loss_map, (x - t).abs())
feature, mask = r(4, 256, 64, 64), r(4, 5, 64, 64)  # a 16 MB output
kp_source, kp_driving = torch.rand(4, 4, 2, generator=g) - 0.5, torch.rand(4, 4, 2, generator=g) - 0.5
warped = ops.keypoint_warp(feature, kp_source, kp_driving, mask, mask_logits=True, backend="cpu")
print(advised(loss_map), advised(warped))
"""


@pytest.mark.parametrize("setting, expected", [(None, "True True"), ("0", "False False")])
def test_large_outputs_are_advised_onto_huge_pages(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "PYFACE_CPU_HUGE_PAGES"}
    if setting is not None:
        env["PYFACE_CPU_HUGE_PAGES"] = setting
    result = subprocess.run([sys.executable, "-c", ADVISED], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == expected
