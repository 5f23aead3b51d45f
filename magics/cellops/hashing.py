"""Content hashes for code, values and files (xxh3-128: fast, and stable across processes).

Value digests must not depend on the process: the cache key of a step is compared across kernel
restarts. So containers are walked (sets sorted by element digest, since string hashing is
randomized per process), pandas and NumPy data are hashed by content, functions and classes
defined in the notebook by their source, and anything else by its cloudpickle bytes.
"""

from __future__ import annotations

import ast
import inspect
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

if TYPE_CHECKING:
    from .statcache import StatCache

_CHUNK = 1 << 20


def hash_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


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


def value_digest(value: Any) -> str:
    h = xxhash.xxh3_128()
    _feed(h, value, depth=0)
    return h.hexdigest()


def _feed(h: xxhash.xxh3_128, value: Any, depth: int) -> None:
    if depth > 50:
        h.update(_pickled(value))
        return
    kind = type(value)
    h.update(f"{kind.__module__}.{kind.__qualname__}\0".encode())
    if value is None or kind in (bool, int, float, complex, str):
        h.update(repr(value).encode())
    elif kind in (bytes, bytearray):
        h.update(f"{len(value)}:".encode())
        h.update(bytes(value))
    elif kind in (list, tuple):
        h.update(str(len(value)).encode())
        for item in value:
            _feed(h, item, depth + 1)
    elif kind is dict:
        h.update(str(len(value)).encode())  # else {"a": {"b": 1}} == {"a": {}, "b": 1}
        for key, item in value.items():
            _feed(h, key, depth + 1)
            _feed(h, item, depth + 1)
    elif kind in (set, frozenset):
        for digest in sorted(value_digest(item) for item in value):
            h.update(digest.encode())
    elif _is_numpy_array(value):
        _feed_array(h, value)
    elif _is_pandas(value):
        _feed_pandas(h, value)
    elif isinstance(value, (types.FunctionType, type)):
        h.update(_source_of(value).encode())  # the notebook's or the project's own code
    else:
        h.update(_pickled(value))


def _is_numpy_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas.") and type(value).__name__ in (
        "DataFrame",
        "Series",
        "Index",
        "RangeIndex",
    )


def _feed_array(h: xxhash.xxh3_128, array: Any) -> None:
    h.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype.hasobject:
        h.update(_pickled(array))
    else:
        import numpy as np

        h.update(memoryview(np.ascontiguousarray(array)).cast("B"))


def _feed_pandas(h: xxhash.xxh3_128, obj: Any) -> None:
    import pandas as pd

    if isinstance(obj, pd.Index):
        obj = obj.to_series()
    if isinstance(obj, pd.DataFrame):
        h.update(repr([(str(c), str(t)) for c, t in obj.dtypes.items()]).encode())
    else:
        h.update(f"{obj.name!r}{obj.dtype}".encode())
    h.update(repr(obj.index.names).encode())
    try:
        rows = pd.util.hash_pandas_object(obj, index=True).to_numpy()
    except TypeError:  # unhashable cells (lists, dicts): fall back to the pickle
        h.update(_pickled(obj))
        return
    h.update(memoryview(rows).cast("B"))


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(_pickled(obj))


def _pickled(value: Any) -> bytes:
    import cloudpickle

    try:
        return cloudpickle.dumps(value, protocol=5)
    except Exception:  # unpicklable values change the key each time: never a false hit
        return f"unpicklable:{id(value)}:{os.getpid()}".encode()
