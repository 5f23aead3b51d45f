"""Per-variant counts of a rollout's served traffic, shared by every worker through small files.

Each worker counts, per variant, the requests it answered, the errors (a canary or shadow that
raised; a champion that could not predict), the latencies (a histogram of log-spaced buckets,
so that two workers' counts add up: a p95 read from it is within one bucket, about 3%) and, for
a shadow, how many rows agreed with the champion and how many shadow requests were dropped.
The counts are kept per judgement window: window `k` of a rollout's revision is the time from
`since + k * window` to `since + (k + 1) * window` (`since`: when that revision was written, the
same for every worker). Every `poll_seconds` a worker writes its counts to
`<.cellops>/rollouts/<model>/<rollout id>/<host>-<pid>.json` (a temp file, then renamed); any
worker, or `cellops rollout MODEL`, adds up the files of one window.
"""

from __future__ import annotations

import bisect
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EDGES = np.geomspace(0.05, 120_000.0, 261)  # ms; ratio ~1.058 between buckets
BUCKETS = len(EDGES) + 1
_EDGE_LIST = EDGES.tolist()  # bisect on a list: ~0.3 us a request, np.searchsorted ~8 us


def bucket(latency_ms: float) -> int:
    """The latency bucket of `latency_ms` (as `np.searchsorted(EDGES, latency_ms)`)."""
    if latency_ms != latency_ms:  # NaN: the last bucket, as searchsorted puts it
        return len(_EDGE_LIST)
    return bisect.bisect_left(_EDGE_LIST, latency_ms)


@dataclass
class Counts:
    requests: int = 0
    errors: int = 0
    compared: int = 0  # shadow: rows compared with the champion's
    agreed: int = 0
    dropped: int = 0  # shadow: requests not run because the queue was full
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, latency_ms: float, error: bool = False) -> None:
        self.requests += 1
        self.errors += bool(error)
        if not error:
            self.latency[bucket(latency_ms)] += 1

    def merge(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.compared += other.compared
        self.agreed += other.agreed
        self.dropped += other.dropped
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]

    def quantile(self, q: float) -> float:
        counts = np.asarray(self.latency)
        total = counts.sum()
        if not total:
            return float("nan")
        index = int(np.searchsorted(np.cumsum(counts), q * total))
        if index == 0:
            return float(EDGES[0])
        if index >= len(EDGES):
            return float(EDGES[-1])
        return float(np.sqrt(EDGES[index - 1] * EDGES[index]))  # the bucket's middle

    def metrics(self) -> dict[str, float]:
        """What a rule reads of this variant."""
        out = {
            "requests": float(self.requests),
            "errors": float(self.errors),
            "error_rate": self.errors / self.requests if self.requests else float("nan"),
            "latency_p50_ms": self.quantile(0.5),
            "latency_p95_ms": self.quantile(0.95),
            "latency_p99_ms": self.quantile(0.99),
        }
        if self.compared or self.dropped:
            out["agreement"] = self.agreed / self.compared if self.compared else float("nan")
            out["dropped"] = float(self.dropped)
        return out

    def to_dict(self) -> dict[str, Any]:
        names = ("requests", "errors", "compared", "agreed", "dropped", "latency")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counts:
        counts = cls(
            **{
                k: int(data.get(k, 0))
                for k in ("requests", "errors", "compared", "agreed", "dropped")
            }
        )
        latency = list(data.get("latency") or [])
        if len(latency) == BUCKETS:
            counts.latency = [int(v) for v in latency]
        return counts


def stats_folder(state_dir: Path, model: str, rollout_id: str) -> Path:
    return state_dir / "rollouts" / model / rollout_id


class WorkerCounts:
    """This worker's counts of one rollout: per (revision, window) and in total."""

    def __init__(self, folder: Path, rollout_id: str):
        self.folder, self.rollout_id = folder, rollout_id
        self.path = folder / f"{socket.gethostname().replace('/', '_')}-{os.getpid()}.json"
        self._lock = threading.Lock()
        self.windows: dict[tuple[int, int], dict[str, Counts]] = {}
        self.total: dict[str, Counts] = {}
        self._dirty = True

    def _slots(self, revision: int, window: int, variant: str) -> tuple[Counts, Counts]:
        per = self.windows.setdefault((revision, window), {})
        return per.setdefault(variant, Counts()), self.total.setdefault(variant, Counts())

    def add(
        self, revision: int, window: int, variant: str, latency_ms: float, error: bool = False
    ) -> None:
        with self._lock:
            for counts in self._slots(revision, window, variant):
                counts.add(latency_ms, error)
            self._dirty = True

    def compare(self, revision: int, window: int, rows: int, agreed: int) -> None:
        with self._lock:
            for counts in self._slots(revision, window, "shadow"):
                counts.compared += rows
                counts.agreed += agreed
            self._dirty = True

    def drop(self, revision: int, window: int) -> None:
        with self._lock:
            for counts in self._slots(revision, window, "shadow"):
                counts.dropped += 1
            self._dirty = True

    def write(self, keep_from: tuple[int, int]) -> None:
        """Write the counts (windows older than `keep_from` are forgotten first)."""
        with self._lock:
            for key in [k for k in self.windows if k < keep_from]:
                del self.windows[key]
            if not self._dirty:
                return
            document = {
                "rollout": self.rollout_id,
                "pid": os.getpid(),
                "windows": [
                    {
                        "revision": r,
                        "window": w,
                        "variants": {v: c.to_dict() for v, c in per.items()},
                    }
                    for (r, w), per in self.windows.items()
                ],
                "total": {v: c.to_dict() for v, c in self.total.items()},
            }
            self._dirty = False
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.tmp")
        temp.write_text(json.dumps(document))
        os.replace(temp, self.path)


def read_counts(
    folder: Path, revision: int | None = None, windows: tuple[int, ...] = ()
) -> tuple[dict[int, dict[str, Counts]], dict[str, Counts]]:
    """Every worker's counts added up: per window of `revision` asked for, and in total."""
    per: dict[int, dict[str, Counts]] = {w: {} for w in windows}
    total: dict[str, Counts] = {}
    if not folder.is_dir():
        return per, total
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced while read: the next poll reads it
        for variant, data in (document.get("total") or {}).items():
            total.setdefault(variant, Counts()).merge(Counts.from_dict(data))
        for entry in document.get("windows") or []:
            if entry.get("revision") != revision or entry.get("window") not in per:
                continue
            slot = per[entry["window"]]
            for variant, data in (entry.get("variants") or {}).items():
                slot.setdefault(variant, Counts()).merge(Counts.from_dict(data))
    return per, total
