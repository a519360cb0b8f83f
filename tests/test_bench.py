"""`pyface bench` runs end to end and writes its report (a quick CPU run)."""
import json
import subprocess
import sys

import pytest

from pyface.bench.cases import CASES, select


def test_case_list_covers_the_spec_shapes():
    shapes = {(c.op, c.shape) for c in CASES}
    assert ("weighted_l1_loss", (160, 3, 128, 128)) in shapes
    assert ("weighted_l1_loss", (8, 3, 512, 512)) in shapes
    assert ("weighted_l1_loss", (32, 3, 512, 512)) in shapes
    assert select(quick=True)


@pytest.mark.slow
def test_quick_bench_writes_report(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pyface", "bench", "--quick", "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "vs compile" in result.stdout
    report = json.loads((tmp_path / "bench-cpu.json").read_text())
    impls = {row["impl"] for row in report["rows"]}
    assert {"eager", "torch.compile", "pyface[cpu]"} <= impls
    assert all(row["max_rel_error"] < 1e-4 for row in report["rows"])
    assert (tmp_path / "bench-cpu.md").exists() and (tmp_path / "speedup.png").exists()
