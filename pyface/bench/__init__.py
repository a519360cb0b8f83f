"""`pyface bench`: every op's fused backends against eager PyTorch and torch.compile."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

import pyface
from pyface.bench import report
from pyface.bench.cases import CASES, CPU_ELEMENT_BUDGET, select
from pyface.bench.models import model_cases, run_model_case
from pyface.bench.runner import copy_bandwidth_gbps, run_case

__all__ = ["CASES", "main_bench", "select"]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"


def main_bench(device: str, ops: list[str] | None, quick: bool, out: str | None, dtypes: list[str] | None,
               models: list[str] | None = None) -> int:
    """ops / models: the op cases and model training steps to run; None runs every op case
    and, when ops is None too, every model."""
    from tqdm import tqdm

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("pyface bench: --device cuda asked for, but torch sees no CUDA device")
    names = dtypes or (["float32", "bfloat16", "float16"] if dev.type == "cuda" else ["float32"])
    dtype_list = [getattr(torch, name) for name in names]
    cases = select(ops, quick) if ops is not None or models is None else []
    known_models = {case.name.lower(): case for case in model_cases()}
    if models is None:
        models = list(known_models) if ops is None else []
    unknown = [m for m in models if m.lower() not in known_models]
    if unknown:
        raise SystemExit(f"pyface bench: unknown models {unknown}; expected some of {list(known_models)}")
    if not cases and not models:
        raise SystemExit(f"pyface bench: no cases for ops {ops}")
    scaled_note = ""
    if quick:
        scaled_note = "--quick: batches scaled down to small inputs; rows marked * ran at a smaller batch than SPEC"
    elif dev.type == "cpu":
        scaled_note = (f"CPU run: batches scaled down to about {CPU_ELEMENT_BUDGET // 2**20}M input elements; "
                       "rows marked * ran at a smaller batch than SPEC")
    print(f"pyface bench on {_device_name(dev)}: measuring copy bandwidth...", flush=True)
    meta = {
        "device": dev.type, "device_name": _device_name(dev), "torch": torch.__version__,
        "pyface": pyface.__version__, "threads": torch.get_num_threads(), "quick": quick,
        "backends": pyface.backends().get(dev.type, []), "copy_gbps": copy_bandwidth_gbps(dev, quick),
        "scaled_note": scaled_note,
    }
    rows = []
    impl_count = 2 + len([b for b in meta["backends"] if b not in ("reference",) and not (b == "triton" and dev.type == "cpu")])
    total = (len(cases) * len(dtype_list) * 2 + len(models)) * impl_count
    with tqdm(total=total, desc="pyface bench", unit="run") as progress:
        for case in cases:
            for dtype in dtype_list:
                progress.set_postfix_str(f"{case.op}/{case.name}/{str(dtype).removeprefix('torch.')}")
                rows += run_case(case, dev, dtype, quick, meta["copy_gbps"], progress)
        for name in models:  # training steps, float32
            progress.set_postfix_str(f"train step/{known_models[name.lower()].name}")
            rows += run_model_case(known_models[name.lower()], dev, quick, progress)
    print()
    print(report.text_table(rows, meta))
    if out:
        for path in report.write(rows, meta, Path(out)):
            print(f"wrote {path}")
    return 0
