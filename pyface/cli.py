"""The `pyface` command: `pyface bench` (also `python -m pyface bench`)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyface", description="pyface: fused kernels for talking-head models")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="time every backend against eager PyTorch and torch.compile")
    bench.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--ops", default=None, help="comma-separated op names (default: all)")
    bench.add_argument("--dtypes", default=None, help="comma-separated dtypes (default: float32; on CUDA also bfloat16,float16)")
    bench.add_argument("--quick", action="store_true", help="small inputs and few repetitions (a smoke run)")
    bench.add_argument("--out", default=None, help="directory for the JSON, Markdown and PNG report")
    args = parser.parse_args(argv)

    import torch

    from pyface.bench import main_bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    split = lambda text: None if text is None else [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    return main_bench(device, split(args.ops), args.quick, args.out, split(args.dtypes))


if __name__ == "__main__":
    sys.exit(main())
