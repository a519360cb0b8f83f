import os

import torch

# Without a GPU, Triton kernels run in Triton's interpreter; it must be chosen before triton is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402

# The property tests (tests/test_properties.py): a fixed, small set of examples in every run
# (CI included), many fresh ones under `pytest -m fuzz`. Examples vary in size, so no deadline.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=12, derandomize=True, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("fuzz", max_examples=300, deadline=None, suppress_health_check=_QUIET, print_blob=True)


def pytest_configure(config):
    settings.load_profile("fuzz" if (config.getoption("markexpr") or "").strip() == "fuzz" else "ci")
