"""Content hashes of unchanged files, remembered by their stat, so they are not read again.

An entry maps a file's (size, mtime_ns, ctime_ns, inode, device) to its digests (one per
algorithm: xxh3 for cache keys, md5 for DVC). A lookup whose stat differs in any field misses.

Same-second writes: a file changed within the filesystem's timestamp granularity of the moment
it was hashed could keep its stat while its content changed (git's "racily clean" problem). So
an entry is stored only when the file's mtime and ctime are older than RACY_NS before hashing
began; a newer file is hashed every time until it has aged. The stat is also taken again
after hashing, and nothing is stored if it moved meanwhile.

The cache is kept as JSON under `.cellops/`; writes are atomic, and a save merges what other
processes stored meanwhile (entries are independent facts, so merging is safe).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from .._fs import atomic_write_bytes

FORMAT = 1
RACY_NS = 2_000_000_000  # coarse filesystems (FAT, some network mounts) tick in 1-2 s
MAX_ENTRIES = 100_000
FILE_NAME = "statcache.json"

_Entry = list  # [size, mtime_ns, ctime_ns, inode, device, {algorithm: digest}]


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class StatCache:
    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, _Entry] = {}
        self._dirty: dict[str, _Entry] = {}
        self._loaded_mtime: int | None = None
        self._load()

    def _read_disk(self) -> dict[str, _Entry]:
        try:
            payload = json.loads(self.path.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            return {}
        entries = payload.get("entries")
        return entries if isinstance(entries, dict) else {}

    def _load(self) -> None:
        try:
            self._loaded_mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._loaded_mtime = None
        self._entries = self._read_disk()

    def refresh(self) -> None:
        """Take in what another process saved since this one loaded the cache."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._loaded_mtime:
            self._load()
            self._entries.update(self._dirty)

    def digest(self, path: str | os.PathLike[str], algorithm: str, compute: Callable) -> str:
        """`compute(path)`, or the digest remembered for the file's current stat."""
        key = path if isinstance(path, str) and path.startswith(os.sep) else os.path.abspath(path)
        st = os.stat(key)
        signature = _signature(st)
        entry = self._entries.get(key)
        if entry is not None and entry[:5] == signature:
            known = entry[5].get(algorithm)
            if known is not None:
                return known
        started = time.time_ns()
        value = compute(key)
        if max(st.st_mtime_ns, st.st_ctime_ns) >= started - RACY_NS:
            return value  # racily new: its stat does not yet vouch for its content
        if _signature(os.stat(key)) != signature:
            return value  # changed while being read
        digests = dict(entry[5]) if entry is not None and entry[:5] == signature else {}
        digests[algorithm] = value
        self._entries[key] = self._dirty[key] = [*signature, digests]
        return value

    def save(self) -> None:
        """Write the new entries (merged with the file's), when there are any."""
        if not self._dirty:
            return
        entries = self._read_disk()
        entries.update(self._dirty)
        if len(entries) > MAX_ENTRIES:
            entries = {k: v for k, v in entries.items() if os.path.exists(k)}
        payload = json.dumps({"format": FORMAT, "entries": entries}, separators=(",", ":"))
        atomic_write_bytes(self.path, payload.encode())
        self._entries = entries
        self._dirty = {}
        try:
            self._loaded_mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._loaded_mtime = None


_caches: dict[Path, StatCache] = {}


def stat_cache_for(state_dir: Path) -> StatCache:
    """The process's stat cache of the project whose state folder is `state_dir`."""
    path = Path(state_dir) / FILE_NAME
    cache = _caches.get(path)
    if cache is None:
        cache = _caches[path] = StatCache(path)
    else:
        cache.refresh()
    return cache
