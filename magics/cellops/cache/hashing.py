"""Content hashes for code, values and files (xxh3-128: fast, and stable across processes).

A value digest is the cache key of a step's inputs, compared across kernel restarts and with
values restored from the cache. So it is structural: by type and content, never by pickle bytes
or `id()`, the same under any PYTHONHASHSEED, and equal for a value and its (cloud)pickled copy.
A wrong equal digest gives a wrong cached result, so whatever cannot be digested that way raises
`UndigestableError` (and the step runs) rather than being guessed at.

How: see `digest_values` (the walker) and `digest_code` (functions, classes, modules, objects).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from .digest_code import is_library

if TYPE_CHECKING:
    from .statcache import StatCache

__all__ = [
    "code_digest",
    "file_digest",
    "hash_strings",
    "is_library",
    "path_digest",
    "value_digest",
]

_CHUNK = 1 << 20


def hash_strings(*parts: str) -> str:
    h = xxhash.xxh3_128()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def code_digest(source: str) -> str:
    """Hash of the code's syntax tree: comments, blank lines and spacing do not count."""
    try:
        normalized = ast.dump(ast.parse(source))
    except SyntaxError:
        normalized = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hash_strings("code", normalized)


def file_digest(path: str | os.PathLike[str], cache: StatCache | None = None) -> str:
    """xxh3 of the file's bytes; with `cache`, an unchanged file (same stat) is not read."""
    if cache is not None:
        return cache.digest(path, "xxh3", _read_digest)
    return _read_digest(path)


def _read_digest(path: str | os.PathLike[str]) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def path_digest(path: str | os.PathLike[str], cache: StatCache | None = None) -> str:
    """Digest of a file, or of a folder as its sorted relative paths and file digests."""
    path = Path(path)
    if path.is_file():
        return file_digest(path, cache)
    h = xxhash.xxh3_128()
    for parts, child in sorted(_files_under(os.path.abspath(path), ())):
        h.update("/".join(parts).encode() + b"\0")
        h.update(file_digest(child, cache).encode())
    return h.hexdigest()


def _files_under(folder: str, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(relative parts, path) of the files below `folder`; sorted, the order of sorted(rglob)."""
    try:
        entries = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):  # as rglob: nothing below
        return
    with entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _files_under(entry.path, (*prefix, entry.name))
            elif entry.is_file():
                yield (*prefix, entry.name), entry.path


def value_digest(value: Any, root: Path | None = None, *, name: str = "value") -> str:
    """Structural digest of `value`; `root` (the project root) decides which code is the
    project's (digested by content) and which the environment's (by qualified name).

    Raises UndigestableError, naming the part (`name` is the value's own name in the message),
    when some part has no digest that is the same in every process.
    """
    from .digest_values import Walker

    return Walker(None if root is None else Path(root)).run(value, name)
