"""The MLflow client on the project's store: opened with its schema in place (the project's own
store checked and its locations repaired first, see `embedded`), failures reported by their real
cause (`store_error`), retried while SQLite is locked, and batched writes from plain tuples
(which the job's store proxy relays without importing MLflow in the kernel)."""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._process import file_lock
from ..config import Settings
from ..errors import CellopsError, StoreFullError, StoreUnreachableError
from . import embedded

T = TypeVar("T")

_LOCK_RETRY_SECONDS = 60.0


def retry_when_locked(call: Callable[[], T]) -> T:
    """`call()`, retried for up to a minute while SQLite says "database is locked" (another
    process is writing the same store)."""
    deadline = time.monotonic() + _LOCK_RETRY_SECONDS
    while True:
        try:
            return call()
        except Exception as exc:
            if "database is locked" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise


def short_reason(exc: BaseException | str) -> str:
    """The real cause of `exc` in one line: the database's own words ("database or disk is
    full"), not SQLAlchemy's note ("(raised as a result of Query-invoked autoflush ...") nor
    MLflow's wrapper. The cause is the innermost driver error of the exception chain or, for
    an error relayed by the job's store proxy (which loses the chain), the one named in the
    text SQLAlchemy formats ("(sqlite3.OperationalError) database or disk is full")."""
    if not isinstance(exc, BaseException):
        return _first_line(str(exc)) or "unknown reason"
    chain = _chain(exc)
    for cause in reversed(chain):
        if type(cause).__module__ == "sqlite3":
            return _first_line(str(cause)) or type(cause).__name__
    for cause in reversed(chain):
        found = _DRIVER_ERROR.search(str(cause))
        if found:
            return found.group(1).strip()[:300]
    return _first_line(str(chain[-1])) or type(chain[-1]).__name__


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not _NOTE.match(line)] or lines
    return lines[0][:300] if lines else ""


# "(sqlite3.OperationalError) database or disk is full", as SQLAlchemy formats a driver error
_DRIVER_ERROR = re.compile(r"\((?:\w+\.)+\w*(?:Error|Exception)\) ([^\n]+)")
_NOTE = re.compile(r"^\((?:raised as a result of|Background on this error)")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what it wraps (SQLAlchemy's `orig`, `__cause__`, `__context__`), innermost
    last."""
    chain = [exc]
    while len(chain) < 20:
        current = chain[-1]
        inner = getattr(current, "orig", None)
        if not isinstance(inner, BaseException):
            inner = current.__cause__ or (
                None if current.__suppress_context__ else current.__context__
            )
        if inner is None or inner in chain:
            break
        chain.append(inner)
    return chain


def is_disk_full(exc: BaseException) -> bool:
    """Whether a write failed because a disk is full (SQLite's SQLITE_FULL, or ENOSPC)."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(cause)
        if "database or disk is full" in text or "No space left on device" in text:
            return True
    return False


def local_store_path(uri: str) -> str | None:
    """The file (or folder) of a store on this machine, or None for a server."""
    if uri.startswith("sqlite:///"):
        return uri[len("sqlite:///") :]
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri if uri.startswith("/") else None


def store_error(uri: str, exc: BaseException) -> CellopsError:
    """The named error for a store operation that failed: a cellops error as it is; a full
    disk under a local store as that (naming the disk's file); anything else as unreachable,
    with the real cause."""
    from .proxy import RemoteStoreError  # an error the job's proxy could not rebuild

    if isinstance(exc, CellopsError) and not isinstance(exc, RemoteStoreError):
        return exc
    reason = short_reason(exc)
    path = local_store_path(uri)
    if path is not None and is_disk_full(exc):
        written = next(
            (c.filename for c in _chain(exc) if isinstance(c, OSError) and c.filename), None
        )
        return StoreFullError(str(written or path), reason)
    return StoreUnreachableError(uri, reason)


def check_http(uri: str) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
            if response.status >= 500:
                raise StoreUnreachableError(uri, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise StoreUnreachableError(uri, f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StoreUnreachableError(uri, short_reason(getattr(exc, "reason", exc))) from None


def log_batch(
    client: Any,
    run_id: str,
    metrics: Sequence[tuple[str, float, int, int]] = (),
    params: Sequence[tuple[str, str]] = (),
    tags: Sequence[tuple[str, str]] = (),
) -> None:
    """`client.log_batch` from plain tuples: (key, value, timestamp_ms, step), (key, value).

    A job's proxied client builds the MLflow entities in the job process, so the kernel never
    imports them."""
    if getattr(client, "proxied", False):
        client.log_batch_plain(run_id, metrics, params, tags)
        return
    from mlflow.entities import Metric, Param, RunTag

    client.log_batch(
        run_id,
        metrics=[Metric(k, v, t, s) for k, v, t, s in metrics],
        params=[Param(k, v) for k, v in params],
        tags=[RunTag(k, v) for k, v in tags],
    )


def open_client(uri: str) -> Any:
    """An `MlflowClient` on `uri` whose schema exists (mlflow is imported here, not at import).

    The project's own store is checked first and refused if damaged (StoreDamagedError), and
    repaired if the project was moved or copied (`embedded.prepare`)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    # its "Creating initial MLflow database tables..." lines would land in the user's cell
    db_log = logging.getLogger("mlflow.store.db.utils")
    db_log.setLevel(logging.WARNING)
    if _quiet_database_errors not in db_log.filters:
        db_log.addFilter(_quiet_database_errors)
    with _store_lock(uri):
        own = embedded.prepare(uri)
        try:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # creates or migrates the schema now
        except Exception as exc:
            damage = embedded.damage_of(uri, exc)
            if damage is not None:
                raise damage from None
            raise
        if own is not None:
            embedded.remember(own)
    return client


def _quiet_database_errors(record: logging.LogRecord) -> bool:
    """Drop MLflow's traceback of each failed SQL statement (a full disk, and every "database
    is locked" that cellops retries): cellops names the failed write and its cause itself."""
    return not str(record.msg).startswith("SQLAlchemy database error")


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialize schema creation and repairs between processes sharing a SQLite store."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with file_lock(Path(uri[len("sqlite:///") :] + ".lock")):
        yield


def connect_checked(settings: Settings) -> Any:
    """An MlflowClient for a one-off reader (the CLI), with a clear error if unreachable."""
    try:
        if settings.tracking_uri.startswith(("http://", "https://")):
            check_http(settings.tracking_uri)
        return open_client(settings.tracking_uri)
    except Exception as exc:
        raise store_error(settings.tracking_uri, exc) from None
