"""The README's table of what each model learns, from the `pyface eval` JSON files and the
training logs that benchmarks/models/run.sh wrote:

    python benchmarks/models/table.py [benchmarks/results/models]
"""
import json
import re
import sys
from pathlib import Path

MODELS = ("glamor", "speech-gan", "atvgnet", "style-mapping")


def _number(value, ceiling=False) -> str:
    if value is None:
        return "inf" if ceiling else "-"
    return f"{value:.3f}"


def table(root: Path) -> str:
    lines = ["| model | metric | floor | model | ceiling | gap closed | training (wall) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for model in MODELS:
        path = root / f"{model}-eval.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        log = root / f"{model}-train.log"
        wall = re.search(r"wall time: (\d+) s", log.read_text()) if log.exists() else None
        training = f"{result['steps']} steps, {int(wall.group(1)) / 60:.1f} min" if wall else f"{result['steps']} steps"
        for i, (name, m) in enumerate(result["metrics"].items()):
            lines.append(f"| {model if i == 0 else ''} | {name} | {_number(m['floor'])} | {_number(m['value'])} | "
                         f"{_number(m['ceiling'], ceiling=True)} | {m['gap_closed']:.0%} | {training if i == 0 else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/models")))
