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
    assert ("global_local_attention", (256, 256, 7, 7)) in shapes
    assert ("global_local_attention", (64, 2048, 14, 14)) in shapes
    assert ("softmax_pool", (256, 2048, 7, 7)) in shapes
    assert ("keypoint_heatmaps", (8, 16, 16, 64, 64)) in shapes
    assert ("keypoint_warp", (16, 256, 64, 64)) in shapes
    assert ("keypoint_warp", (8, 32, 16, 64, 64)) in shapes
    assert ("sparse_motion_warp", (8, 4, 16, 64, 64)) in shapes
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
    allowed = {(case.op, case.name): max(1e-4, case.tolerance or 0.0) for case in CASES}  # float32
    op_rows = [row for row in report["rows"] if row["op"] != "model"]
    assert all(row["max_rel_error"] < allowed[row["op"], row["case"]] for row in op_rows)
    model_rows = [row for row in report["rows"] if row["op"] == "model"]  # training steps, fused vs reference
    assert {row["impl"] for row in model_rows} == {"eager", "pyface[cpu]"}
    assert all(row["mode"] == "train step" and row["max_rel_error"] < 1e-3 for row in model_rows)
    assert (tmp_path / "bench-cpu.md").exists() and (tmp_path / "speedup.png").exists()
