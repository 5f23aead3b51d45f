"""A content-addressed store for step outputs: variables and files, under `.cellops/objects/`.

Each object is named by the hash of its stored bytes, written to a temporary file and renamed,
so a reader never sees a half-written object, and checked against its name when read back, so
a corrupted object is reported instead of restored.

Values are stored by type: DataFrames as Parquet, NumPy arrays as `.npy`, modules by name,
everything else with cloudpickle.
"""

from __future__ import annotations

import importlib
import os
import shutil
import types
from pathlib import Path
from typing import Any

from ._fs import atomic_write_json, read_json, temp_path_beside
from .errors import CorruptObjectError, UnserializableError
from .hashing import file_digest, path_digest

ObjectRef = dict[str, Any]
"""How to find a stored object: {"codec": ..., "digest": ..., "size": ...}."""


class ObjectStore:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, digest: str, codec: str) -> Path:
        return self.root / digest[:2] / f"{digest}.{codec}"

    def _commit(self, tmp: Path, codec: str) -> ObjectRef:
        digest = file_digest(tmp)
        final = self._path(digest, codec)
        size = tmp.stat().st_size
        if final.exists() and file_digest(final) == digest:
            tmp.unlink()  # else a corrupted copy is there: replace it
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        return {"codec": codec, "digest": digest, "size": size}

    # -- values -------------------------------------------------------------------------------

    def put_value(self, value: Any) -> ObjectRef:
        """Store `value`; raise UnserializableError when no codec can store it."""
        if isinstance(value, types.ModuleType):
            return {"codec": "module", "name": value.__name__, "digest": "", "size": 0}
        for codec, write in _writers_for(value):
            tmp = temp_path_beside(self.root / "tmp" / "value")
            try:
                write(value, tmp)
            except Exception as exc:  # try the next codec, and report the last failure
                tmp.unlink(missing_ok=True)
                error = exc
                continue
            return self._commit(tmp, codec)
        raise UnserializableError(f"{type(value).__name__}: {error}")

    def get_value(self, ref: ObjectRef) -> Any:
        if ref["codec"] == "module":
            return importlib.import_module(ref["name"])
        path = self._checked(ref)
        return _READERS[ref["codec"]](path)

    # -- files --------------------------------------------------------------------------------

    def put_path(self, path: Path) -> ObjectRef:
        """Store a file, or a folder as a manifest of its files."""
        if path.is_file():
            tmp = temp_path_beside(self.root / "tmp" / "file")
            shutil.copyfile(path, tmp)
            return self._commit(tmp, "file")
        manifest = {
            child.relative_to(path).as_posix(): self.put_path(child)
            for child in sorted(p for p in path.rglob("*") if p.is_file())
        }
        tmp = temp_path_beside(self.root / "tmp" / "dir")
        atomic_write_json(tmp, manifest)
        ref = self._commit(tmp, "dir")
        ref["tree_digest"] = path_digest(path)
        return ref

    def restore_path(self, ref: ObjectRef, dest: Path) -> bool:
        """Put the stored file or folder at `dest`; False when it was already there."""
        if ref["codec"] == "file":
            if dest.is_file() and file_digest(dest) == ref["digest"]:
                return False
            source = self._checked(ref)
            tmp = temp_path_beside(dest)
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
            return True
        manifest = read_json(self._checked(ref)) or {}
        changed = False
        for relative, child_ref in manifest.items():
            changed |= self.restore_path(child_ref, dest / relative)
        return changed

    def has(self, ref: ObjectRef) -> bool:
        return ref["codec"] == "module" or self._path(ref["digest"], ref["codec"]).exists()

    def _checked(self, ref: ObjectRef) -> Path:
        path = self._path(ref["digest"], ref["codec"])
        if not path.exists():
            raise CorruptObjectError(f"cache object {path} is missing")
        if file_digest(path) != ref["digest"]:
            raise CorruptObjectError(f"cache object {path} does not match its hash")
        return path


def _writers_for(value: Any):
    kind = type(value)
    if kind.__module__.startswith("pandas.") and kind.__name__ == "DataFrame":
        yield "parquet", _write_parquet
    elif kind.__module__ == "numpy" and kind.__name__ == "ndarray" and not value.dtype.hasobject:
        yield "npy", _write_npy
    yield "pkl", _write_pickle


def _write_parquet(df: Any, path: Path) -> None:
    if not all(isinstance(c, str) for c in df.columns):
        raise TypeError("Parquet needs string column names")
    df.to_parquet(path, engine="pyarrow")


def _write_npy(array: Any, path: Path) -> None:
    import numpy as np

    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _write_pickle(value: Any, path: Path) -> None:
    import cloudpickle

    with open(path, "wb") as fh:
        cloudpickle.dump(value, fh, protocol=5)


def _read_parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path, engine="pyarrow")


def _read_npy(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def _read_pickle(path: Path) -> Any:
    import cloudpickle

    with open(path, "rb") as fh:
        return cloudpickle.load(fh)


_READERS = {"parquet": _read_parquet, "npy": _read_npy, "pkl": _read_pickle}
