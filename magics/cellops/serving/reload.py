"""What a worker serves, and hot reload: poll the alias, load and warm the new version beside the
old one, then swap.

MLflow's webhooks do not fire on a SQL store, so the alias is polled every `poll_seconds`
(on the project's SQLite store a sub-millisecond read, see `source`). The swap is one attribute
assignment (`Serving.current`): a request reads it once when it starts and finishes on the
version it read, so requests in flight end on the old version and none fails. A version that
fails to load is retried after a back-off while the old one keeps serving; a store that stops
answering leaves the loaded version serving and `/ready` saying so.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CellopsError
from .log import Served
from .model import ServedModel
from .source import AliasReader, VersionRef

logger = logging.getLogger("cellops.serving")
RETRY_FAILED_SECONDS = 30.0


@dataclass(frozen=True)
class Current:
    """The served version with what requests need of it, swapped as one object."""

    model: ServedModel
    served: Served  # what the log writes
    key: tuple[str, str, str]  # the metrics' (model, version, variant)
    since: str


def current_of(model: ServedModel, variant: str) -> Current:
    schema = model.schema
    columns = tuple((c.name, c.type) for c in schema.columns) if schema is not None else ()
    classes = tuple(model.classes) if model.classes is not None else None
    served = Served(model.version, variant, columns, classes)
    return Current(model, served, (model.name, model.version, variant), _now())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Serving:
    """One worker's serving state: the current version and what is known of the store."""

    reader: AliasReader
    variant: str = "champion"
    current: Current | None = None
    store_error: str | None = None
    checked: str | None = None
    reload_error: str | None = None
    swaps: list[tuple[str, str, str]] = field(default_factory=list)  # (at, from, to)
    on_swap: Callable[[Current | None, Current], None] | None = None

    def swap(self, model: ServedModel) -> Current:
        old, new = self.current, current_of(model, self.variant)
        self.current = new  # the swap: one assignment
        self.swaps.append((new.since, old.model.version if old else "", model.version))
        if self.on_swap is not None:
            self.on_swap(old, new)
        return new


class Reloader:
    """The polling thread of one worker."""

    def __init__(
        self, serving: Serving, interval: float, load: Callable[[VersionRef], ServedModel]
    ):
        self.serving, self.interval, self._load = serving, interval, load
        self._stop = threading.Event()
        self._failed: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="cellops-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # never let the thread die: the next poll tries again
                logger.exception("alias poll failed: %s", exc)

    def check(self) -> bool:
        """Poll once; True when a new version was swapped in."""
        serving = self.serving
        try:
            ref = serving.reader.resolve()
        except CellopsError as exc:
            serving.store_error = str(exc).splitlines()[0]
            return False
        serving.store_error, serving.checked = None, _now()
        current = serving.current
        if current is not None and ref.version == current.model.version:
            return False
        if self._failed.get(ref.version, 0) > time.monotonic():
            return False
        try:
            model = self._load(ref)
        except Exception as exc:
            self._failed[ref.version] = time.monotonic() + RETRY_FAILED_SECONDS
            serving.reload_error = f"cannot load {ref.name} v{ref.version}: {exc}"
            logger.error("%s; still serving v%s", serving.reload_error, _version(current))
            return False
        serving.reload_error = None
        serving.swap(model)
        logger.warning(
            "%s moved: now serving %s v%s (was v%s)", ref.uri, ref.name, ref.version,
            _version(current),
        )  # fmt: skip
        return True


def _version(current: Any) -> str:
    return current.model.version if current is not None else "-"
