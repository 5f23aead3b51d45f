"""A content-addressed store for step outputs: variables and files, under `.cellops/objects/`.

Each object is named by the hash of its stored bytes, written to a temporary file and renamed,
so a reader never sees a half-written object, and checked against its name when read back, so
a corrupted object is reported instead of restored.

A step's values are stored together as one cloudpickle "bundle" (so objects they share stay
shared); files as copies, folders as a manifest of their files. A bundle starts with a header
holding the HMAC of its pickle under the project's key (see `signing`): one without it, or with
another key's, is refused before anything is unpickled (`UntrustedObjectError`).

Temporary files live in `tmp/`, named after the writing process (host, pid, start time) and
locked while it writes, so the next session removes what a killed writer left (`sweep_temp`)
and never a live writer's file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import pickle
import re
import secrets
import shutil
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import xxhash

from .._fs import read_json, temp_path_beside
from ..errors import CorruptObjectError, UnserializableError, UntrustedObjectError
from ..store.reaper import process_alive, process_start_time
from . import signing
from .hashing import file_digest, path_digest

BUNDLE_MAGIC = b"cellops-signed-bundle-v1\n"
_HEADER = len(BUNDLE_MAGIC) + signing.TAG_SIZE
_CHUNK = 1 << 20
_OWNED = re.compile(
    r"^\.(?P<kind>[a-z]+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.(?P<start>\d*)\.[0-9a-f]+\.tmp$"
)
UNOWNED_STALE_S = 3600.0  # an older cellops's temp file (no owner in its name): removed this old

ObjectRef = dict[str, Any]
"""How to find a stored object: {"codec": ..., "digest": ..., "size": ...}."""


class ObjectStore:
    def __init__(self, root: Path, key_file: Path | None = None):
        """`root`: the objects folder; `key_file`: the project's cache key, by default
        `cache.key` beside `root` (`.cellops/cache.key`), read (or made) on first use."""
        self.root = root
        self.key_file = key_file or signing.key_path(root.parent)
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = signing.load_key(self.key_file)
        return self._key

    # -- temporary files ----------------------------------------------------------------------

    @contextlib.contextmanager
    def temp_file(self, kind: str) -> Iterator[tuple[Path, IO[bytes]]]:
        """A new file in `tmp/`, open for writing and locked while the block runs; removed
        after it unless the block renamed it. Its name carries this process's host, pid and
        start time, so `sweep_temp` can tell a dead writer's file from a live one's."""
        folder = self.root / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".{kind}.{_owner_tag(os.getpid())}.{secrets.token_hex(6)}.tmp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(fd, "wb", closefd=False) as fh:
                yield path, fh
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)  # releases the lock

    def sweep_temp(self) -> list[Path]:
        """Remove the temporary files whose writer is gone (a kernel killed mid-write); keep
        those of live writers, and those of another host (whose processes cannot be seen)."""
        try:
            names = os.listdir(self.root / "tmp")
        except OSError:
            return []
        removed = []
        for name in names:
            path = self.root / "tmp" / name
            if _abandoned(path) and _remove_unlocked(path):
                removed.append(path)
        return removed

    def _path(self, digest: str, codec: str) -> Path:
        return self.root / digest[:2] / f"{digest}.{codec}"

    def _commit(self, tmp: Path, codec: str) -> ObjectRef:
        """Move a finished temporary file to its name (in `temp_file`'s block, which removes
        it on any error or interrupt)."""
        digest = file_digest(tmp)
        final = self._path(digest, codec)
        size = tmp.stat().st_size
        if not (final.exists() and file_digest(final) == digest):  # else a corrupted copy
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        return {"codec": codec, "digest": digest, "size": size}

    # -- values -------------------------------------------------------------------------------

    def put_bundle(self, payload: dict[str, Any], live: dict[int, tuple[Any, Any]]) -> ObjectRef:
        """Store a step's outputs in one pickle, so objects they share stay shared.

        `live` maps id(object) -> (reference, object) for the notebook values the step read
        (a reference is a name, or a (name, path) to an object inside that value): an output
        that holds one of them (a Pipeline holding an input's PCA) stores the reference, and
        gets the live object back on restore, not a copy. The file is the header (magic, then
        the HMAC of the pickle under the project's key) and the pickle.
        """
        key = self.key
        with self.temp_file("bundle") as (tmp, fh):
            fh.write(BUNDLE_MAGIC + bytes(signing.TAG_SIZE))
            signed = _SigningWriter(fh, signing.new_mac(key, b"bundle"))
            try:
                bundle_pickler(signed, live).dump(payload)
            except Exception as exc:
                raise UnserializableError(f"{type(exc).__name__}: {exc}") from exc
            fh.seek(len(BUNDLE_MAGIC))
            fh.write(signed.mac.digest())
            fh.close()
            return self._commit(tmp, "bundle")

    def get_bundle(self, ref: ObjectRef, namespace: dict[str, Any]) -> dict[str, Any]:
        """The stored outputs, once the file matches its hash and carries this project's
        signature: nothing is unpickled before both hold."""
        path = self._path(ref["digest"], ref["codec"])
        if not path.exists():
            raise CorruptObjectError(f"cache object {path} is missing")
        with open(path, "rb") as fh:
            self._check_signed_bundle(fh, path, ref["digest"])
            fh.seek(_HEADER)
            try:
                return _BundleUnpickler(fh, namespace).load()
            except CorruptObjectError:
                raise
            except Exception as exc:  # a class it needs is gone, a module cannot be imported
                raise CorruptObjectError(f"cache object {path} cannot be read: {exc}") from exc

    def _check_signed_bundle(self, fh: IO[bytes], path: Path, digest: str) -> None:
        """One read of the file: its hash (else CorruptObjectError), then its signature (else
        UntrustedObjectError)."""
        whole = xxhash.xxh3_128()
        header = fh.read(_HEADER)
        whole.update(header)
        mac = signing.new_mac(self.key, b"bundle")
        while chunk := fh.read(_CHUNK):
            whole.update(chunk)
            mac.update(chunk)
        if whole.hexdigest() != digest:
            raise CorruptObjectError(f"cache object {path} does not match its hash")
        what = f"cache object {self._label(path)}"
        if len(header) < _HEADER or not header.startswith(BUNDLE_MAGIC):
            raise UntrustedObjectError(what, signing.key_label(self.key_file))
        if not signing.same(header[len(BUNDLE_MAGIC) :], mac.digest()):
            raise UntrustedObjectError(what, signing.key_label(self.key_file), mismatch=True)

    def _label(self, path: Path) -> str:
        """`.cellops/objects/ab/<digest>.bundle`: the path as the project names it."""
        try:
            return path.relative_to(self.root.parent.parent).as_posix()
        except ValueError:
            return str(path)

    # -- files --------------------------------------------------------------------------------

    def put_path(self, path: Path) -> ObjectRef:
        """Store a file, or a folder as a manifest of its files."""
        if path.is_file():
            with self.temp_file("file") as (tmp, fh):
                fh.close()
                shutil.copyfile(path, tmp)
                return self._commit(tmp, "file")
        manifest = {
            child.relative_to(path).as_posix(): self.put_path(child)
            for child in sorted(p for p in path.rglob("*") if p.is_file())
        }
        with self.temp_file("dir") as (tmp, fh):
            fh.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
            fh.close()
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
            if relative.startswith("/") or ".." in relative.split("/"):
                raise CorruptObjectError(f"cache object {ref['digest']} names {relative!r}")
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


class _SigningWriter:
    """A file for the pickler that feeds every byte written to an HMAC on the way."""

    def __init__(self, fh: IO[bytes], mac: Any):
        self.fh, self.mac = fh, mac

    def write(self, data: Any) -> int:
        self.mac.update(data)
        return self.fh.write(data)


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


@functools.lru_cache(maxsize=4)
def _owner_tag(pid: int) -> str:
    """`host.pid.start` of this process (by pid: a forked child is another owner)."""
    return f"{_host_tag()}.{pid}.{process_start_time(pid) or ''}"


def _abandoned(path: Path) -> bool:
    """Whether the temporary file's writer is gone: a dead process of this host, or (a name
    without an owner, from an older cellops) a file nobody wrote to for an hour."""
    match = _OWNED.match(path.name)
    if match is None:
        try:
            return time.time() - path.stat().st_mtime > UNOWNED_STALE_S
        except OSError:
            return False
    if match["host"] != _host_tag():
        return False
    return not process_alive(int(match["pid"]), match["start"])


def _remove_unlocked(path: Path) -> bool:
    """Remove the file unless a process holds its lock (a writer in another pid namespace)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


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
