"""pytest-benchmark's tables, narrowed to what compares implementations and sorted by name,
unless the command line names its own columns or sort order."""


def _given(config, option: str) -> bool:
    return any(arg == option or arg.startswith(option + "=") for arg in config.invocation_params.args)


def pytest_configure(config):
    if not hasattr(config.option, "benchmark_columns"):
        return  # pytest-benchmark is not installed
    if not _given(config, "--benchmark-columns"):
        config.option.benchmark_columns = ["median", "iqr", "min", "rounds"]
    if not _given(config, "--benchmark-sort"):
        config.option.benchmark_sort = "name"
