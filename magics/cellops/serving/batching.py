"""Micro-batching: requests that arrive together are predicted in one call.

A scikit-learn `predict` on one row spends most of its time checking its input, not computing;
requests whose rows reach the event loop in the same turn are stacked into one matrix, predicted
once and split again. Nothing waits for a batch to fill: the batch is whatever is queued when
the loop comes round (`call_soon`), so a lone request is answered as fast as without batching.
Only the matrix path is batched (rows of one served version, all numbers); a failing batch is
predicted again request by request, so a bad request fails alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from .model import ServedModel
from .schema import Batch

MAX_BATCH_ROWS = 256  # a request this large is predicted alone, off the event loop


class MicroBatcher:
    def __init__(self) -> None:
        self._queue: list[tuple[ServedModel, Batch, asyncio.Future]] = []
        self._scheduled = False
        self.calls = 0  # predict calls made, for the benchmark's report
        self.requests = 0

    async def predict(self, model: ServedModel, batch: Batch) -> tuple[np.ndarray, Any]:
        if batch.rows > MAX_BATCH_ROWS:
            return await asyncio.to_thread(model.predict, batch)
        if not model.matrix or batch.matrix is None:
            self.calls += 1
            self.requests += 1
            return model.predict(batch)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((model, batch, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        queue, self._queue, self._scheduled = self._queue, [], False
        groups: dict[int, list[tuple[ServedModel, Batch, asyncio.Future]]] = {}
        for item in queue:
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            self._predict_group(items)

    def _predict_group(self, items: list[tuple[ServedModel, Batch, asyncio.Future]]) -> None:
        model = items[0][0]
        self.requests += len(items)
        if len(items) > 1:
            rows = [batch.rows for _, batch, _ in items]
            stacked = Batch(
                sum(rows), items[0][1].names, matrix=np.vstack([b.matrix for _, b, _ in items])
            )
            self.calls += 1
            try:
                predictions, proba = model.predict(stacked)
            except Exception:
                pass  # again one by one: only the bad request fails
            else:
                start = 0
                for (_, _, future), n in zip(items, rows, strict=True):
                    part = None if proba is None else proba[start : start + n]
                    if not future.done():
                        future.set_result((predictions[start : start + n], part))
                    start += n
                return
        for _, batch, future in items:
            self.calls += 1
            try:
                result = model.predict(batch)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(result)
