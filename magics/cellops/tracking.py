"""Every MLflow write cellops makes goes through one `Tracker`: a single background thread.

Why a thread: a step's bookkeeping (create a run, log params, metrics, tags and two small
artifacts, end the run) costs 50-90 ms on SQLite, and the user should not wait for it after
every cell. The writes stay in order on one thread, `flush()` waits for them before anything
reads the store back, and the session flushes when the kernel exits. A write that fails is
kept, and the next step refuses to run until the store answers again, so nothing is silently
lost. MLflow's own async logging is no shortcut: its `end_run` waits about a second.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ._process import file_lock
from .config import Settings
from .errors import StoreUnreachableError

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOCK_RETRY_SECONDS = 60.0


class Tracker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.uri = settings.tracking_uri
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellops-tracker")
        self._client: Any = None
        self._failure: BaseException | None = None
        self._client_lock = threading.Lock()

    # -- the client ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """An `MlflowClient` on the project's store (mlflow is imported here, not at import),
        or in a `cellops run` job the job process's client, through `store_proxy`."""
        with self._client_lock:
            if self._client is None:
                from .store_proxy import client_from_environment

                self._client = client_from_environment(self.uri) or open_client(self.uri)
            return self._client

    @property
    def proxied(self) -> bool:
        """True when the writes go through a job process (registry calls then go direct)."""
        return bool(getattr(self.client, "proxied", False))

    # -- background writes --------------------------------------------------------------------

    def submit(self, job: Callable[..., T], *args: Any) -> Future[T]:
        """Run `job(client, *args)` on the writer thread, after every job submitted before.

        At interpreter exit concurrent.futures stops the writer (after it has drained its queue)
        before `atexit` callbacks run, so the job that ends the session run runs here instead.
        """
        try:
            return self._executor.submit(self._run, job, *args)
        except RuntimeError:  # the executor is shut down: nothing is pending any more
            future: Future[T] = Future()
            try:
                future.set_result(self._run(job, *args))
            except BaseException as exc:
                future.set_exception(exc)
            return future

    def call(self, job: Callable[..., T], *args: Any) -> T:
        """Run `job` on the writer thread and wait for its result."""
        return self.submit(job, *args).result()

    def _run(self, job: Callable[..., T], *args: Any) -> T:
        try:
            return retry_when_locked(lambda: job(self.client, *args))
        except Exception as exc:
            self._failure = exc
            log.error("cellops could not write to %s: %s", self.uri, exc)
            raise

    def flush(self, timeout: float | None = None) -> None:
        try:
            marker = self._executor.submit(lambda: None)
        except RuntimeError:  # shut down, so its queue is already drained
            return
        marker.result(timeout)

    def ensure_reachable(self) -> None:
        """Raise StoreUnreachableError unless the store answers; called before a cell runs."""
        if self._failure is not None:
            self._failure = None
            try:
                self.call(lambda client: client.search_experiments(max_results=1))
            except Exception as exc:
                raise StoreUnreachableError(self.uri, _reason(exc)) from None
            return
        if self.uri.startswith(("http://", "https://")):
            _check_http(self.uri)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


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


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _check_http(uri: str) -> None:
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
        raise StoreUnreachableError(uri, _reason(getattr(exc, "reason", exc))) from None


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
            _check_http(settings.tracking_uri)
        return open_client(settings.tracking_uri)
    except StoreUnreachableError:
        raise
    except Exception as exc:
        raise StoreUnreachableError(settings.tracking_uri, _reason(exc)) from None
