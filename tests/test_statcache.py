"""The stat cache under the step cache's file hashes, and DVC's hash computed without DVC."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cellops.cache import statcache
from cellops.cache.hashing import file_digest, path_digest
from cellops.cache.statcache import StatCache
from cellops.data.dvchash import dvc_md5


def _aged(path: Path, content: bytes, monkeypatch) -> Path:
    """A file the cache may trust at once (as if written more than RACY_NS ago)."""
    path.write_bytes(content)
    monkeypatch.setattr(statcache, "RACY_NS", -(10**18))
    return path


def test_an_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    data = _aged(tmp_path / "data.bin", b"x" * 1000, monkeypatch)
    cache_file = tmp_path / "state" / "statcache.json"
    first = file_digest(data, StatCache(cache_file))
    assert first == file_digest(data)
    cache = StatCache(cache_file)
    file_digest(data, cache)
    cache.save()
    # the saved entry is trusted while the stat is unchanged: a planted digest comes back,
    # which shows the file was not read
    payload = json.loads(cache_file.read_text())
    payload["entries"][str(data)][5]["xxh3"] = "planted"
    cache_file.write_text(json.dumps(payload))
    assert file_digest(data, StatCache(cache_file)) == "planted"


def test_a_rewrite_with_the_same_size_and_mtime_is_seen(tmp_path, monkeypatch):
    data = _aged(tmp_path / "data.bin", b"a" * 64, monkeypatch)
    cache = StatCache(tmp_path / "statcache.json")
    before = file_digest(data, cache)
    st = os.stat(data)
    data.write_bytes(b"b" * 64)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: ctime moved
    assert os.stat(data).st_mtime_ns == st.st_mtime_ns
    assert file_digest(data, cache) == file_digest(data) != before


def test_a_file_written_just_now_is_never_trusted_by_its_stat(tmp_path):
    data = tmp_path / "fresh.bin"
    data.write_bytes(b"new")
    cache = StatCache(tmp_path / "statcache.json")
    file_digest(data, cache)
    cache.save()
    assert not (tmp_path / "statcache.json").exists()  # racily new: nothing stored
    data.write_bytes(b"NEW")  # same size, possibly the same timestamp tick
    assert file_digest(data, cache) == file_digest(data)


def test_folder_digests_are_the_same_with_and_without_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.txt", "sub/b.txt", ".hidden"):
        _aged(folder / name, name.encode(), monkeypatch)
    cache = StatCache(tmp_path / "statcache.json")
    assert path_digest(folder, cache) == path_digest(folder) == path_digest(folder, cache)


def test_dvc_hash_of_a_file_and_a_folder(tmp_path):
    """md5 of the bytes; for a folder, md5 of DVC's sorted JSON listing, then ".dir"."""
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    (folder / "x").write_text("1\n")
    (folder / "sub" / "y").write_text("2\n")
    assert dvc_md5(folder / "x") == hashlib.md5(b"1\n").hexdigest()
    listing = json.dumps(
        [
            {"md5": hashlib.md5(b"2\n").hexdigest(), "relpath": "sub/y"},
            {"md5": hashlib.md5(b"1\n").hexdigest(), "relpath": "x"},
        ],
        sort_keys=True,
    )
    assert dvc_md5(folder) == hashlib.md5(listing.encode()).hexdigest() + ".dir"
