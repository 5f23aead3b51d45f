"""ObjectStore (content-addressed values and files) and StepCache (the cache index)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xxhash

from cellops.cache import index as cache_module
from cellops.cache import objects as objects_module
from cellops.cache.hashing import path_digest
from cellops.cache.index import CacheEntry, StepCache
from cellops.cache.objects import ObjectStore
from cellops.errors import (
    CellopsUsageError,
    CorruptObjectError,
    UnserializableError,
    UntrustedObjectError,
)


@pytest.fixture
def store(project: Path) -> ObjectStore:
    return ObjectStore(project / ".cellops" / "objects")


def stored_files(store: ObjectStore) -> list[Path]:
    """Every stored object file (not the temp folder)."""
    files = (p for p in store.root.rglob("*") if p.is_file())
    return sorted(p for p in files if p.relative_to(store.root).parts[0] != "tmp")


def object_file(store: ObjectStore, ref: dict) -> Path:
    (path,) = store.root.glob(f"*/{ref['digest']}.{ref['codec']}")
    return path


def assert_no_temp_files(store: ObjectStore, *more: Path) -> None:
    objects = stored_files(store)
    leftovers = [p for p in store.root.rglob("*") if p.is_file() and p not in objects]
    for folder in (store.root, *more):
        leftovers += folder.rglob("*.tmp")
    assert leftovers == []


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, np.nan, 2.0],
            "s": ["a", None, "c"],
            "c": pd.Categorical(["x", "y", "x"]),
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        }
    )


def bundle_round_trip(store: ObjectStore, value: object) -> object:
    ref = store.put_bundle({"values": {"v": value}}, {})
    assert ref["codec"] == "bundle"
    return store.get_bundle(ref, {})["values"]["v"]


def test_frames_arrays_and_plain_values_come_back_equal(store: ObjectStore) -> None:
    pd.testing.assert_frame_equal(bundle_round_trip(store, frame()), frame())
    df = pd.DataFrame({0: [1, 2], 1: ["a", "b"]})  # non-string column names
    pd.testing.assert_frame_equal(bundle_round_trip(store, df), df)
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = bundle_round_trip(store, array)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    assert list(bundle_round_trip(store, np.array([{"a": 1}, None], dtype=object))) == [
        {"a": 1},
        None,
    ]
    value = {"params": {"depth": 3}, "tags": {"a", "b"}, "rows": [1, 2.5, None]}
    assert bundle_round_trip(store, value) == value


def test_sklearn_model_comes_back_and_predicts_the_same(store: ObjectStore) -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    model = LogisticRegression().fit(X, y)
    back = bundle_round_trip(store, model)
    assert type(back) is LogisticRegression
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def test_modules_come_back_as_the_imported_module(store: ObjectStore) -> None:
    import json as json_module

    assert bundle_round_trip(store, json_module) is json_module


def test_outputs_stored_together_keep_their_sharing(store: ObjectStore) -> None:
    a = [1]
    ref = store.put_bundle({"values": {"a": a, "b": {"a": a}}}, {})
    values = store.get_bundle(ref, {})["values"]
    assert values["b"]["a"] is values["a"]


def test_live_notebook_values_are_stored_by_name_and_come_back_live(store: ObjectStore) -> None:
    pca = {"fitted": False}  # a notebook value the step read
    ref = store.put_bundle({"values": {"pipe": [pca, "clf"]}}, {id(pca): ("pca", pca)})
    live = {"fitted": False}
    values = store.get_bundle(ref, {"pca": live})["values"]
    assert values["pipe"][0] is live
    with pytest.raises(CorruptObjectError, match="'pca', which is not defined"):
        store.get_bundle(ref, {})


def test_identical_bundles_share_one_object(store: ObjectStore) -> None:
    first = store.put_bundle({"values": {"f": frame()}}, {})
    second = store.put_bundle({"values": {"f": frame()}}, {})
    third = store.put_bundle({"values": {"k": 1}}, {})
    assert first == second != third
    assert len(stored_files(store)) == 2
    assert store.has(first) and store.has(third)


def test_flipped_byte_in_stored_object_raises_corrupt(store: ObjectStore) -> None:
    ref = store.put_bundle({"values": {"a": np.arange(100)}}, {})
    path = object_file(store, ref)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObjectError, match="does not match its hash"):
        store.get_bundle(ref, {})


def test_missing_object_raises_corrupt(store: ObjectStore) -> None:
    ref = store.put_bundle({"values": {"k": "v"}}, {})
    object_file(store, ref).unlink()
    assert not store.has(ref)
    with pytest.raises(CorruptObjectError, match="missing"):
        store.get_bundle(ref, {})


def test_lock_is_unserializable(store: ObjectStore) -> None:
    with pytest.raises(UnserializableError, match="lock"):
        store.put_bundle({"values": {"x": threading.Lock()}}, {})
    assert_no_temp_files(store)
    assert stored_files(store) == []


def test_generator_is_unserializable(store: ObjectStore) -> None:
    with pytest.raises(UnserializableError, match="generator"):
        store.put_bundle({"values": {"x": (i for i in range(3))}}, {})
    assert_no_temp_files(store)
    assert stored_files(store) == []


def test_put_and_restore_a_file(store: ObjectStore, project: Path) -> None:
    source = project / "data.csv"
    source.write_bytes(b"id,v\n1,2\n")
    ref = store.put_path(source)
    assert ref["codec"] == "file"

    dest = project / "out" / "deep" / "data.csv"  # the folders do not exist yet
    assert store.restore_path(ref, dest) is True
    assert dest.read_bytes() == b"id,v\n1,2\n"
    assert store.restore_path(ref, dest) is False  # already equal: nothing written

    dest.write_bytes(b"changed")
    assert store.restore_path(ref, dest) is True
    assert dest.read_bytes() == b"id,v\n1,2\n"
    assert_no_temp_files(store, project)


def test_put_and_restore_a_folder(store: ObjectStore, project: Path) -> None:
    folder = project / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("a\n1\n")
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)))
    ref = store.put_path(folder)
    assert ref["codec"] == "dir"
    assert ref["tree_digest"] == path_digest(folder)

    dest = project / "restored"
    assert store.restore_path(ref, dest) is True
    assert path_digest(dest) == path_digest(folder)
    assert (dest / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert store.restore_path(ref, dest) is False

    (dest / "a.csv").write_text("edited")
    assert store.restore_path(ref, dest) is True
    assert (dest / "a.csv").read_text() == "a\n1\n"
    assert_no_temp_files(store, project)


def test_restoring_a_folder_with_a_corrupt_file_raises(store: ObjectStore, project: Path) -> None:
    folder = project / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("content")
    ref = store.put_path(folder)
    (file_object,) = store.root.glob("*/*.file")
    file_object.write_text("tampered")
    with pytest.raises(CorruptObjectError):
        store.restore_path(ref, project / "restored")


def test_no_temp_files_left_after_puts(store: ObjectStore, project: Path) -> None:
    (project / "f.txt").write_text("x")
    (project / "d").mkdir()
    (project / "d" / "g.txt").write_text("y")
    for value in (frame(), np.ones(3), {"a": 1}, [1, 2], frame()):
        store.put_bundle({"values": {"v": value}}, {})
    store.put_path(project / "f.txt")
    store.put_path(project / "d")
    store.put_path(project / "d")
    assert_no_temp_files(store)
    # 2 values deduplicated away; the folder holds one file object and one manifest
    assert len(stored_files(store)) == 4 + 1 + 1 + 1


def entry(key: str = "k1") -> CacheEntry:
    return CacheEntry(
        key=key,
        step="train",
        run_id="run123",
        bundle={"codec": "bundle", "digest": "ab" * 16, "size": 10},
        restored=["model"],
        output_digests={"model": "cd" * 16},
        files_out={"out.csv": {"codec": "file", "digest": "ef" * 16, "size": 3}},
        metrics={"f1": 0.9},
        duration_s=1.5,
    )


def test_step_cache_save_lookup_forget(project: Path) -> None:
    cache = StepCache(project / ".cellops" / "cache")
    assert cache.lookup("k1") is None
    saved = entry()
    cache.save(saved)
    assert cache.lookup("k1") == saved
    assert cache.lookup("k2") is None
    cache.forget("k1")
    assert cache.lookup("k1") is None
    cache.forget("k1")  # forgetting twice is harmless
    assert [p.name for p in cache.folder.iterdir()] == []


def test_step_cache_keeps_variants_of_a_key_by_their_checks(project: Path) -> None:
    cache = StepCache(project / ".cellops" / "cache")
    seed0, seed1 = entry(), entry()
    seed0.generator_checks = {"numpy": "s0"}
    seed1.generator_checks = {"numpy": "s1"}
    seed1.run_id = "run456"
    cache.save(seed0)
    cache.save(seed1)
    assert [e.run_id for e in cache.candidates("k1")] == ["run456", "run123"]
    cache.save(seed0)  # the same checks again: replaces its variant, now the newest
    assert [e.run_id for e in cache.candidates("k1")] == ["run123", "run456"]
    cache.forget("k1", seed0.variant)
    assert [e.run_id for e in cache.candidates("k1")] == ["run456"]
    for i in range(cache_module.MAX_VARIANTS + 3):
        extra = entry()
        extra.file_checks = {"data.csv": f"d{i}"}
        cache.save(extra)
    assert len(cache.candidates("k1")) == cache_module.MAX_VARIANTS


def test_step_cache_ignores_entries_of_another_format_version(project: Path) -> None:
    cache = StepCache(project / ".cellops" / "cache")
    cache.save(entry())
    path = cache.folder / "k1.json"
    payload = json.loads(path.read_text())
    assert payload["format"] == cache_module.FORMAT_VERSION
    payload["format"] = cache_module.FORMAT_VERSION + 1
    path.write_text(json.dumps(payload))
    assert cache.lookup("k1") is None
    del payload["format"]
    path.write_text(json.dumps(payload))
    assert cache.lookup("k1") is None


def test_step_cache_ignores_a_half_written_entry(project: Path) -> None:
    cache = StepCache(project / ".cellops" / "cache")
    cache.folder.mkdir(parents=True)
    (cache.folder / "k1.json").write_text('{"format": 1, "key": "k1", "st')
    assert cache.lookup("k1") is None


# -- signatures: nothing unsigned is unpickled ---------------------------------------------------


def evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    return pickle.dumps({"values": {"v": Evil()}})


def planted(store: ObjectStore, data: bytes) -> dict:
    """`data` under its valid content-addressed name, as whoever writes the remote could."""
    digest = xxhash.xxh3_128_hexdigest(data)
    path = store.root / digest[:2] / f"{digest}.bundle"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"codec": "bundle", "digest": digest, "size": len(data)}


def test_an_unsigned_pickle_is_refused_before_it_is_unpickled(store: ObjectStore, tmp_path) -> None:
    proof = tmp_path / "proof"
    pickle.loads(evil_pickle(proof))
    assert proof.exists()  # the payload runs code when unpickled

    marker = tmp_path / "marker"
    ref = planted(store, evil_pickle(marker))
    with pytest.raises(UntrustedObjectError, match="is not signed by this project's key"):
        store.get_bundle(ref, {})
    # with a header, but a tag made without the key
    forged = objects_module.BUNDLE_MAGIC + bytes(32) + evil_pickle(marker)
    with pytest.raises(UntrustedObjectError, match="signature that does not match"):
        store.get_bundle(planted(store, forged), {})
    assert not marker.exists()


def test_a_bundle_signed_with_another_projects_key_needs_that_key(
    store: ObjectStore, tmp_path
) -> None:
    theirs = ObjectStore(tmp_path / "theirs" / ".cellops" / "objects")
    ref = theirs.put_bundle({"values": {"v": [1, 2]}}, {})
    for path in theirs.root.rglob("*.bundle"):  # pulled: same bytes, same name
        (store.root / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, store.root / path.parent.name / path.name)
    with pytest.raises(UntrustedObjectError, match=r"\.cellops/objects/.*\.bundle has a sig"):
        store.get_bundle(ref, {})
    shutil.copyfile(theirs.key_file, store.key_file)  # the key shared out of band
    assert ObjectStore(store.root).get_bundle(ref, {})["values"]["v"] == [1, 2]


def test_the_key_is_made_once_private_and_out_of_git(project: Path) -> None:
    store = ObjectStore(project / ".cellops" / "objects")
    store.put_bundle({"values": {"v": 1}}, {})
    key = project / ".cellops" / "cache.key"
    assert store.key_file == key
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    assert ObjectStore(store.root).key == store.key  # read back, not made again
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert ".cellops/objects/" in status and "cache.key" not in status
    key.write_text("123\n")
    with pytest.raises(CellopsUsageError, match="is damaged"):
        ObjectStore(store.root).put_bundle({"values": {"v": 1}}, {})


def test_an_entry_not_signed_with_the_key_is_not_a_candidate(project: Path, tmp_path) -> None:
    cache = StepCache(project / ".cellops" / "cache")
    cache.save(entry())
    path = cache.folder / "k1.json"
    assert cache.candidates("k1") and cache.untrusted == []
    payload = json.loads(path.read_text())
    payload["files_out"] = {"../../.bashrc": payload["files_out"]["out.csv"]}  # tampered
    path.write_text(json.dumps(payload))
    assert cache.candidates("k1") == []
    assert "has a signature that does not match" in str(cache.untrusted[0])
    del payload["signature"]
    path.write_text(json.dumps(payload))
    assert cache.candidates("k1") == []
    assert "cache entry .cellops/cache/k1.json is not signed" in str(cache.untrusted[0])

    other = StepCache(tmp_path / "other" / ".cellops" / "cache")  # another key
    other.save(entry())
    shutil.copyfile(other.folder / "k1.json", path)
    assert cache.candidates("k1") == []
    shutil.copyfile(other.key_file, cache.key_file)
    assert [e.run_id for e in StepCache(cache.folder).candidates("k1")] == ["run123"]


def test_a_folder_manifest_cannot_name_a_path_outside_its_folder(
    store: ObjectStore, project: Path
) -> None:
    folder = project / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    ref = store.put_path(folder)
    manifest = json.loads(object_file(store, ref).read_text())
    bad = json.dumps({"../escaped.txt": manifest["a.txt"]}).encode()
    with store.temp_file("dir") as (tmp, fh):
        fh.write(bad)
        fh.close()
        bad_ref = store._commit(tmp, "dir")
    with pytest.raises(CorruptObjectError, match="names '../escaped.txt'"):
        store.restore_path(bad_ref, project / "restored")
    assert not (project / "escaped.txt").exists()


# -- temporary files -----------------------------------------------------------------------------


def test_sweep_keeps_live_and_foreign_temp_files_and_removes_abandoned_ones(
    store: ObjectStore,
) -> None:
    tmp = store.root / "tmp"
    with store.temp_file("bundle") as (mine, fh):
        fh.write(b"being written")
        fh.flush()
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        host = objects_module._host_tag()
        gone = tmp / f".bundle.{host}.{int(dead.stdout)}.1.abc.tmp"
        foreign = tmp / f".bundle.{'0' * 8 if host != '0' * 8 else '1' * 8}.1.1.abc.tmp"
        reused = tmp / f".file.{host}.{os.getpid()}.1.abc.tmp"  # our pid, another start
        fresh_old = tmp / ".bundle.k2j4h5ab.tmp"  # an older cellops's: written just now
        for path in (gone, foreign, reused, fresh_old):
            path.write_bytes(b"x")
        removed = store.sweep_temp()
        assert mine.exists() and foreign.exists() and fresh_old.exists()
        assert sorted(removed) == sorted([gone, reused])
        assert not gone.exists() and not reused.exists()
    assert not mine.exists()  # the block's end removes what it did not rename
