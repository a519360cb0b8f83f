"""The error a command raises for a mistake in what it was asked to do (a bad name, a missing
file, a device this machine lacks): `pyface` prints it as one line and exits with 2. It is a
ValueError, so library callers can catch it as one."""


class UsageError(ValueError):
    pass
