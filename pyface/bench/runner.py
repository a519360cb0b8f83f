"""Times every implementation of each case side by side: the eager reference, torch.compile
of it, and each pyface backend built for the device; in inference (torch.inference_mode), the
forward of a training step (inputs that require gradients: what it keeps for the backward
counts in its peak memory) and forward+backward. Each implementation's output and input
gradients are checked against a float64 reference first."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

import pyface
from pyface.bench.cases import BASELINES, OPS, Case
from pyface.bench.memory import peak_bytes

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 2e-2}
# Where a case is so ill-conditioned that eager PyTorch in the dtype misses TOLERANCE (GLA's
# score gradient subtracts nearly equal sums over thousands of channels), an implementation
# passes within this factor of the eager error.
EAGER_ERROR_FACTOR = 8
# A row whose interquartile range exceeds this fraction of its median is measured again, and
# flagged as unstable in the report if the second measurement spreads as wide.
UNSTABLE_SPREAD = 0.25


@dataclass
class Row:
    op: str
    case: str
    shape: tuple  # the shape of the work: the main input's, or the output's where that says more
    batch_scaled: bool
    dtype: str
    mode: str  # one of MODES, "train step", or a module's "inference" / "forward+backward"
    impl: str  # "eager", "torch.compile" or "pyface[<backend>]"
    median_ms: float | None = None  # None on a failed row
    q1_ms: float | None = None
    q3_ms: float | None = None
    speedup_vs_eager: float | None = None
    speedup_vs_compile: float | None = None
    gbps: float | None = None
    pct_of_copy: float | None = None
    peak_mb: float | None = None
    max_rel_error: float | None = None  # against float64, output and every input gradient
    tolerance: float | None = None  # the bound max_rel_error was held to
    unstable: bool = False  # the timings' spread stayed wide after a second measurement
    failure: str | None = None  # why the row was not timed: a failed check or an exception

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def spread(self) -> float | None:
        return None if self.median_ms is None else spread(self.q1_ms, self.median_ms, self.q3_ms)


def spread(q1: float, median: float, q3: float) -> float:
    """The interquartile range over the median: how much a row's times scatter."""
    return (q3 - q1) / median


class AccuracyError(AssertionError):
    """An implementation's result is further from the float64 reference than allowed."""

    def __init__(self, message: str, error: float, tolerance: float):
        super().__init__(message)
        self.error, self.tolerance = error, tolerance


def failure_text(error: BaseException) -> str:
    """One line for the report: the exception's type and its message's first line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


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
    least 10 rounds, more while under a time budget of a second per step. Each round starts one
    step further along, so every step follows every other equally often: a step finds the
    cache as the one before it left it, and with inputs that fit the CPU's last-level cache a
    fixed order (eager, compile, pyface) had given softmax_pool's float32 forward+backward
    1.22-1.28x compile where pyface before compile gave 1.09-1.20x. Warm-up: two calls of each
    step (torch.compile compiles in the first), and up to five within a second."""
    for fn in steps.values():
        start = time.perf_counter()
        for call in range(2 if quick else 5):
            if call >= 2 and time.perf_counter() - start > 1.0:
                break
            fn()
            _sync(device)
    budget_s, min_rounds, max_rounds = (0.2, 5, 20) if quick else (1.0, 10, 200)
    budget_s *= len(steps)
    times: dict[str, list[float]] = {name: [] for name in steps}
    start = time.perf_counter()
    rounds = 0
    names = list(steps)
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - start < budget_s):
        first = rounds % len(names)
        for name in names[first:] + names[:first]:
            times[name].append(_time_call_ms(steps[name], device))
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


def timed_backends(device: torch.device) -> list[str]:
    """The pyface backends timed on this device: reference is the eager row, and Triton on
    the CPU is only an interpreter."""
    return [b for b in pyface.backends().get(device.type, [])
            if b != "reference" and not (b == "triton" and device.type == "cpu")]


def implementations(op: str, device: torch.device) -> dict[str, Callable]:
    public, reference = OPS[op]
    baseline = BASELINES.get(op, reference)
    impls: dict[str, Callable] = {"eager": baseline, "torch.compile": torch.compile(baseline)}
    for backend in timed_backends(device):
        impls[f"pyface[{backend}]"] = lambda *a, _b=backend, **k: public(*a, backend=_b, **k)
    return impls


def _fresh(inputs: dict, grad_inputs: tuple[str, ...], dtype: torch.dtype | None = None) -> dict:
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


def _backward(out: torch.Tensor, upstream: torch.Tensor | None = None) -> None:
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


def judge(what: str, error: float, tolerance: float, eager_error: Callable[[], float]) -> float:
    """The bound an error of an implementation is held to, or AccuracyError past it: the
    dtype's tolerance, or, where the eager reference in the same dtype is itself less
    accurate than that (ill-conditioned cases, texel-edge flips of bilinear sampling),
    EAGER_ERROR_FACTOR times the eager error against float64 on the same inputs."""
    if error <= tolerance:
        return tolerance
    allowed = EAGER_ERROR_FACTOR * eager_error()
    if not error <= allowed:
        raise AccuracyError(f"{what}: relative error {error:.2e} against float64 is over both {tolerance:.0e} and "
                            f"{EAGER_ERROR_FACTOR}x the eager reference's own error ({allowed:.2e})",
                            error, max(tolerance, allowed))
    return allowed


def check(case: Case, fn: Callable, inputs: dict, dtype: torch.dtype) -> tuple[float, float]:
    """(error, tolerance): the largest relative error of fn's output and input gradients
    against the reference in float64, and the bound `judge` held it to; raises
    AccuracyError past that bound."""
    _, reference = OPS[case.op]
    truth_inputs = _fresh(inputs, case.grad_inputs, torch.float64)
    truth = _call(case, reference, truth_inputs)
    _backward(truth)
    worst = _worst_error(case, fn, inputs, truth_inputs, truth)
    tolerance = judge(f"{case.op}/{case.name} {dtype}", worst, max(TOLERANCE[dtype], case.tolerance or 0.0),
                      lambda: _worst_error(case, reference, inputs, truth_inputs, truth))
    return worst, tolerance


MODES = ("inference", "forward", "forward+backward")


def inference_step(case: Case, fn: Callable, inputs: dict) -> Callable[[], object]:
    plain = _fresh(inputs, ())

    def step():
        with torch.inference_mode():
            return _call(case, fn, plain)

    return step


def forward_step(case: Case, fn: Callable, inputs: dict) -> Callable[[], object]:
    """The forward of a training step: the graph and what it saves are built, then dropped."""
    leaves = _fresh(inputs, case.grad_inputs)

    def step():
        return _call(case, fn, leaves)

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


def widest_spread(times: dict[str, list[float]]) -> float:
    """The largest interquartile range over the median among the implementations."""
    return max((spread(*quartiles(t)) for t in times.values()), default=0.0)


def time_until_steady(steps: dict[str, Callable[[], object]], device: torch.device, quick: bool) -> dict[str, list[float]]:
    """time_side_by_side, once more when an implementation's times spread wide (a slow spell
    of a shared machine), keeping the steadier of the two measurements."""
    times = time_side_by_side(steps, device, quick)
    if widest_spread(times) > UNSTABLE_SPREAD:
        again = time_side_by_side(steps, device, quick)
        if widest_spread(again) < widest_spread(times):
            times = again
    return times


def fill_timings(row: Row, times: list[float], peak: int | None) -> None:
    row.q1_ms, row.median_ms, row.q3_ms = quartiles(times)
    row.unstable = row.spread > UNSTABLE_SPREAD
    row.peak_mb = None if peak is None else peak / 2**20


def mark_failed(row: Row, error: BaseException) -> None:
    """A row that will not be timed: the error, and the accuracy figures an AccuracyError carries."""
    row.failure = failure_text(error)
    row.max_rel_error, row.tolerance = getattr(error, "error", None), getattr(error, "tolerance", None)


def time_group(group: dict[str, Row], steps: dict[str, Callable[[], object]], device: torch.device,
               quick: bool) -> None:
    """Times the steps side by side into their rows of the group (median, spread, peak
    memory), then every timed row's speedups; an error while timing fails the rows it hit."""
    try:
        times = time_until_steady(steps, device, quick) if steps else {}
        for key, step in steps.items():
            fill_timings(group[key], times[key], peak_bytes(step, device))
    except Exception as error:
        for key in steps:
            group[key].failure, group[key].median_ms = f"while timing: {failure_text(error)}", None
    fill_speedups(list(group.values()))


def fill_speedups(rows: list[Row]) -> None:
    """Each timed row's speedup over the eager and torch.compile rows of its group."""
    by_impl = {r.impl: r.median_ms for r in rows if r.median_ms is not None}
    for row in rows:
        if row.median_ms is not None:
            row.speedup_vs_eager = by_impl["eager"] / row.median_ms if "eager" in by_impl else None
            row.speedup_vs_compile = by_impl["torch.compile"] / row.median_ms if "torch.compile" in by_impl else None


def work_shape(case: Case, inputs: dict) -> tuple:
    return tuple(case.work_shape(inputs)) if case.work_shape else tuple(inputs[case.main_input].shape)


STEPS = {"inference": inference_step, "forward": forward_step, "forward+backward": backward_step}


def run_case(case: Case, device: torch.device, dtype: torch.dtype, quick: bool, copy_gbps: float,
             on_row: Callable[[Row], None] = lambda row: None) -> list[Row]:
    """Rows of every implementation in every mode; an implementation whose check or call
    fails gives a failed row (with the error) and the others are still timed."""
    inputs = case.inputs(device, dtype, quick)
    shape = work_shape(case, inputs)
    # dynamo's cache is per function: without a reset, the cases and dtypes of one op hit its
    # recompile limit, and torch.compile rows fall back to eager unannounced
    torch.compiler.reset()
    impls = implementations(case.op, device)  # one torch.compile wrapper serves every mode
    rows: list[Row] = []
    for mode in MODES:
        with_backward = mode == "forward+backward"
        nbytes = case.min_bytes(inputs, with_backward)
        group = {impl: Row(op=case.op, case=case.name, shape=shape, batch_scaled=shape[0] != case.shape[0],
                           dtype=str(dtype).removeprefix("torch."), mode=mode, impl=impl) for impl in impls}
        steps = {}
        for impl, fn in impls.items():
            try:
                group[impl].max_rel_error, group[impl].tolerance = check(case, fn, inputs, dtype)
                steps[impl] = STEPS[mode](case, fn, inputs)
            except Exception as error:  # reported as a failed row; the run goes on
                mark_failed(group[impl], error)
        time_group(group, steps, device, quick)
        for row in group.values():
            if row.median_ms is not None:
                row.gbps = nbytes / (row.median_ms * 1e-3) / 1e9
                row.pct_of_copy = 100 * row.gbps / copy_gbps
        for row in group.values():
            on_row(row)
        rows += group.values()
    return rows
