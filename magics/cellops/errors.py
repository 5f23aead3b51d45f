"""Named errors. Imports nothing from the package, so every layer can raise them.

A `CellopsUsageError` is a user's mistake: the magics show it as an IPython `UsageError` (no
traceback) and the CLI as a usage error with a non-zero exit code. Its message says what was
wrong and what to type instead.
"""


class CellopsError(Exception):
    """Base class of every error cellops raises on purpose."""


class CellopsUsageError(CellopsError):
    """The user asked for something that cannot be done as asked."""


class StoreUnreachableError(CellopsError):
    """The tracking store cannot be reached; raised before a cell runs."""

    def __init__(self, uri: str, reason: str):
        super().__init__(
            f"cannot reach the tracking store at {uri}: {reason}\n"
            "Check that the store is running, or point cellops elsewhere with "
            "MLFLOW_TRACKING_URI or `tracking_uri` in [tool.cellops]."
        )
        self.uri = uri


class CorruptObjectError(CellopsError):
    """A stored cache object no longer matches its content hash."""


class UnserializableError(CellopsError):
    """A value cannot be stored in the cache."""


class UndigestableError(CellopsError):
    """A value whose content cannot be digested the same way in every process.

    A step reading such a value is run, never restored: a cache key that cannot see the value
    could only give a wrong hit. The message names the value's part and type.
    """
