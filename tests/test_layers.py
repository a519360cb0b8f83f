"""Imports run one way: every import inside pyface (function-level ones included) goes to a
lower layer or stays in its own module or package. The layers, top to bottom, as
pyface/contracts/__init__.py describes them."""
import ast
from pathlib import Path

import pyface

LAYERS = [  # top first; names in one row are peers and may not import each other
    {"__main__"},
    {"cli"},
    {"train", "bench", "demo"},
    {"evaluate"},
    {"pipelines"},
    {"recipes"},
    {"data", "models", "opinfo", "optimization", "compat", "export"},
    {"pyface"},  # the package itself (its __init__ gathers ops, nn, reference and geometry)
    {"nn"},
    {"ops"},
    {"reference", "triton_kernels", "_backends", "_autocast", "distributed"},
    {"_extension"},
    {"_C", "_build_info"},
    {"contracts", "geometry", "metrics", "audio", "_usage", "_modes", "_dtypes", "run_log"},
]
LEVEL = {name: len(LAYERS) - i for i, row in enumerate(LAYERS) for name in row}
PACKAGE = Path(pyface.__file__).parent


def _part(module: str) -> str:
    """pyface.a.b -> a: the module or subpackage of pyface that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "pyface"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pyface":
            names = [f"pyface.{a.name}" for a in node.names] if node.module == "pyface" else [node.module]
            yield from ((node.lineno, name) for name in names)
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "pyface")


def test_every_part_of_pyface_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert parts <= set(LEVEL), f"no layer for {sorted(parts - set(LEVEL))}: add them to LAYERS"


def test_no_import_runs_up_or_across_the_layers():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        source = _part(module)
        if source == "pyface":  # the package's __init__ gathers the public API
            continue
        for line, name in _imports(path):
            target = _part(name)
            if target != source and LEVEL[target] >= LEVEL[source]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {source} imports {name}")
    assert not wrong, "imports that run up or across the layers:\n" + "\n".join(wrong)
