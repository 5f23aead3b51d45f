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


class DuplicateParameterError(CellopsUsageError):
    """A job parameter given twice (`-p n 5 -p n 6`); the message names it and both values."""


class KernelNotFoundError(CellopsUsageError):
    """The kernel a job asks for (`-k`, or the notebook's kernelspec) is not installed here."""


class ModelFilesMissingError(CellopsError):
    """A registered model version whose files are gone from the artifact store (for example
    `.cellops/artifacts` was deleted): the message names the version, the path, and how to
    get the files back (re-register the model, or restore the folder)."""


class UntrustedObjectError(CorruptObjectError):
    """A cache entry or pickled cache object not signed by this project's key (fetched from a
    DVC remote, or written before cellops signed its cache): refused before it is read, so
    nobody who can write to the remote can run code on this machine; the step runs instead."""

    def __init__(self, what: str, key_file: str, mismatch: bool = False):
        if mismatch:
            how, why = "has a signature that does not match", "signed with another key"
        else:
            how, why = "is not signed by", "or written before cellops signed its cache"
        super().__init__(
            f"{what} {how} this project's key (it may come from a DVC remote, {why}); the step "
            f"runs instead. To trust objects from a teammate, share the key file {key_file} out "
            "of band"
        )
        self.what = what


class StepOutputError(CellopsUsageError):
    """A step's declared output file or folder that cannot be stored as asked: a symlink (or a
    path) leading out of the project, checked after the cell ran; nothing of it is cached."""


class StoreDamagedError(CellopsError):
    """The project's own store existed and is now empty, not a database, or unreadable: it is
    refused, never silently replaced by an empty one (which would drop the history)."""

    def __init__(self, path: str, reason: str, advice: str):
        super().__init__(f"refusing to open the tracking store {path}: {reason}\n{advice}")
        self.path = path


class StoreFullError(CellopsError):
    """A write to a local store failed because the disk holding it is full."""

    def __init__(self, path: str, reason: str):
        import os.path
        import shlex

        folder = shlex.quote(os.path.dirname(path) or ".")
        super().__init__(
            f"cannot write to the tracking store: the disk holding {path} is full ({reason})\n"
            f"Free space on that disk (`df -h {folder}` shows what is left), then try again."
        )
        self.path = path


class StoreWriteError(CellopsError):
    """Records that did not reach the store (reported by `%cellops flush`): which write, why."""


class UiTargetError(CellopsUsageError):
    """`cellops ui TARGET` names nothing the store holds (an unknown run id, a notebook with no
    runs yet, an unknown model or version): the message says what to type instead."""


class UiServerError(CellopsError):
    """`cellops ui` could not start MLflow's UI (it exited, or never answered): the message
    holds the end of its log."""


class NoServedTrafficError(CellopsUsageError):
    """No served predictions to check: no prediction log for the model at all, or none of the
    version asked for inside the window (the message says how many rows the log holds, the
    latest timestamp, and how to widen the window)."""


class NotEnoughLabelsError(CellopsError):
    """A performance check of served traffic with fewer labelled rows than `--min-labels`:
    no verdict; the message says how many labels there are and how to send more."""

    def __init__(self, message: str, labels: int, needed: int):
        super().__init__(message)
        self.labels, self.needed = labels, needed


class AliasNotFoundError(CellopsUsageError):
    """`cellops serve NAME --alias A` where model NAME has no alias A: nothing is started; the
    message names the aliases the model has (or how to give it a champion)."""


class PortInUseError(CellopsUsageError):
    """`cellops serve --port P` where something already listens on P: the message says which
    address, and to pick another port with --port."""


class ServeRequestError(CellopsUsageError):
    """A request the model server refuses (not JSON, over the size limit, a missing, extra or
    wrongly typed column): answered with `status` and a JSON body naming the column or limit;
    the server goes on serving."""

    def __init__(self, message: str, status: int = 400, **details: object):
        super().__init__(message)
        self.status, self.details = status, details


class RolloutError(CellopsUsageError):
    """A rollout asked for what cannot be done: no @challenger, a challenger whose signature
    differs from the champion's (the message names the columns), `--widen` below the current
    share or above 100, a rule naming an unknown metric; nothing changes."""


class RolloutConflictError(CellopsError):
    """A second rollout while one runs, or the rollout's state changed between reading and
    writing it (another command or a server's automatic decision won the compare-and-set)."""


class ExportError(CellopsUsageError):
    """`cellops export docker|kserve` cannot write what was asked: no such version, no recorded
    requirements, an output folder that holds other files; the message says what to do."""


class FeedbackError(CellopsUsageError):
    """Labels that cannot be joined to served predictions: a request id never served (or a
    row it did not have), or a label whose type is not the prediction's. Nothing is written."""
