"""pytest-benchmark view of the `pyface bench` cases (the same case list, pyface.bench.cases).

    pytest benchmarks --benchmark-only            # time them: one table per case and mode,
                                                  # eager, torch.compile and pyface side by side
    pytest benchmarks --benchmark-disable         # run each once, as a check
"""
import pytest
import torch

from pyface.bench.cases import CASES
from pyface.bench.runner import MODES, STEPS, check, implementations

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
QUICK = DEVICE.type == "cpu"  # CPU runs use the scaled-down inputs

PARAMS = [
    pytest.param(case, impl, mode, id=f"{case.op}-{case.name}-{mode}-{impl}")
    for case in CASES
    for mode in MODES
    for impl in implementations(case.op, DEVICE)
]


@pytest.mark.parametrize("case,impl,mode", PARAMS)
def test_bench(benchmark, case, impl, mode):
    fn = implementations(case.op, DEVICE)[impl]
    inputs = case.inputs(DEVICE, torch.float32, quick=QUICK)
    check(case, fn, inputs, torch.float32)  # never time a wrong answer
    step = STEPS[mode](case, fn, inputs)
    # one table per case and mode, so that each compares eager, torch.compile and pyface
    benchmark.group = f"{case.op} {case.name} {mode}"
    benchmark.name = impl
    benchmark.extra_info.update(shape=list(inputs[case.main_input].shape), device=str(DEVICE))
    if DEVICE.type == "cuda":
        benchmark(lambda: (step(), torch.cuda.synchronize()))
    else:
        benchmark(step)
