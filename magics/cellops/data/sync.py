"""`cellops push` / `cellops pull`: the project's DVC data and the step cache, to and from the
DVC remote.

DVC data moves with `dvc push` / `dvc pull`. The step cache (the content-addressed objects of
`.cellops/objects/` and the index entries of `.cellops/cache/`) goes to `cellops/` under the
same remote, through the remote's DVC filesystem (so any DVC remote works). Objects are
immutable and named by their hash, so both directions copy only what the other side lacks,
objects before the index entries that name them: an entry seen on either side is complete.

Only those two folders move: the project's cache key (`.cellops/cache.key`) never does. A clone
uses what it pulled only when it holds the same key (copied out of band), since every entry
and pickled object is signed with it (see `cache.signing`); without it, each step runs.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import CellopsError, CellopsUsageError
from . import dvc

REMOTE_FOLDER = "cellops"
_OBJECT = re.compile(r"^objects/[0-9a-f]{2}/[0-9a-f]{32}\.[a-z]+$")
_ENTRY = re.compile(r"^cache/[0-9a-f]{32}(\.[0-9a-f]{16})?\.json$")  # a key, and its variants


@dataclass
class SyncReport:
    remote: str
    dvc_summary: str
    objects: int
    entries: int


def _wanted(relative: str) -> bool:
    return bool(_OBJECT.match(relative) or _ENTRY.match(relative))


def local_cache_files(settings: Settings) -> dict[str, Path]:
    found = {}
    for folder, prefix in ((settings.objects_dir, "objects"), (settings.cache_dir, "cache")):
        for path in folder.rglob("*") if folder.is_dir() else ():
            relative = f"{prefix}/{path.relative_to(folder).as_posix()}"
            if path.is_file() and _wanted(relative):
                found[relative] = path
    return found


@contextlib.contextmanager
def remote_folder(root: Path, name: str | None) -> Iterator[tuple[Any, str, str]]:
    """(filesystem, folder for the step cache, remote name) of a DVC remote, by DVC's API."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        try:
            remote = repo.cloud.get_remote(name, "push")
        except DvcException as exc:
            raise CellopsUsageError(f"{exc} (or run `cellops init` to add a local one)") from None
        yield remote.fs, remote.fs.join(remote.path, REMOTE_FOLDER), remote.name


def _remote_listing(fs: Any, base: str) -> set[str]:
    try:
        paths = list(fs.find(base))
    except FileNotFoundError:
        return set()
    listing = set()
    for path in paths:
        relative = "/".join(fs.relparts(path, base))
        if _wanted(relative):
            listing.add(relative)
    return listing


def _entries_last(relative: str) -> tuple[bool, str]:
    """Objects before the index entries that name them."""
    return relative.startswith("cache/"), relative


def _summary(done: Any) -> str:
    """DVC's closing line ("4 files pushed", "Everything is up to date.")."""
    for output in (done.stdout, done.stderr):
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


def push(settings: Settings, remote: str | None = None) -> SyncReport:
    from .project import require_versioning

    root = settings.root
    require_versioning(root)
    done = dvc.run_dvc(root, "push", *_remote_args(remote))
    local = local_cache_files(settings)
    with remote_folder(root, remote) as (fs, base, name):
        present = _remote_listing(fs, base)
        missing = sorted((r for r in local if r not in present), key=_entries_last)
        for relative in missing:
            fs.put_file(str(local[relative]), fs.join(base, *relative.split("/")))
    objects = sum(1 for r in missing if r.startswith("objects/"))
    return SyncReport(name, _summary(done), objects, len(missing) - objects)


def local_changes(settings: Settings) -> list[dvc.Recorded]:
    """DVC-tracked files present in the workspace with content other than DVC's record."""
    from ..cache.statcache import stat_cache_for
    from .dvchash import dvc_md5

    cache = stat_cache_for(settings.state_dir)
    changed = []
    for recorded in dvc.recorded_outputs(settings.root):
        path = settings.root / recorded.label
        if recorded.md5 is None or not path.exists():
            continue
        if dvc_md5(path, cache) != recorded.md5:
            changed.append(recorded)
    cache.save()
    return changed


def pull(settings: Settings, force: bool = False, remote: str | None = None) -> SyncReport:
    from ..cache.hashing import file_digest
    from ..cache.objects import ObjectStore
    from .project import require_versioning

    root = settings.root
    require_versioning(root)
    if not force:
        changed = local_changes(settings)
        if changed:
            names = ", ".join(r.label for r in changed)
            raise CellopsUsageError(
                f"local changes to {names}: they differ from what DVC recorded, and pulling "
                "would replace them. Keep them (`dvc add` / `dvc commit`, then `cellops push`), "
                "or discard them with `cellops pull --force`"
            )
    local = local_cache_files(settings)
    store = ObjectStore(settings.objects_dir)  # its temporary files: swept if pull is killed
    fetched = []
    with remote_folder(root, remote) as (fs, base, name):
        wanted = sorted((r for r in _remote_listing(fs, base) if r not in local), key=_entries_last)
        folders = {"objects": settings.objects_dir, "cache": settings.cache_dir}
        for relative in wanted:
            prefix, _, rest = relative.partition("/")
            target = folders[prefix] / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            with store.temp_file("pull") as (tmp, fh):
                fh.close()
                fs.get_file(fs.join(base, *relative.split("/")), str(tmp))
                if prefix == "objects" and file_digest(tmp) != target.name.split(".")[0]:
                    raise CellopsError(
                        f"{relative} on the remote does not match its hash; not used"
                    )
                os.replace(tmp, target)
            fetched.append(relative)
    done = dvc.run_dvc(root, "pull", *(["--force"] if force else []), *_remote_args(remote))
    objects = sum(1 for r in fetched if r.startswith("objects/"))
    return SyncReport(name, _summary(done), objects, len(fetched) - objects)


def _remote_args(remote: str | None) -> list[str]:
    return ["--remote", remote] if remote else []
