"""The README's tables of what each model learns, from the `pyface eval` JSON files and the
training logs that benchmarks/models/run.sh and benchmarks/models/style_aware.sh wrote:

    python benchmarks/models/table.py [benchmarks/results/models]
"""
import json
import re
import sys
from pathlib import Path

MODELS = ("glamor", "speech-gan", "atvgnet")


def _number(value, ceiling=False) -> str:
    if value is None:
        return "inf" if ceiling else "-"
    return f"{value:.3f}"


HEADER = ["| model | metric | floor | model | ceiling | gap closed | training (wall) |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
STYLE_AWARE_STAGES = ("style-mapping", "style-generator", "face-reader", "audio-motion")  # the recipe's order


def _rows(label: str, result: dict, training: str) -> list[str]:
    return [f"| {label if i == 0 else ''} | {name} | {_number(m['floor'])} | {_number(m['value'])} | "
            f"{_number(m['ceiling'], ceiling=True)} | {m['gap_closed']:.0%} | {training if i == 0 else ''} |"
            for i, (name, m) in enumerate(result["metrics"].items())]


def table(root: Path) -> str:
    lines = list(HEADER)
    for model in MODELS:
        path = root / f"{model}-eval.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        log = root / f"{model}-train.log"
        wall = re.search(r"wall time: (\d+) s", log.read_text()) if log.exists() else None
        training = f"{result['steps']} steps, {int(wall.group(1)) / 60:.1f} min" if wall else f"{result['steps']} steps"
        lines += _rows(model, result, training)
    return "\n".join(lines)


def style_aware_table(root: Path) -> str:
    """Each stage's own evaluation, then the whole pipeline's, with the recipe's wall times."""
    log = (root / "style-aware-train.log").read_text()
    lines = list(HEADER)
    for stage in STYLE_AWARE_STAGES:
        result = json.loads((root / f"style-aware-{stage}-eval.json").read_text())
        wall = re.search(rf"^{stage}: wall time (\d+) s", log, flags=re.M)
        lines += _rows(stage, result, f"{result['steps']} steps, {int(wall.group(1)) / 60:.1f} min")
    total = re.search(r"^recipe: wall time (\d+) s", log, flags=re.M)
    result = json.loads((root / "style-aware-eval.json").read_text())
    lines += _rows("pipeline", result, f"all four stages, {int(total.group(1)) / 60:.1f} min")
    return "\n".join(lines)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/models")
    print(table(root))
    if (root / "style-aware-eval.json").exists():
        print()
        print(style_aware_table(root))
