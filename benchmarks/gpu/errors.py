"""Which errors raised inside pyface's C++ come back to Python as exceptions, and which kill
the process. On the H200 machine (torch 2.11) an out-of-range label on a CUDA tensor crashed
the process (SIGSEGV) where a ValueError is due. Each case runs in its own process, so one
crash costs only its own line:

    python benchmarks/gpu/errors.py            # every case that this machine can run
"""
import subprocess
import sys

import torch

CASES = {
    # a TORCH_CHECK_VALUE in C++ host code, the op called directly (no autograd, no Python check)
    "cpu-direct": "torch.ops.pyface.weighted_l1_loss_forward(x, t, None, None, None, 7, False, False)",
    # thrown inside the CPU kernel's at::parallel_for, through the Python-registered autograd
    "cpu-labels": "pyface.ops.weighted_l1_loss(x, t, labels=labels, class_weights=cw, backend='cpu')",
    "cuda-direct": "torch.ops.pyface.weighted_l1_loss_forward(x.cuda(), t.cuda(), None, None, None, 7, False, False)",
    # thrown by the host-side label check after a device reduction, through the autograd
    "cuda-labels": "pyface.ops.weighted_l1_loss(x.cuda(), t.cuda(), labels=labels.cuda(), "
                   "class_weights=cw.cuda(), backend='cuda')",
    "cuda-labels-no-grad": "pyface.ops.weighted_l1_loss(x.cuda().detach(), t.cuda(), labels=labels.cuda(), "
                           "class_weights=cw.cuda(), reduction='none', backend='cuda')",
}

SETUP = """
import faulthandler, torch, pyface
faulthandler.enable()
x = torch.randn(3, 4, 6, 6, requires_grad=True)
t = torch.randn(3, 4, 6, 6)
labels = torch.randint(0, 6, (3, 6, 6))
labels[1, 2, 3] = 6
cw = torch.rand(6)
try:
    {call}
    print("no error raised")
except Exception as error:
    print("raised", type(error).__name__ + ":", str(error).splitlines()[0][:100])
"""


def main() -> int:
    names = [n for n in CASES if torch.cuda.is_available() or not n.startswith("cuda")]
    crashed = 0
    for name in names:
        run = subprocess.run([sys.executable, "-c", SETUP.format(call=CASES[name])], capture_output=True, text=True,
                             timeout=120)
        if run.returncode < 0 or (run.returncode and not run.stdout):
            crashed += 1
            where = [line for line in run.stderr.splitlines() if line.strip().startswith("File")][:4]
            print(f"{name:20s} CRASHED (exit {run.returncode})", *where, sep="\n    ")
        else:
            print(f"{name:20s} {run.stdout.strip()}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
