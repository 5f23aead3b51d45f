"""DVC's content hash of a file or folder, computed as DVC computes it, through the stat cache.

A file's hash is the md5 of its bytes. A folder's is the md5 of the JSON list of its files
(`[{"md5": ..., "relpath": ...}]`, sorted by path), followed by ".dir" (dvc-data's
`Tree.digest`). Reading a hash this way needs no DVC process, and an unchanged file is never
read twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..cache.statcache import StatCache

_CHUNK = 1 << 20
_SKIPPED_DIRS = {".git", ".hg", ".dvc"}


def _md5_of_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: str | os.PathLike[str], cache: StatCache | None = None) -> str:
    if cache is None:
        return _md5_of_file(path)
    return cache.digest(path, "md5", _md5_of_file)


def folder_entries(folder: Path, cache: StatCache | None = None) -> list[dict[str, str]]:
    """The folder's files as DVC lists them in a `.dir` object."""
    entries = [
        {"md5": file_md5(path, cache), "relpath": relative}
        for relative, path in _files_under(os.path.abspath(folder), "")
    ]
    entries.sort(key=lambda entry: entry["relpath"])
    return entries


def _files_under(folder: str, prefix: str) -> Iterator[tuple[str, str]]:
    with os.scandir(folder) as found:
        for entry in found:
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIPPED_DIRS:
                    yield from _files_under(entry.path, f"{prefix}{entry.name}/")
            elif entry.is_file():
                yield f"{prefix}{entry.name}", entry.path


def dvc_md5(path: str | os.PathLike[str], cache: StatCache | None = None) -> str:
    """DVC's hash of `path`: "<md5>" for a file, "<md5>.dir" for a folder."""
    path = Path(path)
    if path.is_dir():
        listing = json.dumps(folder_entries(path, cache), sort_keys=True).encode("utf-8")
        return hashlib.md5(listing, usedforsecurity=False).hexdigest() + ".dir"
    return file_md5(path, cache)
