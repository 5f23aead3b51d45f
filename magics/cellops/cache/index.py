"""The step cache index: small JSON files under `.cellops/cache/`, one per cache key and
variant.

An entry says which stored objects hold a step's outputs. It is written (temp file, then
rename) only after every object it names is stored, so a visible entry is always complete.

One key can hold several variants: the results of the same code on the same inputs that read
different file contents or started from different random generator states (its checks).
`candidates` gives them newest first; the engine takes the first whose checks still hold, so
going back to seed 0 after a run with seed 1 is a hit again. A key keeps its newest
MAX_VARIANTS.

Every entry carries the HMAC of its content under the project's key (see `signing`): it names
the objects to restore, the files to write back and what the cell showed, so an entry that is
not signed with this project's key (pulled from a DVC remote, or written before signing) is
never used; `untrusted` names those a lookup passed over.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._fs import atomic_write_json, read_json
from ..errors import UntrustedObjectError
from . import signing
from .hashing import hash_strings

FORMAT_VERSION = 2
MAX_VARIANTS = 8


@dataclass
class CacheEntry:
    """A step's stored result, and what must still hold for it to be reused."""

    key: str
    step: str
    run_id: str
    bundle: dict[str, Any] | None = None  # the stored outputs (one object: sharing is kept)
    restored: list[str] = field(default_factory=list)  # the names it binds or updates
    output_digests: dict[str, str] = field(default_factory=dict)
    files_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    file_checks: dict[str, str] = field(default_factory=dict)  # project file read -> digest
    generator_checks: dict[str, str] = field(default_factory=dict)  # generator -> state digest
    cell_outputs: list[dict[str, Any]] = field(default_factory=list)  # what the cell showed
    saved_at: float = field(default_factory=time.time)

    @property
    def variant(self) -> str:
        """Names the checks: entries of one key with other checks are other variants."""
        if not self.file_checks and not self.generator_checks:
            return ""
        checks = json.dumps([self.file_checks, self.generator_checks], sort_keys=True)
        return hash_strings("checks", checks)[:16]


class StepCache:
    def __init__(self, folder: Path, key_file: Path | None = None):
        """`folder`: the index folder; `key_file`: the project's cache key, by default
        `cache.key` beside `folder` (`.cellops/cache.key`), read (or made) on first use."""
        self.folder = folder
        self.key_file = key_file or signing.key_path(folder.parent)
        self._key: bytes | None = None
        self.untrusted: list[UntrustedObjectError] = []  # of the last lookup, one per entry

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = signing.load_key(self.key_file)
        return self._key

    def _path(self, key: str, variant: str = "") -> Path:
        return self.folder / (f"{key}.{variant}.json" if variant else f"{key}.json")

    def _entries(self, key: str) -> list[tuple[CacheEntry, Path]]:
        """The key's readable, trusted entries with their files, newest first."""
        self.untrusted = []
        paths = [self._path(key), *self.folder.glob(f"{key}.*.json")]
        found = []
        for path in paths:
            payload = read_json(path)
            if not payload or payload.get("format") != FORMAT_VERSION:
                continue
            problem = self._check(payload, path)
            if problem is not None:
                self.untrusted.append(problem)
            elif (entry := _entry(payload)) is not None:
                found.append((entry, path))
        return sorted(found, key=lambda pair: pair[0].saved_at, reverse=True)

    def _check(self, payload: dict[str, Any], path: Path) -> UntrustedObjectError | None:
        signature = payload.pop("signature", None)
        if signature is not None and signing.same(signature, self._sign(payload)):
            return None
        label = f"cache entry {path.parent.parent.name}/{path.parent.name}/{path.name}"
        return UntrustedObjectError(
            label, signing.key_label(self.key_file), mismatch=signature is not None
        )

    def _sign(self, payload: dict[str, Any]) -> str:
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return signing.tag(self.key, b"entry", canonical.encode())

    def candidates(self, key: str) -> list[CacheEntry]:
        """Every usable entry of the key, newest first."""
        return [entry for entry, _ in self._entries(key)]

    def lookup(self, key: str) -> CacheEntry | None:
        """The key's newest entry."""
        found = self.candidates(key)
        return found[0] if found else None

    def save(self, entry: CacheEntry) -> None:
        entry.saved_at = time.time()
        path = self._path(entry.key, entry.variant)
        # signed as it will read back (JSON turns tuples into lists, keys into strings)
        payload = json.loads(json.dumps({"format": FORMAT_VERSION, **asdict(entry)}))
        atomic_write_json(path, {**payload, "signature": self._sign(payload)})
        for _, old in self._entries(entry.key)[MAX_VARIANTS:]:
            old.unlink(missing_ok=True)

    def forget(self, key: str, variant: str | None = None) -> None:
        """Forget one variant of the key, or (variant None) all of them."""
        if variant is not None:
            self._path(key, variant).unlink(missing_ok=True)
            return
        for path in [self._path(key), *self.folder.glob(f"{key}.*.json")]:
            path.unlink(missing_ok=True)


def _entry(payload: dict[str, Any]) -> CacheEntry | None:
    payload.pop("format")
    try:
        return CacheEntry(**payload)
    except TypeError:  # written by another version of this format: not usable
        return None
