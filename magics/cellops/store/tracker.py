"""Every MLflow write cellops makes goes through one `Tracker`: a single background thread.

Why a thread: a step's bookkeeping (create a run, log params, metrics, tags and two small
artifacts, end the run) costs 50-90 ms on SQLite, and the user should not wait for it after
every cell. The writes stay in order on one thread, `flush()` waits for them before anything
reads the store back, and the session flushes when the kernel exits. A write that fails is
kept, and the next step refuses to run until the store answers again (once, for a full disk),
and `%cellops flush` names every write that failed and why, so nothing is silently lost.
MLflow's own async logging is no shortcut: its `end_run` waits about a second.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config import Settings
from ..errors import CellopsError, StoreFullError
from .client import (
    check_http,
    is_disk_full,
    local_store_path,
    open_client,
    retry_when_locked,
    short_reason,
    store_error,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class FailedWrite:
    """A write that did not reach the store: what it was (`step 'x': creating its run`), why."""

    what: str
    reason: str


# what each queued job writes, by the name of its function
_WRITES = {
    "create": "creating its run",
    "finish": "writing its params, metrics, tags and artifacts",
    "save": "saving its cache entry",
    "add_run_id": "noting its run id",
    "log_files": "logging its data files",
    "_open_run": "opening the session run",
    "write": "logging the notebook's parameters",
    "end": "ending the session run",
}


class Tracker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.uri = settings.tracking_uri
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellops-tracker")
        self._client: Any = None
        self._failure: BaseException | None = None
        self._failures: list[tuple[FailedWrite, BaseException]] = []
        self._failures_lock = threading.Lock()  # appended on the writer, taken by the caller
        self._steps: weakref.WeakKeyDictionary[Future[Any], str] = weakref.WeakKeyDictionary()
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
        step, what = self._describe(job, args)
        future = self._queue(job, f"step '{step}': {what}" if step else what, args)
        if step and getattr(job, "__name__", "") == "create":
            self._steps[future] = step  # the step's run: its later writes name the step
        return future

    def _queue(self, job: Callable[..., T], what: str | None, args: tuple[Any, ...]) -> Future[T]:
        try:
            return self._executor.submit(self._run, job, what, *args)
        except RuntimeError:  # the executor is shut down: nothing is pending any more
            future: Future[T] = Future()
            try:
                future.set_result(self._run(job, what, *args))
            except BaseException as exc:
                future.set_exception(exc)
            return future

    def call(self, job: Callable[..., T], *args: Any) -> T:
        """Run `job` on the writer thread and wait for its result."""
        return self.submit(job, *args).result()

    def _run(self, job: Callable[..., T], what: str | None, *args: Any) -> T:
        try:
            return retry_when_locked(lambda: job(self.client, *args))
        except Exception as exc:
            self._failure = exc
            if what is not None:
                self._record_failure(what, exc)
            raise

    def _record_failure(self, what: str, exc: BaseException) -> None:
        with self._failures_lock:
            repeated = any(exc is earlier for _, earlier in self._failures)
        if repeated:
            reason = "not written, as an earlier write it needs failed"
        else:
            reason = self.failure_reason(exc)
            if not isinstance(exc, CellopsError):  # a named error is said at the next step
                log.error("cellops could not write to %s (%s): %s", self.uri, what, reason)
        with self._failures_lock:
            self._failures.append((FailedWrite(what, reason), exc))

    def failure_reason(self, exc: BaseException) -> str:
        """Why a write failed, in one line: the real cause, and a full disk as that."""
        error = store_error(self.uri, exc)
        if isinstance(error, StoreFullError):
            return f"the disk holding {error.path} is full ({short_reason(exc)})"
        return str(exc).splitlines()[0] if error is exc else short_reason(exc)

    def take_failures(self) -> list[FailedWrite]:
        """The writes that failed since the last call, oldest first."""
        with self._failures_lock:
            taken, self._failures = self._failures, []
        return [failure for failure, _ in taken]

    def _describe(self, job: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str | None, str]:
        """The step a queued job writes for (or None) and what it writes, for the report of the
        writes that failed: the kind of write by its function's name; the step from the name a
        step run's `create` closes over, or from the run future another job closes over or is
        given (`run_future.result` names its future too)."""
        name = getattr(job, "__name__", type(job).__name__)
        scope = _closure(job)
        step = scope.get("name") if name == "create" else None
        for value in (*scope.values(), *args):
            future = getattr(value, "__self__", value)
            if step is None and isinstance(future, Future):
                step = self._steps.get(future)
        return (step if isinstance(step, str) else None), _WRITES.get(name, name)

    def flush(self, timeout: float | None = None) -> None:
        try:
            marker = self._executor.submit(lambda: None)
        except RuntimeError:  # shut down, so its queue is already drained
            return
        marker.result(timeout)

    def ensure_reachable(self) -> None:
        """Raise a named error unless the store answers; called before a cell runs. After a
        write failed on a full disk, the next step is refused once: a read would pass, and the
        step's records would be lost as well."""
        failure, self._failure = self._failure, None
        if failure is not None:
            if local_store_path(self.uri) is not None and is_disk_full(failure):
                raise store_error(self.uri, failure) from None
            probe = self._queue(lambda client: client.search_experiments(max_results=1), None, ())
            try:
                probe.result()
            except Exception as exc:
                raise store_error(self.uri, exc) from None
            return
        if self.uri.startswith(("http://", "https://")):
            check_http(self.uri)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _closure(job: Callable[..., Any]) -> dict[str, Any]:
    """The variables a function closes over (empty for other callables)."""
    code, cells = getattr(job, "__code__", None), getattr(job, "__closure__", None) or ()
    scope = {}
    for name, cell in zip(getattr(code, "co_freevars", ()), cells, strict=False):
        try:
            scope[name] = cell.cell_contents
        except ValueError:  # not bound yet
            continue
    return scope
