"""ObjectStore (content-addressed values and files) and StepCache (the cache index)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellops.cache import index as cache_module
from cellops.cache.hashing import path_digest
from cellops.cache.index import CacheEntry, StepCache
from cellops.cache.objects import ObjectStore
from cellops.errors import CorruptObjectError, UnserializableError


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
