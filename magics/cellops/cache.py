"""The step cache index: one small JSON file per cache key under `.cellops/cache/`.

An entry says which stored objects hold a step's outputs. It is written (temp file, then
rename) only after every object it names is stored, so a visible entry is always complete.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._fs import atomic_write_json, read_json

FORMAT_VERSION = 1


@dataclass
class CacheEntry:
    key: str
    step: str
    run_id: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_digests: dict[str, str] = field(default_factory=dict)
    files_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    saved_at: float = field(default_factory=time.time)


class StepCache:
    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def lookup(self, key: str) -> CacheEntry | None:
        payload = read_json(self._path(key))
        if not payload or payload.get("format") != FORMAT_VERSION:
            return None
        payload.pop("format")
        return CacheEntry(**payload)

    def save(self, entry: CacheEntry) -> None:
        atomic_write_json(self._path(entry.key), {"format": FORMAT_VERSION, **asdict(entry)})

    def forget(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
