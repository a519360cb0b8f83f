"""The benchmark report: a terminal table, and JSON, Markdown and PNG charts under --out."""
from __future__ import annotations

import json
from pathlib import Path

from pyface.bench.runner import Row

_HEADER = ("op", "case", "shape", "dtype", "mode", "impl", "median ms (IQR)", "vs eager", "vs compile", "GB/s", "% copy", "peak MB")


def _cells(row: Row) -> tuple[str, ...]:
    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    shape = "x".join(map(str, row.shape)) + (" *" if row.batch_scaled else "")
    return (
        row.op, row.case, shape, row.dtype, row.mode, row.impl,
        f"{row.median_ms:.3f} ({row.q1_ms:.3f}-{row.q3_ms:.3f})",
        ratio(row.speedup_vs_eager), ratio(row.speedup_vs_compile),
        "-" if row.gbps is None else f"{row.gbps:.1f}", "-" if row.pct_of_copy is None else f"{row.pct_of_copy:.0f}%",
        "-" if row.peak_mb is None else f"{row.peak_mb:.1f}",
    )


def _header_lines(meta: dict) -> list[str]:
    lines = [
        f"device: {meta['device_name']} ({meta['device']}), torch {meta['torch']}, pyface {meta['pyface']}, "
        f"threads {meta['threads']}",
        f"copy bandwidth measured in this run: {meta['copy_gbps']:.1f} GB/s (bytes read + written)",
    ]
    if meta.get("scaled_note"):
        lines.append(meta["scaled_note"])
    return lines


def text_table(rows: list[Row], meta: dict) -> str:
    table = [_HEADER] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    out = _header_lines(meta) + [""]
    for i, line in enumerate(table):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row], meta: dict) -> str:
    out = [f"# pyface bench: {meta['device_name']}", ""] + [f"- {line}" for line in _header_lines(meta)] + [""]
    out.append("| " + " | ".join(_HEADER) + " |")
    out.append("|" + "---|" * len(_HEADER))
    out += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _charts(rows: list[Row], out_dir: Path, meta: dict) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    labels = list(dict.fromkeys((r.op, r.case, r.dtype, r.mode) for r in rows))  # in run order
    impls = list(dict.fromkeys(r.impl for r in rows))
    index = {(r.op, r.case, r.dtype, r.mode, r.impl): r for r in rows}
    for field, title, fname in (
        ("speedup_vs_eager", "speedup over eager PyTorch (higher is better)", "speedup.png"),
        ("peak_mb", "peak memory over the inputs, MB (lower is better)", "memory.png"),
    ):
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) + 2), 4.5))
        width = 0.8 / max(1, len(impls))
        for i, impl in enumerate(impls):
            values = [getattr(index.get((*k, impl)), field, None) or 0 for k in labels]
            ax.bar([x + i * width for x in range(len(labels))], values, width, label=impl)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))])
        ax.set_xticklabels([f"{o}\n{c}\n{d} {m}" for o, c, d, m in labels], fontsize=6)
        ax.set_title(f"{title}\n{meta['device_name']}", fontsize=9)
        if field == "speedup_vs_eager":
            ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(rows: list[Row], meta: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{meta['device']}"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")
    md_path.write_text(markdown_table(rows, meta))
    return [json_path, md_path, *_charts(rows, out_dir, meta)]
