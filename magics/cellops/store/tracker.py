"""Every MLflow write cellops makes goes through one `Tracker`: a single background thread.

Why a thread: a step's bookkeeping (create a run, log params, metrics, tags and two small
artifacts, end the run) costs 50-90 ms on SQLite, and the user should not wait for it after
every cell. The writes stay in order on one thread, `flush()` waits for them before anything
reads the store back, and the session flushes when the kernel exits. A write that fails is
kept, and the next step refuses to run until the store answers again, so nothing is silently
lost. MLflow's own async logging is no shortcut: its `end_run` waits about a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ..config import Settings
from ..errors import StoreUnreachableError
from .client import check_http, open_client, retry_when_locked, short_reason

log = logging.getLogger(__name__)
T = TypeVar("T")


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
                from .proxy import client_from_environment

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
                raise StoreUnreachableError(self.uri, short_reason(exc)) from None
            return
        if self.uri.startswith(("http://", "https://")):
            check_http(self.uri)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
