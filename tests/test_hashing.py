"""Content digests: stable across processes, sensitive to content, blind to formatting."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from cellops.cache.hashing import code_digest, is_library, path_digest, value_digest
from cellops.errors import UndigestableError

# Builds the same values in this process (as `__main__` code) and in fresh subprocesses with
# other hash seeds: data of every kind, and functions and classes defined "in the notebook".
VALUES_SOURCE = textwrap.dedent(
    """
    import collections
    import dataclasses
    import datetime
    import decimal
    import enum
    import fractions
    import functools
    import pathlib
    import types

    import numpy as np
    import pandas as pd

    factor = 3
    Pair = collections.namedtuple("Pair", "left right")

    class Color(enum.Enum):
        RED = 1
        BLUE = 2

    @dataclasses.dataclass
    class Point:
        x: int
        y: float = 0.5
        tags: list = dataclasses.field(default_factory=list)

        def norm(self):
            return (self.x**2 + self.y**2) ** 0.5 * factor

    class Model:
        kind = "linear"
        __slots__ = ("w", "b")

        def __init__(self, w):
            self.w = w
            self.b = np.zeros(3)

        def predict(self, x):
            return scale(x) + self.w

        @property
        def size(self):
            return len(self.b)

        @staticmethod
        def make():
            return Model(1)

        @classmethod
        def named(cls, name):
            return cls(len(name))

    class Sub(Model):
        __slots__ = ()

        def predict(self, x):
            return super().predict(x) * 2

    def scale(v):
        return v * factor

    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    def even(n):
        return n == 0 or odd(n - 1)

    def odd(n):
        return n != 0 and even(n - 1)

    def adder(k):
        def add(x):
            return x + k
        return add

    def fitted():
        from sklearn.datasets import load_iris
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = load_iris(return_X_y=True)
        pipe = make_pipeline(StandardScaler(), PCA(2), LogisticRegression()).fit(X, y)
        grid = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}, cv=3)
        grid.fit(X, y)
        grid.refit_time_ = 0.0  # timings differ between runs: not what is compared here
        for key in [k for k in grid.cv_results_ if k.endswith("_time")]:
            grid.cv_results_[key] = np.zeros_like(grid.cv_results_[key])
        return {"pipeline": pipe, "grid_search": grid, "iris": load_iris()}

    def build_values():
        shared = [1, 2]
        rng = np.random.default_rng(7)
        return {
            **fitted(),
            "scalars": [None, True, 1, -0.0, float("nan"), float("inf"), 2**100, 1 + 2j, b"raw"],
            "strings_set": {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"},
            "frozenset": frozenset({"x", "y", ("t", 1)}),
            "mixed_set": {1.5, float("nan"), 2, ("a", None), frozenset({3})},
            "dict": {"b": [1, 2.5, None], "a": {"nested", "set"}, "c": {"k": (True, b"raw")}},
            "long_list": [i if i % 3 else str(i) for i in range(40)] + [2.5, None, [1], 2**80],
            "long_dict": {f"k{i}": i * 0.5 for i in range(30)},
            "shared": [shared, shared, {"again": shared}],
            "generic": [
                decimal.Decimal("1.50"),
                fractions.Fraction(1, 3),
                datetime.datetime(2024, 1, 2, 3, tzinfo=datetime.timezone.utc),
                datetime.date(2020, 1, 1),
                datetime.timedelta(days=3),
                pathlib.PurePosixPath("data/raw.csv"),
                Color.BLUE,
                range(3),
                int | None,
                list[int],
                collections.OrderedDict(a=1),
                collections.Counter("abca"),
                Pair(1, "x"),
            ],
            "array": np.arange(24, dtype=np.float32).reshape(4, 6).T,
            "arrays": [
                np.arange(20)[::3],
                np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
                np.array(["2020-01-01", "NaT"], dtype="M8[D]"),
                np.array([1, "a", None, [2]], dtype=object),
                np.ma.masked_array([1.0, 2.0, 3.0], mask=[1, 0, 0]),
                np.ma.masked_array(np.array(["a", "b"], dtype=object), mask=[0, 1]),
                np.float32(2.5),
                np.int64(7),
                np.str_("s"),
                np.dtype("<M8[ns]"),
            ],
            "random_state": np.random.RandomState(0),
            "generator": rng,
            "namespace": types.SimpleNamespace(a=np.arange(20)[::3], b="x"),
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
            "extension_frame": pd.DataFrame(
                {
                    "n": pd.array([1, None, 3], dtype="Int64"),
                    "s": pd.array(["a", None, "c"], dtype="string"),
                    "z": pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"),
                    "p": pd.period_range("2024-01", periods=3, freq="M"),
                    "o": [1, "a", [1, {"k": None}]],
                    "c": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True),
                },
                index=pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a")], names=["n", "l"]),
            ),
            "wide_frame": pd.DataFrame(rng.random((50, 6)), columns=list("abcdef")),
            "series": pd.Series(["a", "b", "a"], name="letters"),
            "indexes": [
                pd.RangeIndex(2, 20, 3),
                pd.date_range("2024-01-01", periods=4, freq="D"),
                pd.CategoricalIndex(["a", "b", "a"]),
                pd.interval_range(0, 3),
            ],
            "point": Point(3, tags=["a"]),
            "model": Sub(2.0),
            "classes": [Point, Model, Sub, Color, Pair],
            "functions": [scale, fact, even, adder(5), lambda x, y=2: x * y + factor],
            "callables": [functools.partial(scale, 2), Model(1).predict, Model.named],
        }
    """
)

DIGEST_SCRIPT = VALUES_SOURCE + textwrap.dedent(
    """
    import json
    from cellops.cache.hashing import value_digest

    print(json.dumps({k: value_digest(v) for k, v in build_values().items()}))
    """
)

RESTORE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import cloudpickle
    from cellops.cache.hashing import value_digest

    with open(sys.argv[1], "rb") as fh:
        values = cloudpickle.load(fh)
    print(json.dumps({k: value_digest(v) for k, v in values.items()}))
    """
)
# Values whose every part stdlib pickle can find again (not classes defined in `__main__`).
PICKLABLE = [
    *("pipeline", "grid_search", "iris", "scalars", "strings_set", "frozenset", "mixed_set"),
    *("dict", "long_list", "long_dict", "shared", "array", "arrays", "random_state"),
    *("generator", "namespace", "dataframe", "extension_frame", "wide_frame", "series"),
    "indexes",
]


def notebook(source: str) -> dict:
    """Runs `source` as a notebook cell would: its functions and classes belong to `__main__`
    (compiled without this file's `from __future__ import annotations`)."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<cell>", "exec", dont_inherit=True), namespace)
    return namespace


def build_values() -> dict:
    return notebook(VALUES_SOURCE)["build_values"]()


@pytest.fixture(scope="module")
def values() -> dict:
    return build_values()


@pytest.fixture(scope="module")
def digests(values: dict) -> dict[str, str]:
    return {k: value_digest(v) for k, v in values.items()}


def run_python(*args: str, seed: str = "0", cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, text=True
    )


def output_of(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0
    return json.loads(out)


def test_value_digest_is_equal_across_processes_with_different_hash_seeds(digests: dict) -> None:
    first = run_python("-c", DIGEST_SCRIPT, seed="1")
    second = run_python("-c", DIGEST_SCRIPT, seed="4242")
    assert output_of(first) == digests
    assert output_of(second) == digests


def test_cloudpickled_values_digest_alike_in_a_fresh_process(
    tmp_path: Path, values: dict, digests: dict
) -> None:
    """Functions and classes from `__main__` are rebuilt by value there, not found again."""
    path = tmp_path / "values.pkl"
    path.write_bytes(cloudpickle.dumps(values))
    assert output_of(run_python("-c", RESTORE_SCRIPT, str(path), seed="99")) == digests


@pytest.mark.parametrize("key", PICKLABLE)
def test_pickle_round_trip_keeps_the_digest(values: dict, digests: dict, key: str) -> None:
    assert value_digest(pickle.loads(pickle.dumps(values[key], protocol=5))) == digests[key]
    assert value_digest(copy.deepcopy(values[key])) == digests[key]


def test_cloudpickle_round_trip_keeps_the_digest(values: dict, digests: dict) -> None:
    restored = cloudpickle.loads(cloudpickle.dumps(values))
    assert {k: value_digest(v) for k, v in restored.items()} == digests


def test_class_instance_defined_in_main_digests_alike_in_fresh_processes() -> None:
    script = textwrap.dedent(
        """
        import json
        import numpy as np
        from cellops.cache.hashing import value_digest

        class Scaler:
            offset = 1.5

            def __init__(self, k):
                self.k = k
                self.table = {"w": np.arange(4.0)}

            def __call__(self, x):
                return x * self.k + self.offset

        print(json.dumps([value_digest(Scaler(2)), value_digest(Scaler)]))
        """
    )
    runs = [run_python("-c", script, seed=seed) for seed in ("3", "17")]
    first, second = (output_of(run) for run in runs)
    assert first == second
    changed = script.replace("x * self.k", "x * self.k * 1")
    assert output_of(run_python("-c", changed))[0] != first[0]


def test_set_iteration_order_does_not_matter() -> None:
    words = [f"word{i}" for i in range(50)]
    assert value_digest(set(words)) == value_digest(set(reversed(words)))
    pairs = [(i, str(i)) for i in range(50)]
    assert value_digest(set(pairs)) == value_digest(set(reversed(pairs)))


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


def test_function_digest_follows_the_globals_it_reads() -> None:
    ns = notebook(
        """
        factor = 2
        def scale(v):
            return v * factor
        def total(v):
            return scale(v) + 1
        """
    )
    before = value_digest(ns["scale"]), value_digest(ns["total"])
    ns["factor"] = 3
    after = value_digest(ns["scale"]), value_digest(ns["total"])
    assert after[0] != before[0] and after[1] != before[1]
    ns["factor"] = 2
    assert (value_digest(ns["scale"]), value_digest(ns["total"])) == before


def test_function_digest_changes_with_the_code_it_calls() -> None:
    ns = notebook(
        """
        def inner(v):
            return v + 1
        def outer(v):
            return inner(v) * 2
        """
    )
    before = value_digest(ns["outer"])
    exec("def inner(v):\n    return v + 2\n", ns)
    assert value_digest(ns["outer"]) != before


def test_function_digest_does_not_read_names_used_only_as_attributes() -> None:
    ns = notebook("mean = 1\ndef f(frame):\n    return frame.mean()\n")
    before = value_digest(ns["f"])
    ns["mean"] = threading.Lock()  # `frame.mean` is not the global: no change, no error
    assert value_digest(ns["f"]) == before


def test_function_digest_covers_closure_defaults_and_code() -> None:
    source = """
        def adder(k):
            def add(x, step=1, *, scale=1):
                return (x + k) * step * scale
            return add
        """
    adder = notebook(source)["adder"]
    base = value_digest(adder(1))
    assert value_digest(adder(1)) == base
    assert value_digest(adder(2)) != base
    other = adder(1)
    other.__defaults__ = (2,)
    assert value_digest(other) != base
    other = adder(1)
    other.__kwdefaults__ = {"scale": 3}
    assert value_digest(other) != base
    assert value_digest(notebook(source.replace("* scale", "* scale + 0"))["adder"](1)) != base


def test_function_digest_ignores_where_the_code_was_written() -> None:
    source = "def f(x):\n    return x + 1\n"
    moved = notebook("\n\n# a comment moves the line numbers\n" + source)
    assert value_digest(notebook(source)["f"]) == value_digest(moved["f"])


def test_recursive_functions_terminate_and_tell_apart() -> None:
    ns = notebook(
        """
        def even(n):
            return n == 0 or odd(n - 1)
        def odd(n):
            return n != 0 and even(n - 1)
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)
        """
    )
    assert len({value_digest(ns[name]) for name in ("even", "odd", "fact")}) == 3


def test_decorated_notebook_functions_count_their_code() -> None:
    source = "import functools\n@functools.lru_cache\ndef f(x):\n    return x + 1\n"
    base = value_digest(notebook(source)["f"])
    assert value_digest(notebook(source)["f"]) == base
    assert value_digest(notebook(source.replace("x + 1", "x + 2"))["f"]) != base


def test_functions_a_library_makes_at_run_time_count_their_data() -> None:
    two = functools.lru_cache(maxsize=2)  # a closure of functools' own code
    assert value_digest(two) == value_digest(functools.lru_cache(maxsize=2))
    assert value_digest(two) != value_digest(functools.lru_cache(maxsize=3))
    assert not is_library(two, None)


CLASS_SOURCE = """
    class Base:
        def f(self):
            return 1
    class Thing(Base):
        __slots__ = ("a",)
        limit = 3
        def g(self):
            return self.f() + self.limit
    """


@pytest.mark.parametrize(
    ("old", "new"),
    [("limit = 3", "limit = 4"), ("return 1", "return 2"), ("self.f() +", "self.f() -")],
)
def test_class_digest_covers_attributes_methods_and_bases(old: str, new: str) -> None:
    base = value_digest(notebook(CLASS_SOURCE)["Thing"])
    assert value_digest(notebook(CLASS_SOURCE)["Thing"]) == base
    assert value_digest(notebook(CLASS_SOURCE.replace(old, new))["Thing"]) != base


def test_class_digest_does_not_change_when_instances_are_digested() -> None:
    thing = notebook(CLASS_SOURCE)["Thing"]
    before = value_digest(thing)
    instance = thing()
    instance.a = 1
    value_digest(instance)  # copyreg caches `__slotnames__` on the class
    pickle.dumps(instance.__reduce_ex__(4)[2])
    assert value_digest(thing) == before


def test_instance_digest_is_its_type_and_its_state_in_name_order() -> None:
    box = notebook("class Box:\n    pass\n")["Box"]
    first, second = box(), box()
    first.x, first.y = 1, 2
    second.y, second.x = 2, 1
    assert value_digest(first) == value_digest(second)
    second.x = 3
    assert value_digest(first) != value_digest(second)
    assert value_digest(types.SimpleNamespace(x=1, y=2)) != value_digest(first)
    assert value_digest(types.SimpleNamespace(x=1, y=2)) == value_digest(
        types.SimpleNamespace(y=2, x=1)
    )


def test_estimator_digest_follows_parameters_and_fit() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=500)
    assert value_digest(model) == value_digest(LogisticRegression(C=1.0, max_iter=500))
    assert value_digest(model) != value_digest(LogisticRegression(C=2.0, max_iter=500))
    fitted = copy.deepcopy(model).fit(*load_iris(return_X_y=True))
    assert value_digest(fitted) != value_digest(model)


def test_dict_subclasses_count_their_type_and_items() -> None:
    from sklearn.utils import Bunch

    assert value_digest(Bunch(a=1)) != value_digest({"a": 1})
    assert value_digest(Bunch(a=1)) != value_digest(Bunch(a=2))
    assert value_digest(pickle.loads(pickle.dumps(Bunch(a=1)))) == value_digest(Bunch(a=1))


def test_random_state_digest_follows_its_state() -> None:
    for rng in (np.random.RandomState(0), np.random.default_rng(0)):
        before = value_digest(rng)
        rng.random()
        assert value_digest(rng) != before


@pytest.mark.parametrize("repeat", [1, 40], ids=["short", "long"])
def test_object_cells_are_digested_by_type_and_content(repeat: int) -> None:
    def frame(cells: list) -> pd.DataFrame:
        return pd.DataFrame({"o": cells * repeat})

    pairs = [
        ([1, "a"], ["1", "a"]),
        ([True, "a"], [1, "a"]),
        ([None, "a"], [float("nan"), "a"]),
        ([[1, 2], "a"], [(1, 2), "a"]),
        ([{"k": 1}, "a"], [{"k": 2}, "a"]),
        ([np.str_("a"), "b"], ["a", "b"]),
        (["ab", "c"], ["a", "bc"]),
        (["a\0b", "c"], ["a", "b\0c"]),
        ([2**70, "a"], [2**70 + 1, "a"]),
    ]
    for left, right in pairs:
        assert value_digest(frame(left)) != value_digest(frame(right)), (left, right)
        assert value_digest(frame(left)) == value_digest(frame(copy.deepcopy(left)))
        assert value_digest(left * repeat) != value_digest(right * repeat)


def test_bool_is_not_int_anywhere() -> None:
    assert value_digest(True) != value_digest(1)
    assert value_digest([True] * 20) != value_digest([1] * 20)
    assert value_digest({True: "x"}) != value_digest({1: "x"})
    assert value_digest(np.array([True, False])) != value_digest(np.array([1, 0]))
    assert value_digest(pd.Series([True, False])) != value_digest(pd.Series([1, 0]))
    assert value_digest(np.bool_(True)) != value_digest(True)


def test_floats_are_digested_by_their_bits() -> None:
    assert value_digest(float("nan")) == value_digest(float("nan"))
    assert value_digest(-0.0) != value_digest(0.0)
    assert value_digest([-0.0] * 20) != value_digest([0.0] * 20)
    assert value_digest(np.float64(1.0)) != value_digest(1.0)
    assert value_digest(np.float32(1.0)) != value_digest(np.float64(1.0))


def test_sharing_counts_and_survives_pickle() -> None:
    a = [1]
    assert value_digest([a, a]) != value_digest([[1], [1]])
    assert value_digest(pickle.loads(pickle.dumps([a, a]))) == value_digest([a, a])
    array = np.arange(3)
    assert value_digest([array, array]) != value_digest([array, array.copy()])
    cyclic: list = [1]
    cyclic.append(cyclic)
    assert value_digest(pickle.loads(pickle.dumps(cyclic))) == value_digest(cyclic)
    # the identity of atoms and tuples of atoms does not count (pickle and interning vary)
    text = "".join(["x"] * 100)
    assert value_digest([text, text]) == value_digest([text, "".join(["x"] * 100)])
    pair = tuple(range(3))
    assert value_digest([pair, pair]) == value_digest([pair, tuple(range(3))])


def test_objects_shared_through_a_set_keep_their_sharing() -> None:
    box = notebook("class Box:\n    pass\n")["Box"]
    inside = box()
    shared = [{inside}, inside]
    assert value_digest(shared) != value_digest([{inside}, copy.copy(inside)])
    assert value_digest(cloudpickle.loads(cloudpickle.dumps(shared))) == value_digest(shared)


def test_array_views_digest_as_their_copies() -> None:
    a = np.arange(60.0).reshape(6, 10)
    for view in (a[::2], a.T, a[:, 3], a[1:, ::-1]):
        assert value_digest(view) == value_digest(view.copy())
        assert value_digest(pickle.loads(pickle.dumps(view))) == value_digest(view)
    big = np.random.default_rng(0).random((3000, 500)).T  # copied a chunk at a time
    assert value_digest(big) == value_digest(np.ascontiguousarray(big))


def test_masked_structured_and_datetime_arrays() -> None:
    masked = np.ma.masked_array([1.0, 2.0], mask=[0, 1])
    assert value_digest(masked) != value_digest(np.ma.masked_array([1.0, 2.0], mask=[1, 0]))
    assert value_digest(masked) != value_digest(np.array([1.0, 2.0]))
    refilled = np.ma.masked_array([1.0, 2.0], mask=[0, 1], fill_value=7.0)
    assert value_digest(refilled) != value_digest(masked)
    fields = np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")])
    renamed = np.array([(1, 2.0)], dtype=[("b", "<i4"), ("a", "<f8")])
    assert value_digest(fields) != value_digest(renamed)
    days = np.array(["2020-01-01"], dtype="M8[D]")
    assert value_digest(days) != value_digest(days.astype("M8[s]"))


def test_numeric_frame_digest_does_not_depend_on_memory_layout() -> None:
    rng = np.random.default_rng(1)
    from_2d = pd.DataFrame(rng.random((1000, 5)), columns=list("abcde"))  # rows interleaved
    by_column = pd.DataFrame({c: from_2d[c].to_numpy().copy() for c in from_2d})
    base = value_digest(from_2d)
    assert value_digest(by_column) == base
    assert value_digest(from_2d.copy()) == base
    assert value_digest(pickle.loads(pickle.dumps(from_2d))) == base
    changed = from_2d.copy()
    changed.iloc[500, 3] = 0.0
    assert value_digest(changed) != base
    assert value_digest(from_2d.assign(s="x")) == value_digest(by_column.assign(s="x"))


def test_pandas_extension_dtypes_count() -> None:
    def series(*args: object, **kwargs: object) -> str:
        return value_digest(pd.Series(*args, **kwargs))

    assert series([1, None], dtype="Int64") != series([1, None], dtype="Float64")
    assert series([1, 2], dtype="Int64") != series([1, 2])
    assert series(["a"], dtype="string") != series(["a"], dtype=object)
    assert series(["a"], dtype="string[python]") != series(["a"], dtype="string[pyarrow]")
    categorical = pd.Categorical(["a", "b"])
    assert value_digest(categorical) != value_digest(pd.Categorical(["a", "b"], ["b", "a"]))
    assert value_digest(categorical) != value_digest(pd.Categorical(["a", "b"], ordered=True))
    utc = pd.date_range("2024-01-01", periods=2, tz="UTC")
    assert series(utc) != series(utc.tz_convert("Europe/Paris"))
    daily = pd.date_range("2024-01-01", periods=3, freq="D")
    assert value_digest(daily) != value_digest(pd.DatetimeIndex(list(daily)))  # no freq


def test_undigestable_values_raise_naming_the_part(tmp_path: Path) -> None:
    opened = r"^`value\['f'\]` is a _io.TextIOWrapper \(an open file"
    with open(tmp_path / "f.txt", "w") as fh, pytest.raises(UndigestableError, match=opened):
        value_digest({"f": fh})
    with pytest.raises(UndigestableError, match=r"^`value\[1\]` is a generator"):
        value_digest([1, (i for i in range(3))])
    with pytest.raises(UndigestableError, match=r"^`x\[0\]` is a _thread.lock"):
        value_digest([threading.Lock()], name="x")


def test_undigestable_part_of_a_fitted_pipeline_is_named() -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler())
    model.steps[0][1].lock_ = threading.Lock()
    with pytest.raises(UndigestableError, match=r"^`model\.steps\[0\]\[1\]\.lock_` is a _thread"):
        value_digest(model, name="model")


def test_undigestable_globals_and_closures_are_named() -> None:
    ns = notebook("import threading\nlock = threading.Lock()\ndef f():\n    return lock\n")
    with pytest.raises(UndigestableError, match=r"^`f\.__globals__\['lock'\]` is a _thread"):
        value_digest(ns["f"], name="f")
    ns = notebook("def make(lock):\n    return lambda: lock\n")
    with pytest.raises(UndigestableError, match=r"__closure__\[0\]\.cell_contents` is a _th"):
        value_digest(ns["make"](threading.Lock()))


def test_objects_that_reduce_to_nothing_usable_raise() -> None:
    odd = notebook("class Odd:\n    def __reduce_ex__(self, protocol):\n        return 42\n")
    with pytest.raises(UndigestableError, match="nothing usable"):
        value_digest({"k": odd["Odd"]()})


def test_deep_nesting_does_not_hit_the_recursion_limit() -> None:
    def nested(depth: int) -> list:
        top = current = []
        for _ in range(depth):
            current.append([])
            current = current[0]
        return top

    assert value_digest(nested(5000)) != value_digest(nested(5001))  # > the recursion limit
    with pytest.raises(UndigestableError, match="deeper than"):
        value_digest(nested(20_000))


def load_module(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("def g():\n    return 1\n")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_is_library_tells_the_environment_from_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    around_the_venv = Path(sys.prefix).parent  # a venv often lives inside the project
    for library in (np, np.mean, np.ndarray, np.add, pd.DataFrame, pd.DataFrame.from_dict):
        assert is_library(library, around_the_venv)
    for builtin in (len, dict, os.path.join, functools, str.join):
        assert is_library(builtin, around_the_venv)
    ns = notebook("def f():\n    return 1\nclass C:\n    pass\n")
    assert not is_library(ns["f"], around_the_venv)
    assert not is_library(ns["C"], around_the_venv)
    for data in (1, "x", [np.mean], np.arange(3), functools.partial(np.mean), ns["C"]()):
        assert not is_library(data, around_the_venv)

    project = load_module(tmp_path / "mylib.py", "mylib_t", monkeypatch)
    in_venv = load_module(tmp_path / ".venv/lib/site-packages/vpkg.py", "vpkg_t", monkeypatch)
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools/pyvenv.cfg").write_text("home = /usr\n")
    in_env = load_module(tmp_path / "tools/lib/tpkg.py", "tpkg_t", monkeypatch)
    vendored = load_module(tmp_path / "vendor/site-packages/spkg.py", "spkg_t", monkeypatch)
    assert not is_library(project, tmp_path) and not is_library(project.g, tmp_path)
    for module in (in_venv, in_env, vendored):
        assert is_library(module, tmp_path) and is_library(module.g, tmp_path)
    assert is_library(project, None)  # without a root no file is the project's
    cellops_checkout = Path(value_digest.__code__.co_filename).parents[2]
    assert is_library(value_digest, cellops_checkout)  # the tool, even installed editable


MYLIB = """
SCALE = 2

def inner(x):
    return x * SCALE

def helper(x):
    return inner(x) + 1
"""

MODULE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    root = Path(sys.argv[1])
    sys.path.insert(0, str(root))
    import mylib
    from cellops.cache.hashing import is_library, value_digest

    def notebook_fn(x):
        return mylib.helper(x)

    print(json.dumps({
        "module": value_digest(mylib, root),
        "helper": value_digest(mylib.helper, root),
        "notebook_fn": value_digest(notebook_fn, root),
        "library": is_library(mylib, root),
        "no_root": value_digest(mylib),
    }))
    """
)


def test_project_module_digest_follows_its_loaded_code(tmp_path: Path) -> None:
    def digests(source: str) -> dict:
        (tmp_path / "mylib.py").write_text(source)
        return output_of(run_python("-B", "-c", MODULE_SCRIPT, str(tmp_path)))

    base = digests(MYLIB)
    assert base["library"] is False
    assert digests(MYLIB) == base
    assert digests("# a comment moves the line numbers\n\n" + MYLIB) == base
    changed = digests(MYLIB.replace("x * SCALE", "x * SCALE + 0"))
    for key in ("module", "helper", "notebook_fn"):
        assert changed[key] != base[key]
    assert changed["no_root"] == base["no_root"]  # without a root, mylib is the environment's
    rescaled = digests(MYLIB.replace("SCALE = 2", "SCALE = 3"))
    assert rescaled["helper"] != base["helper"] and rescaled["module"] != base["module"]
