"""The `pyface` command's manners: a usage mistake is one line on stderr and exit code 2, the
help lists the valid names, every flag says what it does."""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyface.bench import DTYPES, OP_NAMES, model_names
from pyface.cli import build_parser, main
from pyface.train import train


def _usage_error(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"pyface {argv[0]}: error: ") and expected in err, err


@pytest.mark.parametrize("argv,expected", [
    (["bench", "--dtypes", "float8"], "unknown dtypes float8; valid dtypes: float32, bfloat16"),
    (["bench", "--ops", "softmax_pool,warp"], "unknown ops warp; valid ops: weighted_l1_loss"),
    (["bench", "--models", "gan"], "unknown models gan; valid models: glamornet"),
    (["train", "glamor", "--steps", "1"], "pass one data source: --synthetic"),
    (["train", "glamor", "--synthetic", "--steps", "0"], "--steps must be at least 1"),
    (["train", "glamor", "--synthetic", "--resume"], "--resume needs --checkpoint"),
    (["train", "glamor", "--synthetic", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "glamor", "--synthetic", "--device", "cpu", "--backend", "cuda"], "--backend cuda cannot run on cpu"),
    (["demo", "speech-gan", "--wav", "a.wav", "--checkpoint", "c.pt", "--out", "/tmp/x.png", "--max-frames", "0"],
     "--max-frames must be"),
    (["train", "glamor", "--synthetic", "--resume", "--checkpoint", "/nonexistent/c.pt"], "no checkpoint file"),
    (["demo", "speech-gan", "--wav", "a.wav", "--checkpoint", "/nonexistent/c.pt", "--out", "/tmp/x.png"],
     "no checkpoint file"),
])
def test_usage_errors_are_one_line(capsys, argv, expected):
    _usage_error(capsys, argv, expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", [["bench"], ["train", "glamor", "--synthetic"]])
def test_cuda_without_a_gpu(capsys, command):
    _usage_error(capsys, [*command, "--device", "cuda"], "torch sees no CUDA device")


def test_a_checkpoint_of_another_model(capsys, tmp_path):
    checkpoint = tmp_path / "glamor.pt"
    train("glamor", 1, "cpu", batch_size=2, checkpoint=str(checkpoint), progress=False, log=lambda line: None)
    _usage_error(capsys, ["demo", "speech-gan", "--wav", "x.wav", "--out", str(tmp_path / "x.png"),
                          "--checkpoint", str(checkpoint)], "holds a glamor checkpoint, not a speech-gan one")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    _usage_error(capsys, ["train", "glamor", "--synthetic", "--resume", "--checkpoint", str(garbage)],
                 "cannot read")


def test_help_lists_valid_names(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    assert all(name in text for name in (*OP_NAMES, *model_names(), *DTYPES))


def test_every_flag_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"pyface {name} {action.option_strings or action.dest} has no help"


@pytest.mark.slow
def test_bench_from_a_source_tree_without_the_extension(tmp_path):
    """`python -m pyface bench` run where ./pyface is a source tree without a built _C (as in
    a clone after a non-editable install) refuses, and says why and what to do."""
    source = Path(__file__).resolve().parent.parent
    shutil.copytree(source / "pyface", tmp_path / "pyface", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    (tmp_path / "csrc").mkdir()
    shutil.copy(source / "pyproject.toml", tmp_path)
    # as without an editable install: no import hook maps `pyface` to the built checkout
    run_from_cwd = ("import runpy, sys; sys.path.insert(0, ''); "
                    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]; "
                    "sys.argv = ['pyface', 'bench', '--quick', '--ops', 'softmax_pool']; "
                    "runpy.run_module('pyface', run_name='__main__', alter_sys=True)")
    result = subprocess.run([sys.executable, "-c", run_from_cwd], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "circular import" not in result.stderr
    assert "imported from its source tree" in result.stderr and "Run pyface from another directory" in result.stderr
    assert "--without-extension" in result.stderr
