"""The benchmark report: a terminal table, and JSON, Markdown and PNG charts under --out."""
from __future__ import annotations

import json
from pathlib import Path

from pyface.bench.runner import UNSTABLE_SPREAD, Row

_HEADER = ("op", "case", "shape", "dtype", "mode", "impl", "median ms (IQR)", "vs eager", "vs compile", "GB/s",
           "% copy", "peak MB", "rel. error (bound)")
UNSTABLE_MARK = "!"


def _megabytes(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 1 or value == 0 else f"{value:.3f}"


def _cells(row: Row) -> tuple[str, ...]:
    flag = f" {UNSTABLE_MARK}" if row.unstable else ""

    def ratio(value):
        return "-" if value is None else f"{value:.2f}x{flag}"

    shape = "x".join(map(str, row.shape)) + (" *" if row.batch_scaled else "")
    timing = "FAILED" if row.failure else f"{row.median_ms:.3f} ({row.q1_ms:.3f}-{row.q3_ms:.3f}){flag}"
    error = "-" if row.max_rel_error is None else f"{row.max_rel_error:.1e}"
    if row.tolerance is not None:
        error += f" ({row.tolerance:.0e})"
    return (
        row.op, row.case, shape, row.dtype, row.mode, row.impl, timing,
        ratio(row.speedup_vs_eager), ratio(row.speedup_vs_compile),
        "-" if row.gbps is None else f"{row.gbps:.1f}", "-" if row.pct_of_copy is None else f"{row.pct_of_copy:.0f}%",
        _megabytes(row.peak_mb), error,
    )


def _header_lines(meta: dict) -> list[str]:
    lines = [
        f"device: {meta['device_name']} ({meta['device']}), torch {meta['torch']}, pyface {meta['pyface']}, "
        f"threads {meta['threads']}" + (f", CPU kernels {meta['cpu_isa']}" if meta.get("cpu_isa") else ""),
        f"copy bandwidth measured in this run: {meta['copy_gbps']:.1f} GB/s (bytes read + written)",
    ]
    if meta.get("scaled_note"):
        lines.append(meta["scaled_note"])
    lines += [
        "rel. error: the largest relative error of the output and every input gradient (of the loss and "
        "every parameter gradient for a model step; every output and input gradient for a module) against float64 "
        "(LivePortrait-WarpingNetwork: against the eager float32 module), and in brackets the bound it was held to",
        "peak MB: the most memory the call's tensors held at once beyond its inputs (allocations counted)",
        f"{UNSTABLE_MARK}: timings still spread wide (IQR over {UNSTABLE_SPREAD:.0%} of the median) after a second "
        "measurement; treat that row's ratios with care",
    ]
    if meta.get("interrupted"):
        lines.append("INTERRUPTED: the run was stopped; only the rows measured before the stop are here")
    return lines


def failure_lines(rows: list[Row]) -> list[str]:
    return [f"{r.op}/{r.case} {r.dtype} {r.mode} {r.impl}: {r.failure}" for r in rows if r.failure]


def text_table(rows: list[Row], meta: dict) -> str:
    table = [_HEADER] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    out = _header_lines(meta) + [""]
    for i, line in enumerate(table):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def summary_lines(rows: list[Row]) -> list[str]:
    """One Markdown line per (op or module, case, dtype, mode) and pyface backend: the eager,
    torch.compile and pyface medians, pyface's speedups, share of the copy bandwidth and peak
    memory (eager / pyface)."""
    groups: dict[tuple, dict[str, Row]] = {}
    for row in rows:
        groups.setdefault((row.op, row.case, row.dtype, row.mode), {})[row.impl] = row
    out = ["| op | case | dtype | mode | eager ms | compile ms | pyface ms | vs eager | vs compile | % copy | "
           "peak MB eager / pyface |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def ms(row):
        return "-" if row is None or row.median_ms is None else f"{row.median_ms:.3f}"

    for (op, case, dtype, mode), impls in groups.items():
        eager, compiled = impls.get("eager"), impls.get("torch.compile")
        for impl, row in impls.items():
            if not impl.startswith("pyface") or row.median_ms is None:
                continue
            ratio = ["-" if v is None else f"{v:.2f}x" for v in (row.speedup_vs_eager, row.speedup_vs_compile)]
            copy = "-" if row.pct_of_copy is None else f"{row.pct_of_copy:.0f}%"
            peak = f"{_megabytes(eager.peak_mb if eager else None)} / {_megabytes(row.peak_mb)}"
            label = impl if len([i for i in impls if i.startswith("pyface")]) > 1 else ""
            out.append(f"| {op} | {case} | {dtype} | {mode} | {ms(eager)} | {ms(compiled)} | {ms(row)}"
                       f"{' ' + label if label else ''} | {ratio[0]} | {ratio[1]} | {copy} | {peak} |")
    return out


def markdown_table(rows: list[Row], meta: dict) -> str:
    out = [f"# pyface bench: {meta['device_name']}", ""] + [f"- {line}" for line in _header_lines(meta)] + [""]
    out += ["## pyface against eager and torch.compile", ""] + summary_lines(rows) + ["", "## Every row", ""]
    out.append("| " + " | ".join(_HEADER) + " |")
    out.append("|" + "---|" * len(_HEADER))
    out += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    failures = failure_lines(rows)
    if failures:
        out += ["", "## Failed rows (not timed)", ""] + [f"- {line}" for line in failures]
    return "\n".join(out) + "\n"


# --- charts ----------------------------------------------------------------------------------

_MODE_LABELS = {"inference": "infer", "forward": "fwd", "forward+backward": "fwd+bwd", "train step": "train step"}


def _groups(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows by chart panel: one panel per op, one for the model training steps."""
    panels: dict[str, list[Row]] = {}
    for row in rows:
        panels.setdefault("model training steps" if row.op == "model" else row.op, []).append(row)
    return panels


_FIXED_COLOURS = {"eager": "0.55", "torch.compile": "tab:blue"}
_PYFACE_COLOURS = ("tab:orange", "tab:green", "tab:red", "tab:purple")


def _colours(impls: list[str]) -> dict[str, object]:
    """The same colour for an implementation in every chart."""
    pyface_impls = [impl for impl in impls if impl not in _FIXED_COLOURS]
    return {**_FIXED_COLOURS, **dict(zip(pyface_impls, _PYFACE_COLOURS))}


def _balanced_columns(heights: dict[str, float], count: int) -> list[list[str]]:
    """Panels in order, split into `count` columns of about equal height."""
    total, columns, running = sum(heights.values()), [[]], 0.0
    for name, height in heights.items():
        if len(columns) < count and columns[-1] and running + height / 2 > total * len(columns) / count:
            columns.append([])
        columns[-1].append(name)
        running += height
    return columns


def _bar_chart(rows: list[Row], field: str, impls: list[str], xlabel: str, title: str, path: Path,
               unit_line: float | None, smallest: float) -> Path:
    """Horizontal bars on a log axis, one panel per op: a band per (case, dtype, mode), a bar
    per implementation; a missing or failed value is written as such, not drawn as zero.
    Values below `smallest` are drawn at it and labelled with their value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panels = _groups(rows)
    bands = {name: list(dict.fromkeys((r.case, r.dtype, r.mode) for r in panel)) for name, panel in panels.items()}
    heights = {name: 0.7 + 0.17 * len(b) * len(impls) + 0.1 * len(b) for name, b in bands.items()}
    columns = _balanced_columns(heights, 2 if len(panels) > 3 else 1)
    top = 0.75  # inches for the title and legend
    tallest = max(sum(heights[name] for name in column) for column in columns)
    fig = plt.figure(figsize=(8 * len(columns), tallest + top + 0.5), layout="constrained")
    axes_of = {}
    for subfig, column in zip(fig.subfigures(1, len(columns), squeeze=False)[0], columns):
        # an empty panel at the foot evens out the columns' heights
        slack = tallest - sum(heights[name] for name in column)
        ratios = [heights[name] for name in column] + ([slack] if slack > 0.05 else [])
        column_axes = subfig.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios}, squeeze=False)[:, 0]
        for extra in column_axes[len(column):]:
            extra.set_axis_off()
        axes_of.update(zip(column, column_axes))
    colours = _colours(impls)
    values = [v for v in (getattr(r, field) for r in rows) if v]
    low, high = (min(values), max(values)) if values else (1.0, 10.0)
    span = (max(low, smallest) / 1.8, high * 2.5)
    bar = 0.8 / len(impls)
    for name, panel in panels.items():
        ax = axes_of[name]
        index = {(r.case, r.dtype, r.mode, r.impl): r for r in panel}
        ax.set_xscale("log")
        ax.set_xlim(*span)
        for y, band in enumerate(bands[name]):
            if y % 2:
                ax.axhspan(y - 0.5, y + 0.5, color="0.95", zorder=0)
            case_failed = (*band, "-") in index  # the whole case failed before any implementation ran
            for i, impl in enumerate(impls):
                row = index.get((*band, impl))
                at = y - 0.4 + (i + 0.5) * bar
                value = getattr(row, field) if row is not None else None
                if value is not None:
                    ax.barh(at, max(value, smallest), bar * 0.9, color=colours[impl], zorder=2)
                    label = (f"{value:.3g}" if value >= smallest else f"<{smallest:g}") + \
                        (f" {UNSTABLE_MARK} noisy" if row.unstable else "")
                    ax.text(max(value, smallest) * 1.05, at, label, va="center", fontsize=7, zorder=4)
                elif name != "model training steps" or impl != "torch.compile":  # model steps have no compile row
                    failed = case_failed or (row is not None and row.failure)
                    ax.text(span[0] * 1.08, at, "failed" if failed else "not measured", va="center", fontsize=7,
                            color="tab:red" if failed else "0.35", style="italic")
        ax.set_yticks(range(len(bands[name])))
        ax.set_yticklabels([f"{case}  {dtype}  {_MODE_LABELS.get(mode, mode)}" for case, dtype, mode in bands[name]],
                           fontsize=8)
        ax.set_ylim(len(bands[name]) - 0.5, -0.5)
        ax.set_title(name, fontsize=10, loc="left", fontweight="bold")
        if unit_line is not None:
            ax.axvline(unit_line, color="0.15", linewidth=1.1, zorder=3)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", which="major", color="0.88", zorder=0)
        ax.set_xlabel(xlabel, fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[impl]) for impl in impls]
    fig.legend(handles, impls, loc="outside upper right", fontsize=9, ncol=len(impls), frameon=False)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _charts(rows: list[Row], out_dir: Path, meta: dict) -> list[Path]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    if not rows:
        return []
    impls = list(dict.fromkeys(r.impl for r in rows if r.impl != "-"))
    compared = [impl for impl in impls if impl != "eager"]
    device = meta["device_name"]
    return [
        _bar_chart(rows, "speedup_vs_eager", compared, "x faster than eager (log scale)",
                   f"Speedup over eager PyTorch, from median times: right of the black line is faster than eager\n"
                   f"{device}", out_dir / "speedup.png", 1.0, 0.01),
        _bar_chart(rows, "peak_mb", impls, "MB (log scale)",
                   f"Peak memory of one call beyond its inputs, MB: shorter is better (under 0.01 MB drawn at 0.01)\n"
                   f"{device}", out_dir / "memory.png", None, 0.01),
    ]


def write(rows: list[Row], meta: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{meta['device']}"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")
    md_path.write_text(markdown_table(rows, meta))
    return [json_path, md_path, *_charts(rows, out_dir, meta)]
