"""The MLflow client on the project's store: opened with its schema in place, checked with a
clear error when unreachable, retried while SQLite is locked, and batched writes from plain
tuples (which the job's store proxy relays without importing MLflow in the kernel)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._process import file_lock
from ..config import Settings
from ..errors import StoreUnreachableError

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


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


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
    """An `MlflowClient` on `uri` whose schema exists (mlflow is imported here, not at import)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    # its "Creating initial MLflow database tables..." lines would land in the user's cell
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates or migrates the schema now
    return client


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialize schema creation between processes sharing a new SQLite store."""
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
    except StoreUnreachableError:
        raise
    except Exception as exc:
        raise StoreUnreachableError(settings.tracking_uri, short_reason(exc)) from None
