"""The `pyface` command: `pyface bench`, `pyface train`, `pyface eval` and `pyface demo` (also `python -m pyface ...`).

A mistake in what a command is asked to do (an unknown name, a missing file, a device this
machine lacks) is printed as one line, `pyface <command>: error: ...`, with exit code 2, as
argparse does for its own errors.
"""
from __future__ import annotations

import argparse
import sys

from pyface._usage import UsageError


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    from pyface.bench import DTYPES, OP_NAMES, model_names
    from pyface.train import MODELS

    parser = argparse.ArgumentParser(prog="pyface", description="pyface: fused kernels for talking-head models")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{bench,train,eval,demo}")
    bench = commands.add_parser("bench", help="time every backend against eager PyTorch and torch.compile",
                                description="Times each op's pyface backends against eager PyTorch and torch.compile "
                                "(forward and forward+backward), and each model's training step on pyface's kernels "
                                "against the same model on the reference backend. Every result is checked against "
                                "float64 first; a row that fails its check is reported as failed and the run goes on. "
                                "Exit code 0: every row passed; 1: some rows failed; 2: a usage error; 130: stopped.")
    bench.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    bench.add_argument("--ops", default=None, metavar="NAMES",
                       help=f"comma-separated ops to time (default: all): {', '.join(OP_NAMES)}")
    bench.add_argument("--dtypes", default=None, metavar="NAMES",
                       help=f"comma-separated dtypes of the op cases: {', '.join(DTYPES)} "
                            "(default: float32,bfloat16; on CUDA float32,bfloat16,float16)")
    bench.add_argument("--models", default=None, metavar="NAMES",
                       help=f"comma-separated models (training steps) and motion modules to time: "
                            f"{', '.join(model_names())} "
                            "(default: all, unless --ops is given)")
    bench.add_argument("--quick", action="store_true", help="small inputs and few repetitions (a smoke run)")
    bench.add_argument("--out", default=None, metavar="DIR",
                       help="directory for the report: bench-<device>.jsonl (rows as they are measured), "
                            "bench-<device>.json and .md, speedup.png and memory.png")
    bench.add_argument("--without-extension", action="store_true",
                       help="bench even when the compiled extension did not load (no pyface[cpu]/[cuda] rows)")
    train = commands.add_parser("train", help="train a model, on one process or many (torchrun)",
                                description="Trains a model on pyface.data's synthetic data or a folder of real "
                                "samples, with checkpoints that resume (on any number of processes). Under "
                                "`torchrun --nproc_per_node N -m pyface train ...` it trains with "
                                "DistributedDataParallel (gloo on the CPU, NCCL on CUDA). "
                                "On a 2-core CPU a step at the default batch size takes about 0.4 s "
                                "(glamor), 0.8 s (speech-gan), 1.2 s (atvgnet) or 2.8 s (style-mapping).")
    train.add_argument("model", choices=MODELS, help="the model to train")
    train.add_argument("--synthetic", action="store_true", help="train on pyface.data's synthetic data")
    train.add_argument("--data", default=None, metavar="DIR",
                       help="train on a folder of real samples instead (glamor: <emotion>/<sample>/face.png and "
                            "context.png; speech-gan: <clip>/frames/*.png at 25 fps and <clip>/audio.wav); "
                            "see pyface.data.real")
    train.add_argument("--workers", type=int, default=0, metavar="N", help="--data: DataLoader worker processes")
    train.add_argument("--preset", default=None, choices=["cpu"],
                       help="a training recipe: steps, batch size, learning rate and its schedule, learning-curve "
                            "interval; `cpu` is sized for about 15 minutes on a 2-core CPU (the README gives what it reaches) "
                            "(explicit flags win)")
    train.add_argument("--steps", type=int, default=None, help="optimiser steps to take (default 100, or the preset's)")
    train.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    train.add_argument("--backend", default=None, choices=["cpu", "cuda", "triton", "reference"],
                       help="pyface.ops backend (default: the best one built)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="samples per optimiser step, the global batch: under torchrun each process takes "
                            "batch/processes of them (default 16, or the preset's)")
    train.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default: the model's)")
    train.add_argument("--seed", type=int, default=0, help="seed of the weights and the synthetic data (default 0)")
    train.add_argument("--checkpoint", default=None, metavar="FILE", help="file to save model and optimiser state to")
    train.add_argument("--save-every", type=int, default=0, metavar="N", help="also save every N steps")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    train.add_argument("--style-mapping", default=None, metavar="FILE",
                       help="style-generator: learn from the Intermediate Style Patterns of this trained "
                            "style-mapping checkpoint (the pipeline's); default: the true patterns")
    train.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                       help="autocast precision (fp16 with a gradient scaler); default fp32")
    train.add_argument("--accumulate", type=int, default=1, metavar="K",
                       help="gradient accumulation: each step's batch in K micro-batches (default 1)")
    train.add_argument("--clip-grad", type=float, default=0.0, metavar="NORM",
                       help="clip each optimiser's gradient norm to NORM (default 0: no clipping)")
    train.add_argument("--schedule", default=None, choices=["constant", "cosine"],
                       help="learning rate after the warmup: constant, or a cosine down to a tenth at the last step "
                            "(default: the preset's cosine, else constant)")
    train.add_argument("--warmup", type=int, default=0, metavar="N",
                       help="linear learning-rate warmup over the first N steps (default 0)")
    train.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                       help="keep an exponential moving average of the generator weights with this decay (e.g. "
                            "0.999), saved in the checkpoint and used by pyface eval and demo (default 0: none)")
    train.add_argument("--sync-bn", action="store_true",
                       help="BatchNorm with the statistics of the whole global batch across processes (the same "
                            "steps as one process; on gloo and NCCL)")
    train.add_argument("--log-dir", default=None, metavar="DIR",
                       help="write metrics.csv (and TensorBoard events when tensorboard is installed) there")
    train.add_argument("--sample-every", type=int, default=0, metavar="N",
                       help="generators: every N steps, sample images of held-out inputs to <log-dir>/samples/")
    train.add_argument("--eval-every", type=int, default=None, metavar="N",
                       help="every N steps, measure the main metric on a small held-out set (the learning curve, "
                            "written to <checkpoint>.curve.json); default: never, or the preset's interval")
    evaluate = commands.add_parser("eval", help="score a trained checkpoint on held-out synthetic data",
                                   description="Scores a `pyface train` checkpoint on held-out synthetic data (seeds "
                                   "no training run uses): every metric with its floor (a trivial baseline), its "
                                   "ceiling (the ground truth scored the same way) and the share of the gap between "
                                   "them the model closed.")
    evaluate.add_argument("model", choices=[*MODELS, "style-aware"],
                          help="the model the checkpoint holds; style-aware: the whole style-aware pipeline "
                               "(style transfer and lip sync), from --checkpoints")
    evaluate.add_argument("--checkpoint", default=None, metavar="FILE", help="a `pyface train` checkpoint")
    evaluate.add_argument("--checkpoints", default=None, metavar="DIR",
                          help="style-aware: the directory of the four stages' checkpoints "
                               "(audio-motion.pt, face-reader.pt, style-mapping.pt, style-generator.pt)")
    evaluate.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON")
    evaluate.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    demo = commands.add_parser("demo", help="animate a face from a recording: an MP4 with its sound",
                                description="Animates a face from a recording with a trained talking-head checkpoint "
                                "and writes an MP4 (H.264 with the recording as AAC sound, 25 fps, as long as the "
                                "recording) or, for a .png path, a grid of the first frames.")
    demo.add_argument("model", choices=["speech-gan", "atvgnet", "style-aware"], help="the model to animate with")
    demo.add_argument("--wav", required=True, metavar="FILE",
                      help="the recording: wav, flac, or any audio or video file with a sound track")
    demo.add_argument("--checkpoint", default=None, metavar="FILE",
                      help="speech-gan, atvgnet: a `pyface train MODEL` checkpoint")
    demo.add_argument("--checkpoints", default=None, metavar="DIR",
                      help="style-aware: the directory of the four stages' checkpoints (audio-motion.pt, "
                           "face-reader.pt, style-mapping.pt, style-generator.pt)")
    demo.add_argument("--style", default=None, metavar="SOURCE",
                      help="style-aware: a video, or a directory of frames, of the character whose speaking style "
                           "the face takes on (default: the neutral style); a video's sound is the manifold "
                           "projection's database")
    demo.add_argument("--out", required=True, metavar="FILE",
                      help="talk.mp4 (the video with its sound) or grid.png (the first frames as an image grid)")
    demo.add_argument("--image", default=None, metavar="FILE",
                      help="the still face, any size (scaled and centre-cropped to the model's frame); "
                           "default: a drawn one")
    demo.add_argument("--max-frames", type=int, default=50, metavar="N",
                      help="frames in a .png grid at most, 25 a second (default 50)")
    return parser


def _run(args) -> int:
    if args.command == "demo":
        from pyface.demo import style_aware_demo, talking_demo

        if args.model == "style-aware":
            if args.checkpoints is None:
                raise UsageError("style-aware needs --checkpoints DIR, the directory of its four stages' checkpoints")
            path = style_aware_demo(args.wav, args.out, args.checkpoints, args.image, args.style, args.max_frames)
        else:
            if args.checkpoint is None:
                raise UsageError(f"{args.model} needs --checkpoint FILE")
            path = talking_demo(args.model, args.wav, args.out, args.checkpoint, args.image, args.max_frames)
        print(f"wrote {path}")
        return 0

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device on this machine")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.command == "train":
        from pyface.train import main_train

        return main_train(args, device)
    if args.command == "eval":
        from pyface.evaluate import main_eval

        return main_eval(args, device)

    from pyface.bench import main_bench

    return main_bench(device, _names(args.ops), args.quick, args.out, _names(args.dtypes), _names(args.models),
                      args.without_extension)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UsageError as error:
        print(f"pyface {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
