"""The README runs as written: every `python` block is a complete program and runs, and every
`pyface ...` command line in it parses with the real command-line parser."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pyface.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def _pyface_commands() -> list[list[str]]:
    """Every `pyface ...` command, also as `torchrun ... -m pyface ...` (lines continued by a
    backslash joined)."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["pyface"]:
                    commands.append(words[1:])
                elif "torchrun" in words and ["-m", "pyface"] in [words[i:i + 2] for i in range(len(words))]:
                    start = next(i for i in range(len(words)) if words[i:i + 2] == ["-m", "pyface"])
                    commands.append(words[start + 2:])
    return commands


def test_readme_has_code():
    assert _blocks("python") and _pyface_commands()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_block_runs(index, tmp_path):
    code = _blocks("python")[index]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, f"README python block {index} failed:\n{code}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("words", _pyface_commands(), ids=" ".join)
def test_pyface_command_parses(words):
    build_parser().parse_args(words)


def test_example_scripts_exist():
    for block in _blocks("bash"):
        for script in re.findall(r"python (examples/\S+\.py)", block):
            assert (README.parent / script).is_file(), script
