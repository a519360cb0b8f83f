"""`pyface bench`: every op's fused backends against eager PyTorch and torch.compile."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

import pyface
from pyface import _extension
from pyface._usage import UsageError
from pyface.bench import report
from pyface.bench.cases import CASES, CPU_ELEMENT_BUDGET, select
from pyface.bench.models import model_cases, run_model_case
from pyface.bench.modules import ModuleCase, module_cases, run_module_case
from pyface.bench.runner import MODES, Row, copy_bandwidth_gbps, failure_text, run_case, timed_backends

__all__ = ["CASES", "DTYPES", "OP_NAMES", "main_bench", "model_names", "select"]

OP_NAMES = tuple(dict.fromkeys(case.op for case in CASES))
DTYPES = ("float32", "bfloat16", "float16", "float64")


def model_names() -> list[str]:
    """The model training steps and the whole motion modules `--models` selects from."""
    return [case.name.lower() for case in model_cases() + module_cases()]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"


def _unknown(kind: str, asked: list[str], known) -> None:
    bad = [name for name in asked if name not in known]
    if bad:
        raise UsageError(f"unknown {kind} {', '.join(bad)}; valid {kind}: {', '.join(known)}")


def check_extension(allow_missing: bool) -> None:
    """Refuses to bench without the compiled kernels (the rows would be eager against
    torch.compile only), unless asked to."""
    if _extension.loaded() or allow_missing:
        return
    raise UsageError(f"{_extension.missing_reason()} Without it there are no pyface rows to time. "
                     f"Pass --without-extension to bench the Triton and reference backends anyway.")


class _RowLog:
    """Appends each row to <out>/bench-<device>.jsonl as it is measured (the meta first), so a
    run that dies or is stopped keeps what it measured."""

    def __init__(self, out: Path | None, meta: dict):
        self.path = None if out is None else out / f"bench-{meta['device']}.jsonl"
        if self.path is not None:
            out.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"meta": meta}) + "\n")

    def __call__(self, row: Row) -> None:
        if self.path is not None:
            with self.path.open("a") as log:
                log.write(json.dumps(row.as_dict()) + "\n")


def main_bench(device: str, ops: list[str] | None, quick: bool, out: str | None, dtypes: list[str] | None,
               models: list[str] | None = None, without_extension: bool = False) -> int:
    """ops / models: the op cases and model training steps to run; None runs every op case
    and, when ops is None too, every model. Returns 0 when every row passed its check and
    was timed, 1 when some failed (they are listed), 130 when interrupted; the report is
    written in every case."""
    from tqdm import tqdm

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device on this machine")
    check_extension(without_extension)
    _unknown("ops", ops or [], OP_NAMES)
    _unknown("dtypes", dtypes or [], DTYPES)
    known_models = {case.name.lower(): case for case in model_cases() + module_cases()}
    _unknown("models", [m.lower() for m in models or []], list(known_models))
    names = dtypes or (["float32", "bfloat16", "float16"] if dev.type == "cuda" else ["float32", "bfloat16"])
    dtype_list = [getattr(torch, name) for name in names]
    cases = select(ops, quick) if ops is not None or models is None else []
    if models is None:
        models = list(known_models) if ops is None else []
    if not cases and not models:
        raise UsageError(f"no cases for ops {', '.join(ops or [])}" + (" with --quick" if quick else ""))
    scaled_note = ""
    if quick:
        scaled_note = ("--quick: batches scaled down to small inputs; rows marked * ran at a smaller batch than the "
                       "case's (docs/ops.md)")
    elif dev.type == "cpu":
        scaled_note = (f"CPU run: batches scaled down to about {CPU_ELEMENT_BUDGET // 2**20}M input elements; "
                       "rows marked * ran at a smaller batch than the case's (docs/ops.md)")
    print(f"pyface bench on {_device_name(dev)}: measuring copy bandwidth...", flush=True)
    meta = {
        "device": dev.type, "device_name": _device_name(dev), "torch": torch.__version__,
        "pyface": pyface.__version__, "threads": torch.get_num_threads(), "quick": quick,
        "backends": pyface.backends().get(dev.type, []), "copy_gbps": copy_bandwidth_gbps(dev, quick),
        "scaled_note": scaled_note, "cpu_isa": _extension._C.build_info.get("cpu_isa") if _extension.loaded() else None,
    }
    out_dir = None if out is None else Path(out)
    log = _RowLog(out_dir, meta)
    rows: list[Row] = []
    impl_count = 2 + len(timed_backends(dev))
    model_groups = sum(len(getattr(known_models[name.lower()], "modes", ("train step",))) for name in models)
    total = (len(cases) * len(dtype_list) * len(MODES) + model_groups) * impl_count
    status = 0
    with tqdm(total=total, desc="pyface bench", unit="run") as progress:
        def on_row(row: Row) -> None:
            log(row)
            rows.append(row)
            progress.update(1)

        try:
            for case in cases:
                for dtype in dtype_list:
                    progress.set_postfix_str(f"{case.op}/{case.name}/{str(dtype).removeprefix('torch.')}")
                    _guarded(lambda: run_case(case, dev, dtype, quick, meta["copy_gbps"], on_row), on_row,
                             Row(op=case.op, case=case.name, shape=case.shape, batch_scaled=False,
                                 dtype=str(dtype).removeprefix("torch."), mode="-", impl="-"))
            for name in models:  # training steps and whole modules, float32
                case = known_models[name.lower()]
                if isinstance(case, ModuleCase):
                    progress.set_postfix_str(f"module/{case.name}")
                    _guarded(lambda: run_module_case(case, dev, quick, on_row), on_row,
                             Row(op="module", case=case.name, shape=(), batch_scaled=False, dtype="float32",
                                 mode="-", impl="-"))
                    continue
                progress.set_postfix_str(f"train step/{case.name}")
                _guarded(lambda: run_model_case(case, dev, quick, on_row), on_row,
                         Row(op="model", case=case.name, shape=(), batch_scaled=False, dtype="float32",
                             mode="train step", impl="-"))
        except KeyboardInterrupt:
            meta["interrupted"] = True
            status = 130
    print()
    print(report.text_table(rows, meta))
    if out_dir is not None:
        for path in report.write(rows, meta, out_dir):
            print(f"wrote {path}")
    failed = report.failure_lines(rows)
    if failed:
        print(f"\n{len(failed)} of {len(rows)} rows FAILED (not timed):")
        for line in failed:
            print(f"  {line}")
    if status:
        print(f"\ninterrupted: the report holds the {len(rows)} rows measured before the stop")
    return status or (1 if failed else 0)


def _guarded(run, on_row, failed_row: Row) -> None:
    """Runs one case; an error outside any one implementation (building the inputs, say)
    becomes one failed row for the case, and the run goes on."""
    try:
        run()
    except Exception as error:
        failed_row.failure = failure_text(error)
        on_row(failed_row)
