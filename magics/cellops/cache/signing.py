"""The project's cache key: what makes a cache entry or pickled object trusted.

Unpickling runs code, and `cellops pull` fetches the step cache from a DVC remote that more
people may be able to write to than the project's code. So every index entry and every pickled
bundle cellops writes carries an HMAC-SHA256 tag made with a key that never leaves the project:
`.cellops/cache.key` (random, mode 0600, created on first use; `.cellops/` is in the project's
`.gitignore` and `.dvcignore`, and `cellops push` sends only `objects/` and `cache/`). What is
not signed with that key is refused before it is read, and the step runs instead.

Teammates who want each other's cached results share the key file out of band (copy it to their
clone's `.cellops/cache.key`); whoever holds it can write cache objects that every holder will
load, so share it as you would a password.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..errors import CellopsUsageError

KEY_NAME = "cache.key"
TAG_SIZE = 32  # bytes of an HMAC-SHA256 tag


def key_path(state_dir: Path) -> Path:
    return state_dir / KEY_NAME


def key_label(path: Path) -> str:
    """The key file as the project names it: `.cellops/cache.key`."""
    return f"{path.parent.name}/{path.name}"


def load_key(path: Path) -> bytes:
    """The project's key, created (mode 0600, never replacing one that exists) on first use."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return _create_key(path)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise CellopsUsageError(
            f"the cache key {path} is damaged (it should hold 64 hexadecimal digits); copy the "
            "key again from a teammate, or delete the file: a new key is made and the steps run "
            "again instead of restoring"
        )
    return key


def _create_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    _keep_out_of_git(path)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
        os.link(tmp, path)  # never replaces a key another process made meanwhile
    except FileExistsError:
        return load_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def _keep_out_of_git(path: Path) -> None:
    """A `.gitignore` beside the key, for a project whose own `.gitignore` does not list
    `.cellops/` (one made without `cellops init`)."""
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        with contextlib.suppress(OSError):
            ignore.write_text(f"# the step cache's signing key: never commit it\n{path.name}\n")


def new_mac(key: bytes, kind: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 for one kind of signed thing (`bundle`, `entry`): a tag made for one
    kind is never valid for another."""
    return hmac.new(key, kind + b"\0", hashlib.sha256)


def tag(key: bytes, kind: bytes, data: bytes) -> str:
    mac = new_mac(key, kind)
    mac.update(data)
    return mac.hexdigest()


def same(expected: str | bytes, actual: str | bytes) -> bool:
    return hmac.compare_digest(expected, actual)
