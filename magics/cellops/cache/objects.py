"""A content-addressed store for step outputs: variables and files, under `.cellops/objects/`.

Each object is named by the hash of its stored bytes, written to a temporary file and renamed,
so a reader never sees a half-written object, and checked against its name when read back, so
a corrupted object is reported instead of restored.

A step's values are stored together as one cloudpickle "bundle" (so objects they share stay
shared); files as copies, folders as a manifest of their files.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from .._fs import atomic_write_json, read_json, temp_path_beside
from ..errors import CorruptObjectError, UnserializableError
from .hashing import file_digest, path_digest

ObjectRef = dict[str, Any]
"""How to find a stored object: {"codec": ..., "digest": ..., "size": ...}."""


class ObjectStore:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, digest: str, codec: str) -> Path:
        return self.root / digest[:2] / f"{digest}.{codec}"

    def _commit(self, tmp: Path, codec: str) -> ObjectRef:
        try:
            digest = file_digest(tmp)
            final = self._path(digest, codec)
            size = tmp.stat().st_size
            if final.exists() and file_digest(final) == digest:
                tmp.unlink()  # else a corrupted copy is there: replace it
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
        except BaseException:  # an interrupt leaves no temporary file behind
            tmp.unlink(missing_ok=True)
            raise
        return {"codec": codec, "digest": digest, "size": size}

    # -- values -------------------------------------------------------------------------------

    def put_bundle(self, payload: dict[str, Any], live: dict[int, tuple[Any, Any]]) -> ObjectRef:
        """Store a step's outputs in one pickle, so objects they share stay shared.

        `live` maps id(object) -> (reference, object) for the notebook values the step read
        (a reference is a name, or a (name, path) to an object inside that value): an output
        that holds one of them (a Pipeline holding an input's PCA) stores the reference, and
        gets the live object back on restore, not a copy.
        """
        tmp = temp_path_beside(self.root / "tmp" / "bundle")
        try:
            with open(tmp, "wb") as fh:
                bundle_pickler(fh, live).dump(payload)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, Exception):
                raise UnserializableError(f"{type(exc).__name__}: {exc}") from exc
            raise
        return self._commit(tmp, "bundle")

    def get_bundle(self, ref: ObjectRef, namespace: dict[str, Any]) -> dict[str, Any]:
        path = self._checked(ref)
        with open(path, "rb") as fh:
            try:
                return _BundleUnpickler(fh, namespace).load()
            except CorruptObjectError:
                raise
            except Exception as exc:  # a class it needs is gone, a module cannot be imported
                raise CorruptObjectError(f"cache object {path} cannot be read: {exc}") from exc

    # -- files --------------------------------------------------------------------------------

    def put_path(self, path: Path) -> ObjectRef:
        """Store a file, or a folder as a manifest of its files."""
        if path.is_file():
            tmp = temp_path_beside(self.root / "tmp" / "file")
            try:
                shutil.copyfile(path, tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
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
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return True
        manifest = read_json(self._checked(ref)) or {}
        changed = False
        for relative, child_ref in manifest.items():
            changed |= self.restore_path(child_ref, dest / relative)
        return changed

    def has(self, ref: ObjectRef) -> bool:
        return self._path(ref["digest"], ref["codec"]).exists()

    def _checked(self, ref: ObjectRef) -> Path:
        path = self._path(ref["digest"], ref["codec"])
        if not path.exists():
            raise CorruptObjectError(f"cache object {path} is missing")
        if file_digest(path) != ref["digest"]:
            raise CorruptObjectError(f"cache object {path} does not match its hash")
        return path


def bundle_pickler(fh: Any, live: dict[int, tuple[Any, Any]]) -> Any:
    """A cloudpickle pickler that writes the objects of `live` as references by name."""
    return _bundle_pickler_class()(fh, live)


@functools.cache
def _bundle_pickler_class() -> type:
    import cloudpickle  # late: `import cellops` stays fast

    class BundlePickler(cloudpickle.Pickler):
        def __init__(self, fh: Any, live: dict[int, tuple[Any, Any]]):
            super().__init__(fh, protocol=5)
            self._live = live

        def persistent_id(self, obj: Any) -> Any:
            entry = self._live.get(id(obj))
            return entry[0] if entry is not None and entry[1] is obj else None

    return BundlePickler


class _BundleUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, namespace: dict[str, Any]):
        super().__init__(fh)
        self._namespace = namespace

    def persistent_load(self, pid: Any) -> Any:
        name, path = pid if isinstance(pid, tuple) else (pid, ())
        if name not in self._namespace:
            raise CorruptObjectError(f"the cached outputs refer to {name!r}, which is not defined")
        from .replay import resolve

        try:
            return resolve(self._namespace[name], path)
        except LookupError as exc:
            raise CorruptObjectError(f"the cached outputs refer to {name}'s {exc}, gone") from exc
