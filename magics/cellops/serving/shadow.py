"""The shadow: the challenger predicts a copy of every request, off the answer's path.

The handler answers with the champion, then offers (request id, rows, the champion's
predictions) to a bounded queue and returns; one thread takes them, predicts with the
challenger, logs its predictions with variant "shadow" under the same request id, and counts
how many rows agreed with the champion (classes: equal; numbers: within `RTOL` of each other).
When the queue is full the copy is dropped and counted (`shadow.dropped`): the shadow never
slows the champion's answer, and on a saturated machine it sees less than every request.
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

logger = logging.getLogger("cellops.serving")
RTOL = 1e-3


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
            item = self._queue.get()
            if item is None:
                return
            try:
                self._shadow(*item)
            except Exception as exc:  # never let the thread die
                logger.exception("shadow prediction failed: %s", exc)

    def _shadow(self, current, request_id, ms, batch, champion, slot) -> None:
        started = time.perf_counter()
        try:
            predictions, proba = current.model.predict(batch)
        except Exception:
            self._count("error", slot, (time.perf_counter() - started) * 1000)
            return
        latency = (time.perf_counter() - started) * 1000
        self._count("ok", slot, latency)
        self._count("compare", slot, len(champion), agreeing(np.asarray(predictions), champion))
        self._log.append(
            current.served, Prediction(request_id, ms, latency, batch, predictions, proba)
        )
