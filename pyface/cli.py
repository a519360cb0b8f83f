"""The `pyface` command: `pyface bench`, `pyface train` and `pyface demo` (also `python -m pyface ...`)."""
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
    bench.add_argument("--models", default=None,
                       help="comma-separated models whose training step to time (default: all, unless --ops is given)")
    bench.add_argument("--quick", action="store_true", help="small inputs and few repetitions (a smoke run)")
    bench.add_argument("--out", default=None, help="directory for the JSON, Markdown and PNG report")
    train = commands.add_parser("train", help="train a model on the synthetic data")
    train.add_argument("model", choices=["glamor", "style-mapping", "atvgnet", "speech-gan"], help="the model to train")
    train.add_argument("--synthetic", action="store_true", help="train on pyface.data's synthetic data")
    train.add_argument("--steps", type=int, default=100, help="optimiser steps to take (default 100)")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    train.add_argument("--backend", default=None, help="pyface.ops backend (default: the best one built)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default: the model's)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint", default=None, help="file to save model and optimiser state to")
    train.add_argument("--save-every", type=int, default=0, help="also save every this many steps")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    demo = commands.add_parser("demo", help="animate a face from a recording")
    demo.add_argument("model", choices=["speech-gan"])
    demo.add_argument("--wav", required=True, help="a wav or flac recording")
    demo.add_argument("--out", required=True, help="the PNG grid of generated frames to write")
    demo.add_argument("--checkpoint", default=None, help="a `pyface train speech-gan` checkpoint")
    demo.add_argument("--image", default=None, help="the still face (default: a drawn one)")
    demo.add_argument("--max-frames", type=int, default=50)
    args = parser.parse_args(argv)

    if args.command == "demo":
        from pyface.demo import speech_demo

        path = speech_demo(args.wav, args.out, args.checkpoint, args.image, args.max_frames)
        print(f"wrote {path}")
        return 0

    if args.command == "train":
        from pyface.train import main_train

        return main_train(args)

    import torch

    from pyface.bench import main_bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    split = lambda text: None if text is None else [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    return main_bench(device, split(args.ops), args.quick, args.out, split(args.dtypes), split(args.models))


if __name__ == "__main__":
    sys.exit(main())
