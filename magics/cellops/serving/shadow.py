"""The shadow: the challenger predicts a copy of every request, off the answer's path.

The handler answers with the champion, then offers (request id, rows, the champion's
predictions) to a bounded queue and returns; one thread takes them, predicts with the
challenger, logs its predictions with variant "shadow" under the same request id, and counts
how many rows agreed with the champion (classes: equal; numbers: within `RTOL` of each other).
When the queue is full the copy is dropped and counted (`shadow.dropped`): the shadow never
slows the champion's answer, and on a saturated machine it sees less than every request.

The thread waits up to `LINGER_SECONDS` for more copies and predicts those of one version in
one call (as the server's micro-batching does): most of a scikit-learn `predict` on a few rows
is its input checks, paid once per call, so one call per batch keeps the shadow's CPU, and the
GIL time it takes from the answering loop, small.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .log import Prediction
from .schema import Batch

logger = logging.getLogger("cellops.serving")
RTOL = 1e-3
LINGER_SECONDS = 0.02  # how long the thread gathers copies before predicting them together
MAX_ROWS = 1024  # at most this many rows in one shadow call


def agreeing(ours: np.ndarray, theirs: np.ndarray) -> int:
    """How many rows of two predictions agree."""
    if ours.shape != theirs.shape:
        return 0
    if ours.dtype.kind in "fc" or theirs.dtype.kind in "fc":
        try:
            return int(np.isclose(ours.astype(float), theirs.astype(float), rtol=RTOL).sum())
        except (TypeError, ValueError):
            pass
    return (
        int((ours == theirs).sum()) if ours.ndim == 1 else int((ours == theirs).all(axis=1).sum())
    )


class ShadowRunner:
    """One thread running the challenger on copies of the answered requests."""

    def __init__(self, size: int, log: Any, count: Callable[..., None]):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._log, self._count = log, count
        self._thread = threading.Thread(target=self._run, name="cellops-shadow", daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def offer(self, current: Any, request_id: str, ms: int, batch: Any, champion: np.ndarray,
              slot: tuple[int, int]) -> bool:  # fmt: skip
        """Queue a copy; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait((current, request_id, ms, batch, champion, slot))
            return True
        except queue.Full:
            self._count("drop", slot)
            return False

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            items = self._gather()
            if items is None:
                return
            groups: dict[int, list[tuple]] = {}
            for item in items:
                groups.setdefault(id(item[0]), []).append(item)
            for group in groups.values():
                try:
                    self._shadow(group)
                except Exception as exc:  # never let the thread die
                    logger.exception("shadow prediction failed: %s", exc)

    def _gather(self) -> list[tuple] | None:
        """The next copies: the first one waited for, then whatever arrives within
        `LINGER_SECONDS` (up to `MAX_ROWS` rows); None when stopped."""
        first = self._queue.get()
        if first is None:
            return None
        items, rows = [first], first[3].rows
        deadline = time.monotonic() + LINGER_SECONDS
        while rows < MAX_ROWS:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._stop.set()
                break
            items.append(item)
            rows += item[3].rows
        return items

    def _shadow(self, items: list[tuple]) -> None:
        """Predict the copies of one version in one call when they stack (one by one else)."""
        current = items[0][0]
        started = time.perf_counter()
        batches = [item[3] for item in items]
        if len(items) > 1 and all(b.matrix is not None for b in batches):
            stacked = Batch(sum(b.rows for b in batches), batches[0].names,
                            matrix=np.vstack([b.matrix for b in batches]))  # fmt: skip
            try:
                predictions, proba = current.model.predict(stacked)
            except Exception:
                pass  # again one by one: only the copies that fail count as errors
            else:
                latency = (time.perf_counter() - started) * 1000
                start = 0
                for item in items:
                    n = item[3].rows
                    part = None if proba is None else proba[start : start + n]
                    self._record(item, latency, predictions[start : start + n], part)
                    start += n
                return
        for item in items:
            self._shadow_one(item)

    def _shadow_one(self, item: tuple) -> None:
        current, batch, slot = item[0], item[3], item[5]
        started = time.perf_counter()
        try:
            predictions, proba = current.model.predict(batch)
        except Exception:
            self._count("error", slot, (time.perf_counter() - started) * 1000)
            return
        self._record(item, (time.perf_counter() - started) * 1000, predictions, proba)

    def _record(self, item: tuple, latency: float, predictions: Any, proba: Any) -> None:
        current, request_id, ms, batch, champion, slot = item
        self._count("ok", slot, latency)
        self._count("compare", slot, len(champion), agreeing(np.asarray(predictions), champion))
        self._log.append(
            current.served, Prediction(request_id, ms, latency, batch, predictions, proba)
        )
