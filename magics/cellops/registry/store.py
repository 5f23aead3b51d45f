"""Where registry reads and writes go, and the names cellops gives things in the registry.

In a kernel with an open session, every call goes through the session's `Tracker` (its one
writer thread, after the step records queued before it); elsewhere (the CLI, a job process)
through a client of its own. Either way a SQLite "database is locked" is retried, so two
processes promoting at once wait for each other instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .._process import file_lock
from ..config import Settings, load_settings
from ..errors import CellopsUsageError
from ..store.client import retry_when_locked

T = TypeVar("T")

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous_champion"
EVENTS_EXPERIMENT = "cellops-registry-events"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")

# Model version tags cellops writes.
TAG_FLAVOR = "cellops.flavor"
TAG_METRICS = "cellops.metrics"
TAG_LAST_GATE = "cellops.gate.last"
TAG_REPLACED = "cellops.replaced"  # on a champion: the version it replaced when promoted
TAG_PROMOTION = "cellops.promotion"  # promoted | forced


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise CellopsUsageError(
            f"invalid model name {name!r}: use up to 128 letters, digits, '_', '-' or '.', "
            "starting with a letter; for example: fraud_detector"
        )
    return name


def user_name() -> str:
    from ..store.session import user_name as session_user

    return session_user()


class RegistryStore:
    """A registry client and how to call it (inline, or on the session's tracker thread)."""

    def __init__(self, settings: Settings, client: Any = None, tracker: Any = None):
        self.settings = settings
        self._client = client
        self._tracker = tracker

    @property
    def client(self) -> Any:
        if self._tracker is not None:
            return self._tracker.client
        if self._client is None:
            from ..store.client import connect_checked

            self._client = connect_checked(self.settings)
        return self._client

    @property
    def uri(self) -> str:
        return self.settings.tracking_uri

    def call(self, job: Callable[[Any], T]) -> T:
        """Run `job(client)`: on the tracker's thread when there is a session, else here."""
        if self._tracker is not None:
            return self._tracker.call(job)
        return retry_when_locked(lambda: job(self.client))

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialize the compare-and-set of one model's aliases between processes.

        The lock file lives under the project's `.cellops/`, so it serializes every process of
        this machine sharing the project (SQLite store or not). MLflow has no atomic
        compare-and-set on aliases: against a remote server used from several machines, the
        re-read of the alias just before it is set (inside this lock) narrows the window to
        the few milliseconds between that read and the write, and does not close it.
        """
        folder = self.settings.state_dir / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"registry-{_safe(name)}.lock"
        with file_lock(path):
            yield


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def open_store(settings: Settings | None = None, client: Any = None) -> RegistryStore:
    """The registry of the project: the open session's store when there is one."""
    from ..store.session import current_session

    session = current_session()
    if client is not None:
        return RegistryStore(settings or load_settings(), client=client)
    same_store = settings is None or (
        session is not None and settings.tracking_uri == session.settings.tracking_uri
    )
    if session is not None and not session.closed and same_store:
        session.tracker.flush()
        if session.tracker.proxied:  # a job's kernel: its writes are stored once flushed
            return RegistryStore(session.settings)
        return RegistryStore(session.settings, tracker=session.tracker)
    return RegistryStore(settings or load_settings())


def is_missing(exc: BaseException) -> bool:
    """True for MLflow's 'does not exist' errors (a model, version or alias)."""
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version `alias` points at now, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        if is_missing(exc):
            return None
        raise


def require_model(store: RegistryStore, name: str) -> Any:
    """The registered model `name`, or a usage error listing the models that exist."""
    check_model_name(name)

    def read(client: Any) -> tuple[Any, list[str]]:
        try:
            return client.get_registered_model(name), []
        except Exception as exc:
            if not is_missing(exc):
                raise
        return None, sorted(m.name for m in client.search_registered_models(max_results=1000))

    model, names = store.call(read)  # the usage error is raised here, not on the tracker
    if model is not None:
        return model
    known = f"registered models: {', '.join(names)}" if names else "no model is registered yet"
    raise CellopsUsageError(
        f"there is no registered model named {name!r} ({known}); register one first with "
        "cellops.register_model(model, name) or %cellops register VAR --name NAME"
    )


def job_context() -> dict[str, str]:
    """Who and from where: the OS user (or CELLOPS_USER), the job and the session run."""
    from ..store.session import current_session

    context = {"user": user_name(), "job": os.environ.get("CELLOPS_JOB_ID", "")}
    session = current_session()
    if session is not None and not session.closed:
        with contextlib.suppress(Exception):  # the session's store never opened: no link
            context["run"] = session.run.run_id
        context["notebook"] = session.notebook_label
    return context


def project_path(settings: Settings, raw: str | os.PathLike[str]) -> Path:
    path = Path(raw)
    return path if path.is_absolute() else settings.root / path
