"""Content digests: stable across processes, sensitive to content, blind to formatting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellops.hashing import code_digest, path_digest, value_digest

# Builds the same values in this process and in subprocesses with other hash seeds.
VALUES_SOURCE = textwrap.dedent(
    """
    import numpy as np
    import pandas as pd

    def build_values():
        return {
            "strings_set": {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"},
            "frozenset": frozenset({"x", "y", ("t", 1)}),
            "dict": {"b": [1, 2.5, None], "a": {"nested", "set"}, "c": {"k": (True, b"raw")}},
            "dataframe": pd.DataFrame(
                {
                    "i": [3, 1, 2],
                    "f": [0.5, float("nan"), 2.25],
                    "s": ["north", "south", None],
                    "c": pd.Categorical(["lo", "hi", "lo"]),
                    "t": pd.to_datetime(["2024-01-01", "2024-03-01", None]),
                },
                index=pd.Index(["r1", "r2", "r3"], name="row"),
            ),
            "array": np.arange(24, dtype=np.float32).reshape(4, 6).T,
            "series": pd.Series(["a", "b", "a"], name="letters"),
        }
    """
)

DIGEST_SCRIPT = VALUES_SOURCE + textwrap.dedent(
    """
    import json
    from cellops.hashing import value_digest

    print(json.dumps({k: value_digest(v) for k, v in build_values().items()}))
    """
)


def build_values() -> dict:
    namespace: dict = {}
    exec(VALUES_SOURCE, namespace)
    return namespace["build_values"]()


def digests_in_subprocess(seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", DIGEST_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_value_digest_is_equal_across_processes_with_different_hash_seeds() -> None:
    here = {k: value_digest(v) for k, v in build_values().items()}
    first = digests_in_subprocess("1")
    second = digests_in_subprocess("4242")
    assert first == here
    assert second == here


def test_set_iteration_order_does_not_matter() -> None:
    words = [f"word{i}" for i in range(50)]
    assert value_digest(set(words)) == value_digest(set(reversed(words)))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (1, 2),
        (1, True),
        (1, 1.0),
        ("1", 1),
        ([1, 2], (1, 2)),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"a": 2}),
        ({"a": 1}, {"b": 1}),
        ({"a", "b"}, {"a", "c"}),
        (b"abc", b"abd"),
        (None, 0),
        # nesting must be unambiguous
        ({"a": {"b": 1}}, {"a": {}, "b": 1}),
        ([[1], [2]], [[1, 2], []]),
        ((b"a", b"bbuiltins.bytes\x00c"), (b"abuiltins.bytes\x00b", b"c")),
    ],
)
def test_value_digest_differs_when_content_differs(left: object, right: object) -> None:
    assert value_digest(left) != value_digest(right)


def test_dataframe_digest_differs_on_cell_column_index_and_dtype_changes() -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    base = value_digest(df)
    assert value_digest(df.copy()) == base

    changed_cell = df.copy()
    changed_cell.loc[1, "b"] = "Y"
    renamed = df.rename(columns={"b": "c"})
    reordered_columns = df[["b", "a"]]
    other_index = df.set_axis([10, 11, 12])
    other_dtype = df.astype({"a": "int32"})
    fewer_rows = df.iloc[:2]
    for other in (changed_cell, renamed, reordered_columns, other_index, other_dtype, fewer_rows):
        assert value_digest(other) != base


def test_array_digest_differs_on_values_shape_and_dtype() -> None:
    array = np.arange(6, dtype=np.int64).reshape(2, 3)
    base = value_digest(array)
    assert value_digest(array.copy()) == base
    assert value_digest(np.asfortranarray(array)) == base  # memory layout does not count
    changed = array.copy()
    changed[1, 2] = -1
    assert value_digest(changed) != base
    assert value_digest(array.reshape(3, 2)) != base
    assert value_digest(array.astype(np.int32)) != base


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([1, -2, 3, 4], dtype="int64"),
        pd.Series([0.5, float("nan"), -1e300, 3.0], dtype="float64"),
        pd.Series(["a", "bb", None, "é"], dtype="object"),
        pd.Series(pd.Categorical(["lo", "hi", "lo", None])),
        pd.Series(
            pd.to_datetime(["2024-01-01 00:00", None, "1999-12-31 23:59", "2024-02-29 12:00"])
        ),
        pd.Series(pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")),
    ],
    ids=["int", "float", "str", "category", "datetime", "datetime_tz"],
)
def test_dataframe_digest_survives_parquet_round_trip(tmp_path: Path, column: pd.Series) -> None:
    df = pd.DataFrame({"col": column, "other": range(len(column))})
    path = tmp_path / "frame.parquet"
    df.to_parquet(path)
    back = pd.read_parquet(path)
    assert value_digest(back) == value_digest(df)


def test_mixed_dataframe_digest_survives_parquet_round_trip(tmp_path: Path) -> None:
    df = build_values()["dataframe"]
    path = tmp_path / "frame.parquet"
    df.to_parquet(path)
    assert value_digest(pd.read_parquet(path)) == value_digest(df)


def test_code_digest_ignores_comments_and_whitespace() -> None:
    plain = "x = load(path)\nif x:\n    y = x + 1\n"
    noisy = "# load the data\nx   =   load( path )   # inline comment\n\n\nif x:\n  y = x+1   \n"
    assert code_digest(noisy) == code_digest(plain)


@pytest.mark.parametrize(
    "changed",
    [
        "x = load(path)\nif x:\n    y = x + 2\n",
        "x = load(path)\nif x:\n    y = 1 + x\n",
        "x = load(other)\nif x:\n    y = x + 1\n",
        "x = load(path)\nif not x:\n    y = x + 1\n",
        "x = load(path)\nif x:\n    pass\ny = x + 1\n",
        "x = load(path)\nif x:\n    y = x + 1\n    # ignored\nprint(y)\n",
        'x = load("path")\nif x:\n    y = x + 1\n',
    ],
)
def test_code_digest_changes_with_the_code(changed: str) -> None:
    assert code_digest(changed) != code_digest("x = load(path)\nif x:\n    y = x + 1\n")


def test_code_digest_of_unparsable_source_still_tells_code_apart() -> None:
    assert code_digest("x = = 1") != code_digest("x = = 2")
    assert code_digest("x = = 1   ") == code_digest("x = = 1")


def make_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_text("id,v\n1,2\n")
    (root / "sub" / "b.txt").write_text("hello")
    return root


def test_path_digest_of_a_file_is_its_content(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("same")
    (tmp_path / "two.txt").write_text("same")
    assert path_digest(tmp_path / "one.txt") == path_digest(tmp_path / "two.txt")
    (tmp_path / "two.txt").write_text("different")
    assert path_digest(tmp_path / "one.txt") != path_digest(tmp_path / "two.txt")


def test_path_digest_of_folder_is_stable_for_equal_trees(tmp_path: Path) -> None:
    assert path_digest(make_tree(tmp_path / "x")) == path_digest(make_tree(tmp_path / "y"))


def test_path_digest_of_folder_changes_when_a_file_changes(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "data")
    before = path_digest(folder)
    (folder / "sub" / "b.txt").write_text("hellO")
    assert path_digest(folder) != before


def test_path_digest_of_folder_changes_when_a_file_is_renamed(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "data")
    before = path_digest(folder)
    (folder / "sub" / "b.txt").rename(folder / "sub" / "c.txt")
    assert path_digest(folder) != before
    (folder / "sub" / "c.txt").rename(folder / "c.txt")  # moved to another folder
    moved = path_digest(folder)
    assert moved != before


def test_path_digest_of_folder_changes_when_a_file_is_added_or_removed(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "data")
    before = path_digest(folder)
    (folder / "extra.txt").write_text("")
    with_extra = path_digest(folder)
    assert with_extra != before
    (folder / "extra.txt").unlink()
    assert path_digest(folder) == before
