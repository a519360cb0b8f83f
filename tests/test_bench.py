"""`pyface bench`: runs end to end and writes its report; a failed check is a failed row, not
a crash; every model case passes its correctness check at its real bench size."""
import json
import subprocess
import sys

import pytest
import torch

import pyface
from pyface import bench
from pyface.bench import main_bench, memory, report, runner
from pyface.bench.cases import CASES, select
from pyface.bench.models import _loss_and_grads, _model, _Truth, check_model, model_cases
from pyface.bench.modules import module_cases
from pyface.bench.runner import AccuracyError, Row


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


def test_heatmap_rows_show_the_maps_shape():
    case = next(c for c in CASES if c.op == "keypoint_heatmaps")
    inputs = case.inputs(torch.device("cpu"), torch.float32, quick=True)
    n, k, _ = inputs["kp_driving"].shape
    assert runner.work_shape(case, inputs) == (n, k + 1, *inputs["spatial_size"])


def test_cpu_peak_counts_a_gradient_written_into_reused_memory():
    x = torch.randn(1024, 1024, requires_grad=True)  # 4 MiB

    def step():
        x.grad = None
        (x * 2).sum().backward()

    for _ in range(3):  # the allocator has the pages already: resident memory does not grow
        step()
    peak = memory.peak_bytes(step, torch.device("cpu"))
    assert peak >= 4 * 2**20  # x.grad at least (x * 2 is freed before the backward)


def test_allocation_peak_follows_time_order():
    assert memory._allocation_peak([(3, 0xa, -5), (1, 0xa, 5), (2, 0xb, 7), (4, 0xc, 2)]) == 12


def test_allocation_peak_ignores_frees_of_blocks_allocated_before():
    # 0xa was allocated before the call (a stale size the allocator reported): its free
    # does not offset the 7 bytes the call allocated
    assert memory._allocation_peak([(1, 0xa, -5), (2, 0xb, 7), (3, 0xb, -7)]) == 7


def _failing(*args, **kwargs):
    raise RuntimeError("a kernel that breaks\nsecond line")


def test_a_failing_implementation_is_a_failed_row(monkeypatch):
    case = next(c for c in CASES if c.op == "softmax_pool")
    real = runner.implementations

    def with_broken(op, device):
        return {**real(op, device), "pyface[broken]": _failing}

    monkeypatch.setattr(runner, "implementations", with_broken)
    rows = runner.run_case(case, torch.device("cpu"), torch.float32, True, 10.0)
    broken = [r for r in rows if r.impl == "pyface[broken]"]
    assert len(broken) == len(runner.MODES) and all(r.failure == "RuntimeError: a kernel that breaks" for r in broken)
    assert all(r.median_ms is None and r.speedup_vs_eager is None for r in broken)
    timed = [r for r in rows if r.impl != "pyface[broken]"]
    assert timed and all(r.failure is None and r.median_ms > 0 and r.speedup_vs_eager > 0 for r in timed)
    assert "FAILED" in report.text_table(rows, _meta())


def test_judge_holds_an_error_to_the_eager_error():
    assert runner.judge("x", 1e-5, 1e-4, lambda: 1.0) == 1e-4  # within the dtype tolerance: eager not asked
    assert runner.judge("x", 1e-3, 1e-4, lambda: 2e-4) == pytest.approx(runner.EAGER_ERROR_FACTOR * 2e-4)
    with pytest.raises(AccuracyError, match="over both"):
        runner.judge("x", 1e-2, 1e-4, lambda: 2e-4)


def _meta():
    return {"device": "cpu", "device_name": "test", "torch": torch.__version__, "pyface": pyface.__version__,
            "threads": 1, "copy_gbps": 10.0, "scaled_note": ""}


def test_main_bench_reports_failed_rows_and_exits_1(monkeypatch, tmp_path, capsys):
    real = runner.run_case

    def run_case(case, *args, **kwargs):
        if case.op == "softmax_pool":
            raise AccuracyError("softmax_pool/CLIP-size: relative error 1e-2 over both", 1e-2, 1e-4)
        return real(case, *args, **kwargs)

    monkeypatch.setattr(bench, "run_case", run_case)
    monkeypatch.setattr(bench, "copy_bandwidth_gbps", lambda device, quick: 10.0)
    status = main_bench("cpu", ["softmax_pool", "keypoint_heatmaps"], True, str(tmp_path), ["float32"])
    out = capsys.readouterr().out
    assert status == 1
    assert f"1 of {1 + 3 * len(runner.MODES)} rows FAILED" in out and "softmax_pool/CLIP-size float32" in out
    rows = json.loads((tmp_path / "bench-cpu.json").read_text())["rows"]
    assert [r["failure"] is not None for r in rows].count(True) == 1
    assert {r["op"] for r in rows if r["median_ms"]} == {"keypoint_heatmaps"}
    logged = (tmp_path / "bench-cpu.jsonl").read_text().splitlines()
    assert "meta" in json.loads(logged[0]) and len(logged) == 1 + len(rows)
    assert (tmp_path / "speedup.png").exists() and "Failed rows" in (tmp_path / "bench-cpu.md").read_text()


def test_an_interrupted_bench_writes_what_it_measured(monkeypatch, tmp_path):
    real = runner.run_case

    def run_case(case, *args, **kwargs):
        if case.op == "keypoint_heatmaps":
            raise KeyboardInterrupt
        return real(case, *args, **kwargs)

    monkeypatch.setattr(bench, "run_case", run_case)
    monkeypatch.setattr(bench, "copy_bandwidth_gbps", lambda device, quick: 10.0)
    assert main_bench("cpu", ["softmax_pool", "keypoint_heatmaps"], True, str(tmp_path), None) == 130
    report_json = json.loads((tmp_path / "bench-cpu.json").read_text())
    assert report_json["meta"]["interrupted"] and {r["op"] for r in report_json["rows"]} == {"softmax_pool"}
    assert "INTERRUPTED" in (tmp_path / "bench-cpu.md").read_text()


def test_side_by_side_rounds_start_one_step_further_each_time():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("eager", "compile", "pyface")}
    times = runner.time_side_by_side(steps, torch.device("cpu"), True)
    timed = calls[-3 * len(times["eager"]):]  # after the warm-up calls
    rounds = [timed[i:i + 3] for i in range(0, len(timed), 3)]
    assert rounds[:4] == [["eager", "compile", "pyface"], ["compile", "pyface", "eager"],
                          ["pyface", "eager", "compile"], ["eager", "compile", "pyface"]]
    assert {len(t) for t in times.values()} == {len(rounds)}


def test_unstable_rows_are_measured_again_and_flagged(monkeypatch):
    calls = []

    def noisy(steps, device, quick):
        calls.append(1)
        return {name: [1.0, 1.0, 5.0, 9.0, 9.0] for name in steps}

    monkeypatch.setattr(runner, "time_side_by_side", noisy)
    times = runner.time_until_steady({"a": lambda: None}, torch.device("cpu"), True)
    assert len(calls) == 2
    row = Row(op="o", case="c", shape=(1,), batch_scaled=False, dtype="float32", mode="forward", impl="a")
    runner.fill_timings(row, times["a"], None)
    assert row.unstable and f" {report.UNSTABLE_MARK}" in report._cells(row)[6]


@pytest.mark.slow
@pytest.mark.parametrize("case", model_cases(), ids=lambda c: c.name)
def test_model_case_passes_its_check_at_bench_size(case):
    """The check a full CPU `pyface bench` makes, at the batch it makes it at: each fused
    backend's float32 loss and gradients against the float64 reference model, within the
    bound that the eager float32 model's own error sets."""
    device = torch.device("cpu")
    batch = case.make_batch(case.batch_for(device, quick=False), device)
    truth = _Truth(case, batch, device)
    eager_error = truth.error(*_loss_and_grads(case, _model(case, "reference", device), batch))
    assert 0 < eager_error < 1e-2  # float32 against float64, for a float32 training step
    for backend in [b for b in pyface.backends()["cpu"] if b not in ("reference", "triton")]:
        _, error, tolerance = check_model(case, backend, device, batch, truth, eager_error)
        assert error <= tolerance


@pytest.mark.slow
def test_quick_bench_writes_report(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pyface", "bench", "--quick", "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=1800,  # over 900 s on a slow 2-core AVX2-only host
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "vs compile" in result.stdout
    report_json = json.loads((tmp_path / "bench-cpu.json").read_text())
    rows = report_json["rows"]
    assert {"eager", "torch.compile", "pyface[cpu]"} <= {row["impl"] for row in rows}
    assert all(row["failure"] is None and row["max_rel_error"] <= row["tolerance"] for row in rows)
    model_rows = [row for row in rows if row["op"] == "model"]  # training steps, fused vs reference
    assert {row["impl"] for row in model_rows} == {"eager", "pyface[cpu]"}
    assert {row["case"] for row in model_rows} == {case.name for case in model_cases()}
    module_rows = [row for row in rows if row["op"] == "module"]  # the FOMM-family motion modules
    assert {row["case"] for row in module_rows} == {case.name for case in module_cases()}
    assert {row["impl"] for row in module_rows} == {"eager", "torch.compile", "pyface[cpu]"}
    unallocated = [(row["case"], row["impl"], row["mode"], row["peak_mb"]) for row in rows
                   if row["mode"] in ("forward+backward", "train step") and not row["peak_mb"] > 0]
    assert not unallocated, unallocated  # gradients are allocated
    for name in ("bench-cpu.md", "bench-cpu.jsonl", "speedup.png", "memory.png"):
        assert (tmp_path / name).exists(), name
