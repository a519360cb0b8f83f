"""Times every implementation of each case side by side: the eager reference, torch.compile
of it, and each pyface backend built for the device; forward and forward+backward. Each
implementation's output and input gradients are checked against a float64 reference first."""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

import pyface
from pyface.bench.cases import OPS, Case
from pyface.bench.memory import peak_bytes

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 2e-2}
# Where a case is so ill-conditioned that eager PyTorch in the dtype misses TOLERANCE (GLA's
# score gradient subtracts nearly equal sums over thousands of channels), an implementation
# passes within this factor of the eager error.
EAGER_ERROR_FACTOR = 8


@dataclass
class Row:
    op: str
    case: str
    shape: tuple
    batch_scaled: bool
    dtype: str
    mode: str  # "forward" or "forward+backward"
    impl: str  # "eager", "torch.compile" or "pyface[<backend>]"
    median_ms: float
    q1_ms: float
    q3_ms: float
    speedup_vs_eager: Optional[float] = None
    speedup_vs_compile: Optional[float] = None
    gbps: Optional[float] = None
    pct_of_copy: Optional[float] = None
    peak_mb: Optional[float] = None
    max_rel_error: Optional[float] = None

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_call_ms(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def time_side_by_side(steps: dict[str, Callable[[], object]], device: torch.device, quick: bool) -> dict[str, list[float]]:
    """Per-call times in ms of each step after warm-up, taken in turns (one call of each per
    round), so that a slow spell of a shared machine weighs on every implementation alike: at
    least 10 rounds, more while under a time budget of a second per step."""
    for fn in steps.values():
        for _ in range(2 if quick else 5):
            fn()
    _sync(device)
    budget_s, min_rounds, max_rounds = (0.2, 5, 20) if quick else (1.0, 10, 200)
    budget_s *= len(steps)
    times: dict[str, list[float]] = {name: [] for name in steps}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - start < budget_s):
        for name, fn in steps.items():
            times[name].append(_time_call_ms(fn, device))
        rounds += 1
    return times


def quartiles(times: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of per-call times."""
    if len(times) == 1:
        return (times[0],) * 3
    q1, median, q3 = statistics.quantiles(times, n=4)
    return q1, median, q3


def copy_bandwidth_gbps(device: torch.device, quick: bool) -> float:
    """Device-to-device copy rate (bytes read + bytes written per second) of a buffer larger than caches."""
    numel = (2**24 if quick else 2**26) if device.type == "cpu" else 2**28
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    median = statistics.median(time_side_by_side({"copy": lambda: dst.copy_(src)}, device, quick)["copy"])
    return 2 * src.numel() * src.element_size() / (median * 1e-3) / 1e9


def implementations(op: str, device: torch.device) -> dict[str, Callable]:
    public, reference = OPS[op]
    impls: dict[str, Callable] = {"eager": reference, "torch.compile": torch.compile(reference)}
    for backend in pyface.backends().get(device.type, []):
        if backend == "reference" or (backend == "triton" and device.type == "cpu"):
            continue  # reference is the eager row; Triton on CPU is only an interpreter
        impls[f"pyface[{backend}]"] = lambda *a, _b=backend, **k: public(*a, backend=_b, **k)
    return impls


def _fresh(inputs: dict, grad_inputs: tuple[str, ...], dtype: Optional[torch.dtype] = None) -> dict:
    out = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.detach().clone() if dtype is None else value.detach().to(dtype)
            value.requires_grad_(name in grad_inputs)
        out[name] = value
    return out


def _call(case: Case, fn: Callable, inputs: dict):
    args = [inputs[name] for name in case.positional]
    return fn(*args, **{k: v for k, v in inputs.items() if k not in case.positional})


def _upstream(out: torch.Tensor) -> torch.Tensor:
    """A fixed random gradient for a non-scalar output (the same for every implementation)."""
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(out.shape, generator=generator, dtype=torch.float64) + 0.5).to(out.device, out.dtype)


def _backward(out: torch.Tensor, upstream: Optional[torch.Tensor] = None) -> None:
    out.backward(None if out.dim() == 0 else (upstream if upstream is not None else _upstream(out)))


def _rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def _worst_error(case: Case, fn: Callable, inputs: dict, truth_inputs: dict, truth: torch.Tensor) -> float:
    trial_inputs = _fresh(inputs, case.grad_inputs)
    out = _call(case, fn, trial_inputs)
    _backward(out)
    errors = [_rel_error(out, truth)]
    errors += [_rel_error(trial_inputs[name].grad, truth_inputs[name].grad) for name in case.grad_inputs]
    return max(errors)


def check(case: Case, fn: Callable, inputs: dict, dtype: torch.dtype) -> float:
    """Largest relative error of fn's output and input gradients against the reference in
    float64; raises AssertionError past the dtype's tolerance or, for an ill-conditioned
    case where the eager reference in this dtype is itself less accurate than that, past
    EAGER_ERROR_FACTOR times the eager error."""
    _, reference = OPS[case.op]
    truth_inputs = _fresh(inputs, case.grad_inputs, torch.float64)
    truth = _call(case, reference, truth_inputs)
    _backward(truth)
    worst = _worst_error(case, fn, inputs, truth_inputs, truth)
    tolerance = max(TOLERANCE[dtype], case.tolerance or 0.0)
    if worst <= tolerance:
        return worst
    allowed = EAGER_ERROR_FACTOR * _worst_error(case, reference, inputs, truth_inputs, truth)
    if not worst <= allowed:
        raise AssertionError(
            f"{case.op}/{case.name} {dtype}: relative error {worst:.2e} over both {tolerance:.0e} "
            f"and {EAGER_ERROR_FACTOR}x the eager reference's own error ({allowed:.2e})"
        )
    return worst


def forward_step(case: Case, fn: Callable, inputs: dict) -> Callable[[], object]:
    plain = _fresh(inputs, ())

    def step():
        with torch.no_grad():
            return _call(case, fn, plain)

    return step


def backward_step(case: Case, fn: Callable, inputs: dict) -> Callable[[], object]:
    leaves = _fresh(inputs, case.grad_inputs)
    upstream = []  # made once, outside the timed calls after the first

    def step():
        for name in case.grad_inputs:
            leaves[name].grad = None
        out = _call(case, fn, leaves)
        if not upstream:
            upstream.append(_upstream(out))
        _backward(out, upstream[0])

    return step


def run_case(case: Case, device: torch.device, dtype: torch.dtype, quick: bool, copy_gbps: float, progress=None) -> list[Row]:
    inputs = case.inputs(device, dtype, quick)
    shape = tuple(inputs[case.main_input].shape)
    rows: list[Row] = []
    impls = implementations(case.op, device)  # one torch.compile wrapper serves both modes
    for mode in ("forward", "forward+backward"):
        with_backward = mode == "forward+backward"
        nbytes = case.min_bytes(inputs, with_backward)
        errors = {impl: check(case, fn, inputs, dtype) for impl, fn in impls.items()}
        make_step = backward_step if with_backward else forward_step
        steps = {impl: make_step(case, fn, inputs) for impl, fn in impls.items()}
        times = time_side_by_side(steps, device, quick)
        for impl, step in steps.items():
            q1, median, q3 = quartiles(times[impl])
            gbps = nbytes / (median * 1e-3) / 1e9
            peak = peak_bytes(step, device)
            rows.append(Row(
                op=case.op, case=case.name, shape=shape, batch_scaled=shape[0] != case.shape[0],
                dtype=str(dtype).removeprefix("torch."), mode=mode, impl=impl,
                median_ms=median, q1_ms=q1, q3_ms=q3, gbps=gbps, pct_of_copy=100 * gbps / copy_gbps,
                peak_mb=None if peak is None else peak / 2**20, max_rel_error=errors[impl],
            ))
            if progress is not None:
                progress.update(1)
        by_impl = {r.impl: r.median_ms for r in rows if r.mode == mode}
        for r in rows:
            if r.mode == mode:
                r.speedup_vs_eager = by_impl["eager"] / r.median_ms
                r.speedup_vs_compile = by_impl["torch.compile"] / r.median_ms
    return rows
