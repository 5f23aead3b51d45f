"""Drift engines: the base class's bookkeeping, the `cellops.drift_engines` registry (the
built-ins and a package's own engine, found through real package metadata), one check of the
share threshold for every front end, and Parquet files with struct and list columns.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import cellops
from cellops.cli import cli
from cellops.errors import CellopsUsageError
from cellops.monitoring.columns import NESTED_NOTE
from cellops.monitoring.engines import BUILTIN, GROUP, engine_names, get_engine
from cellops.monitoring.engines.base import Comparison, DriftEngine, DriftOptions
from cellops.monitoring.profile import build_profile
from cellops.monitoring.result import ColumnDrift

from .conftest import python

PLUGIN = "cellops_test_drift_plugin"


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def frames(rows: int = 400, shift: float = 0.0, seed: int = 0) -> tuple[pd.DataFrame, ...]:
    """A reference and a current frame: two numeric columns and a categorical one."""

    def one(offset: float, part: int) -> pd.DataFrame:
        rng = np.random.default_rng([seed, part])
        return pd.DataFrame({
            "x": rng.normal(offset, 1, rows),
            "y": rng.normal(offset, 1, rows),
            "city": rng.choice(["paris", "lyon", "nice"], rows).astype(object),
        })  # fmt: skip

    return one(0.0, 0), one(shift, 1)


# -- the base class: bookkeeping once, one override ---------------------------------------------


class Scripted(DriftEngine):
    """Answers as told, and keeps what it was asked."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], DriftOptions]] = []

    def compare_columns(self, reference, current, names, options) -> Comparison:  # noqa: ARG002 - the engine's signature
        self.calls.append((list(names), options))
        tested = [n for n in names if n != "y"]
        rows = [ColumnDrift(n, "numeric", "t", 0.1, 0.5, n == "x") for n in reversed(tested)]
        skipped = {"y": "the engine's own reason"} if "y" in names else {}
        return Comparison(rows, skipped, {"engine_fact": 7}, Path("reports/r.html"))


def test_run_checks_the_inputs_and_builds_the_result_once(tmp_path: Path) -> None:
    reference, current = frames()
    reference["tags"] = [[1, 2]] * len(reference)  # a user's frame with lists in a column
    current["tags"] = [[3]] * len(current)
    engine = Scripted()
    result = engine.run(reference, current, stattest="PSI", share_threshold=0.4)

    # only the testable columns reach the engine, with the checked options
    [(names, options)] = engine.calls
    assert names == ["x", "y", "city"]
    assert options == DriftOptions(share_threshold=0.4, stattest="psi", report_dir=None)
    # the columns in the data's order, whatever order the engine answered in
    assert [c.column for c in result.columns] == ["x", "city"]
    assert result.extra == {
        "engine_fact": 7,
        "skipped": {"y": "the engine's own reason", "tags": NESTED_NOTE},
    }
    assert list(result.extra["skipped"]) == ["y", "tags"]  # in the data's order too
    assert (result.engine, result.rows_reference, result.rows_current) == ("scripted", 400, 400)
    assert result.share_threshold == 0.4 and result.report_path == str(Path("reports/r.html"))
    assert result.dataset_drift and result.drifted_columns() == ["x"]

    # from a profile: the result says so; the profile's nested column is set aside as well
    profiled = engine.run(build_profile(reference), current, columns=["x", "tags"])
    assert profiled.engine == "scripted-profile"
    assert engine.calls[-1][0] == ["x"]
    assert profiled.extra["skipped"] == {"tags": NESTED_NOTE}

    # nothing testable: the engine is not asked at all
    only_nested = engine.run(reference, current, columns=["tags"])
    assert len(engine.calls) == 2 and only_nested.columns == []
    assert not only_nested.dataset_drift and only_nested.extra == {"skipped": {"tags": NESTED_NOTE}}


def test_run_refuses_bad_input_before_the_engine_is_asked() -> None:
    reference, current = frames(rows=50)
    engine = Scripted()
    cases = {
        "current data has no rows": lambda: engine.run(reference, current.iloc[:0]),
        "reference data has no rows": lambda: engine.run(reference.iloc[:0], current),
        "missing from the current data: y, city": lambda: engine.run(reference, current[["x"]]),
        "unknown drift test 'kl'": lambda: engine.run(reference, current, stattest="kl"),
        r"in \(0, 1\]": lambda: engine.run(reference, current, share_threshold=0),
        "DataFrames": lambda: engine.run(reference.to_dict(), current),
        "current data as a pandas DataFrame": lambda: engine.run(reference, [1, 2]),
    }
    for message, call in cases.items():
        with pytest.raises(CellopsUsageError, match=message):
            call()
    assert engine.calls == []

    class RawOnly(Scripted):
        name = "rawonly"
        needs_raw_reference = True

    with pytest.raises(CellopsUsageError, match="engine='rawonly' needs the raw reference data"):
        RawOnly().run(build_profile(reference), current)


def test_the_base_class_has_one_override_point() -> None:
    reference, current = frames(rows=20)
    with pytest.raises(NotImplementedError):
        DriftEngine().run(reference, current)


# -- the registry --------------------------------------------------------------------------------


def test_builtin_engines_are_registered_and_state_their_needs() -> None:
    from importlib.metadata import entry_points

    assert engine_names()[:2] == ["native", "evidently"]
    declared = {e.name: e.value for e in entry_points(group=GROUP)}
    assert declared["native"] == BUILTIN["native"]  # pyproject.toml's entry points
    assert declared["evidently"] == BUILTIN["evidently"]
    native, evidently = get_engine("native"), get_engine(" Evidently ")
    assert (native.name, native.needs_raw_reference, native.strings_as_categories) == (
        "native", False, True,
    )  # fmt: skip
    assert (evidently.name, evidently.needs_raw_reference, evidently.strings_as_categories) == (
        "evidently", True, False,
    )  # fmt: skip
    with pytest.raises(CellopsUsageError, match="unknown drift engine 'spark'; choose one of: "
                       "native, evidently"):  # fmt: skip
        get_engine("spark")


def test_listing_and_choosing_engines_does_not_import_evidently(project: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import cellops, cellops.cli
        from cellops.monitoring.engines import engine_names, get_engine
        import pandas as pd
        names = engine_names()
        get_engine("evidently")
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
        cellops.drift(frame, frame)
        print(names, "evidently" in sys.modules)
        """
    )
    done = subprocess.run([python(), "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "False", done.stdout


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A package of its own, installed the way pip installs one (a .dist-info with
    entry_points.txt on sys.path), registering two engines in `cellops.drift_engines`."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{PLUGIN}.py").write_text(
        textwrap.dedent(
            """
            from cellops.monitoring.engines.base import Comparison, DriftEngine
            from cellops.monitoring.result import ColumnDrift


            class EverythingDrifts(DriftEngine):
                name = "everything"
                seen = {}

                def compare_columns(self, reference, current, names, options):
                    type(self).seen = {n: str(current[n].dtype) for n in names}
                    return Comparison(
                        [ColumnDrift(n, "numeric", "constant", 1.0, 0.5, True) for n in names]
                    )


            class CountsCategories(EverythingDrifts):
                name = "categories"
                strings_as_categories = True


            class NotAnEngine:
                pass
            """
        )
    )
    info = site / f"{PLUGIN}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\neverything = {PLUGIN}:EverythingDrifts\n"
        f"categories = {PLUGIN}:CountsCategories\nbroken = {PLUGIN}:NotAnEngine\n"
        f"native = {PLUGIN}:EverythingDrifts\n"  # a built-in's name: the built-in stays
    )
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop(PLUGIN, None)


def test_an_engine_another_package_registers_is_used_by_name(plugin, project: Path) -> None:
    reference, current = frames()
    reference.to_parquet("a.parquet")
    current.to_parquet("b.parquet")
    assert engine_names() == ["native", "evidently", "broken", "categories", "everything"]
    assert type(get_engine("native")).__module__ == "cellops.monitoring.engines.native"

    result = cellops.drift("a.parquet", "b.parquet", engine="everything")
    assert result.engine == "everything" and result.drifted_columns() == ["x", "y", "city"]
    everything = type(get_engine("everything"))
    assert everything.seen["city"] == "object"  # strings_as_categories False: plain strings
    cellops.drift("a.parquet", "b.parquet", engine="categories")
    assert type(get_engine("categories")).seen["city"] == "category"
    assert cellops.drift(build_profile("a.parquet"), current, engine="everything").engine == (
        "everything-profile"
    )

    out = invoke("drift", "a.parquet", "b.parquet", "--engine", "everything")
    assert out.exit_code == 1, out.output  # every column drifted: dataset drift
    assert "DRIFT: 3 of 3 columns drifted" in out.output and "engine everything" in out.output
    assert "[native|evidently|broken|categories|everything]" in invoke("drift", "--help").output
    with pytest.raises(cellops.CellopsError, match="not a subclass of"):
        get_engine("broken")


# -- one check of share_threshold, the same answer everywhere -------------------------------------


@pytest.mark.parametrize("threshold", ["0", "1.5", "-0.2"])
def test_share_threshold_is_refused_alike_by_function_cli_and_magic(
    threshold: str, project: Path, ip
) -> None:
    from IPython.core.error import UsageError

    reference, current = frames(rows=50)
    reference.to_parquet("a.parquet")
    current.to_parquet("b.parquet")
    with pytest.raises(CellopsUsageError) as refused:
        cellops.drift("a.parquet", "b.parquet", share_threshold=float(threshold))
    message = str(refused.value)
    assert "in (0, 1]" in message and f"got {float(threshold):g}" in message

    out = invoke("drift", "a.parquet", "b.parquet", "--share-threshold", threshold)
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output
    outcome = ip.run_cell(f"%cellops drift a.parquet b.parquet --share-threshold {threshold}")
    assert isinstance(outcome.error_in_exec, UsageError)
    assert str(outcome.error_in_exec) == message
    # and 1 (every column must drift) is a valid threshold for all three
    assert not cellops.drift("a.parquet", "b.parquet", share_threshold=1).dataset_drift
    assert invoke("drift", "a.parquet", "b.parquet", "--share-threshold", "1").exit_code == 0
    ip.run_cell("%cellops drift a.parquet b.parquet --share-threshold 1").raise_error()


def test_an_unknown_engine_is_refused_by_the_cli_from_the_registry(project: Path) -> None:
    reference, current = frames(rows=30)
    reference.to_parquet("a.parquet")
    current.to_parquet("b.parquet")
    for args in (
        ("drift", "a.parquet", "b.parquet", "--engine", "spark"),
        ("drift", "--model", "churn", "--current", "b.parquet", "--engine", "spark"),
    ):
        out = invoke(*args)
        assert out.exit_code == 2, out.output
        assert "unknown drift engine 'spark'; choose one of: native, evidently" in out.output
        assert "Traceback" not in out.output


# -- nested columns (issue 11) -------------------------------------------------------------------


def write_nested(path: Path, shift: float, seed: int, rows: int = 600) -> None:
    """Normal columns next to a struct column and a list column, written by pyarrow."""
    rng = np.random.default_rng(seed)
    table = pa.table({
        "amount": rng.normal(shift, 1, rows),
        "channel": rng.choice(["web", "shop", "app"], rows),
        "where": pa.array([{"lat": float(v), "lon": 2.0} for v in rng.normal(size=rows)]),
        "tags": pa.array([[int(v), 1] if v else None for v in rng.integers(0, 5, rows)]),
        "count": rng.poisson(20 + 10 * shift, rows),
    })  # fmt: skip
    pq.write_table(table, path, row_group_size=200)


@pytest.fixture
def nested_files(project: Path) -> tuple[Path, Path, Path]:
    write_nested(project / "A.parquet", 0.0, 1)
    write_nested(project / "B.parquet", 1.0, 2)
    write_nested(project / "C.parquet", 0.0, 3)
    return project / "A.parquet", project / "B.parquet", project / "C.parquet"


SKIPPED = {"where": NESTED_NOTE, "tags": NESTED_NOTE}


def test_nested_columns_are_reported_untested_and_the_rest_tested(nested_files) -> None:
    a, b, c = nested_files
    for reference in (a, build_profile(a), build_profile(pd.read_parquet(a))):
        result = cellops.drift(reference, b)
        assert [col.column for col in result.columns] == ["amount", "channel", "count"]
        assert result.extra["skipped"] == SKIPPED
        assert result.column("amount").drifted and result.column("count").drifted
        assert result.dataset_drift
        assert not cellops.drift(reference, c).dataset_drift
    profile = build_profile(a)
    assert profile.columns["where"].dtype == "nested" and profile.columns["where"].count == 600
    tags = profile.columns["tags"]
    assert tags.count + tags.missing == 600 and tags.missing > 0
    # pandas' Arrow-backed struct and list dtypes are nested too
    table = pq.read_table(a)
    frame = table.to_pandas()
    for name in ("where", "tags"):
        frame[name] = table.column(name).to_pandas(types_mapper=pd.ArrowDtype)
    assert isinstance(frame["tags"].dtype, pd.ArrowDtype)
    assert cellops.drift(frame, b).extra["skipped"] == SKIPPED


def test_cli_on_parquet_with_nested_columns_exits_as_a_normal_check(nested_files) -> None:
    a, b, c = nested_files
    drifted = invoke("drift", a, b)
    assert drifted.exit_code == 1, drifted.output  # dataset drift, as without them
    same = invoke("drift", a, c)
    assert same.exit_code == 0, same.output
    for out in (drifted, same):
        assert "not tested: where (nested values (struct/list): not tested)" in out.output
        assert "not tested: tags (nested values (struct/list): not tested)" in out.output
        assert "of 3 columns drifted" in out.output and "Traceback" not in out.output


@pytest.mark.slow
def test_evidently_reports_nested_columns_as_the_native_engine_does(nested_files, project):
    a, b, _ = nested_files
    native = cellops.drift(a, b)
    evidently = cellops.drift(a, b, engine="evidently", report_dir=project / "reports")
    assert evidently.extra["skipped"] == native.extra["skipped"] == SKIPPED
    assert [c.column for c in evidently.columns] == ["amount", "channel", "count"]
    assert [c.drifted for c in evidently.columns] == [c.drifted for c in native.columns]
    assert Path(evidently.report_path).is_file()


def test_a_folder_of_parquet_files_is_read_as_the_current_data(tmp_path: Path) -> None:
    """`cellops drift REF FOLDER` reads a hive-partitioned folder, as the prediction log of
    `cellops serve` is laid out, skipping files still being written (names starting with ".")."""
    rng = np.random.default_rng(7)
    pd.DataFrame({"x0": rng.normal(size=500), "x1": rng.normal(size=500)}).to_parquet(
        tmp_path / "ref.parquet"
    )
    log = tmp_path / "model=fraud"
    for day, shift in (("2026-12-01", 0.0), ("2026-12-02", 3.0)):
        (log / f"date={day}").mkdir(parents=True)
        part = pd.DataFrame({"request_id": ["a"] * 200, "x0": rng.normal(shift, size=200),
                             "x1": rng.normal(size=200)})  # fmt: skip
        part.to_parquet(log / f"date={day}" / "part-0.parquet")
    (log / "date=2026-12-02" / ".part-1.parquet").write_bytes(b"half a file")

    result = cellops.drift(tmp_path / "ref.parquet", log, columns=["x0", "x1"])
    assert result.rows_current == 400
    assert result.drifted_columns() == ["x0"]

    cli_run = invoke("drift", tmp_path / "ref.parquet", log, "--columns", "x0,x1")
    assert cli_run.exit_code == 1, cli_run.output
    assert "400 current rows" in cli_run.output
    mismatch = invoke("drift", tmp_path / "ref.parquet", log)
    assert mismatch.exit_code == 2 and "--columns x0,x1" in mismatch.output
    (tmp_path / "empty").mkdir()
    empty = invoke("drift", tmp_path / "ref.parquet", tmp_path / "empty")
    assert empty.exit_code == 2 and "holds no .parquet files" in empty.output
