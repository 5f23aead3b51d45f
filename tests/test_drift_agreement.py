"""The native drift engine against real Evidently: the agreement matrix of issue 6.

Seeded synthetic data, one column per case (no shift, mean shift, variance shift, new
categories, missing and non-finite values; numeric, low-cardinality numeric and categorical),
at reference sizes from 200 rows to 1M, with 999/1000/1001 around Evidently's switch from
KS/chi-square/Z to Wasserstein/Jensen-Shannon and 5/6 distinct values around its switch for
numbers. Each block of columns is one Evidently report (Evidently is slow on big data, so the
large blocks carry few columns). The native engine runs on the raw reference and, separately,
on a profile of it. Run with `-s` to see the agreement lines (also in the warnings summary).
Text columns are not in the matrix: Evidently's text drift takes ~30 s a column.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellops.monitoring.result import ColumnDrift, DriftResult

Maker = Callable[[np.random.Generator, int], np.ndarray]


class AgreementReport(UserWarning):
    """Carries the agreement line to pytest's warnings summary (visible without `-s`)."""


# -- the synthetic cases ---------------------------------------------------------------------


def normal(loc: float = 0.0, scale: float = 1.0) -> Maker:
    return lambda rng, n: rng.normal(loc, scale, n)


def lognormal(sigma: float) -> Maker:
    return lambda rng, n: rng.lognormal(0.0, sigma, n)


def poisson(lam: float) -> Maker:
    return lambda rng, n: rng.poisson(lam, n)


def choice(values: list, weights: list[float]) -> Maker:
    p = np.asarray(weights, dtype=float) / sum(weights)
    return lambda rng, n: rng.choice(np.asarray(values, dtype=object), n, p=p)


def numbers(values: list[float], weights: list[float]) -> Maker:
    p = np.asarray(weights, dtype=float) / sum(weights)
    return lambda rng, n: rng.choice(np.asarray(values, dtype=float), n, p=p)


def missing(make: Maker, share: float) -> Maker:
    def made(rng: np.random.Generator, n: int) -> np.ndarray:
        values = make(rng, n)
        values = values.astype(float) if values.dtype != object else values.copy()
        values[rng.random(n) < share] = np.nan if values.dtype != object else None
        return values

    return made


def non_finite(make: Maker, share: float) -> Maker:
    def made(rng: np.random.Generator, n: int) -> np.ndarray:
        values = make(rng, n).astype(float)
        hit = rng.random(n) < share
        values[hit] = rng.choice([np.inf, -np.inf, np.nan], int(hit.sum()))
        return values

    return made


def as_bool(make: Maker) -> Maker:
    return lambda rng, n: make(rng, n).astype(bool)


def as_category(make: Maker) -> Maker:
    return lambda rng, n: pd.Categorical(make(rng, n))


@dataclass(frozen=True)
class Case:
    column: str
    kind: str  # what the column is: numeric or categorical
    reference: Maker
    current: Maker


def integers(values: list[int], weights: list[float]) -> Maker:
    p = np.asarray(weights, dtype=float) / sum(weights)
    return lambda rng, n: rng.choice(np.asarray(values, dtype=np.int64), n, p=p)


LETTERS5 = list("abcde")
NAMES50 = [f"c{i}" for i in range(50)]
ZIPF50 = [1 / (i + 1) for i in range(50)]
LC2, LC2_SHIFT = numbers([0, 1], [7, 3]), numbers([0, 1], [6, 4])
LC3, LC3_SHIFT = numbers([0, 1, 2], [5, 3, 2]), numbers([0, 1, 2], [4, 3, 3])
LC5, LC5_SHIFT = numbers([1, 2, 3, 4, 5], [1] * 5), numbers([1, 2, 3, 4, 5], [1, 1, 1, 1, 2])
LC6, LC6_SHIFT = numbers(list(range(6)), [1] * 6), numbers(list(range(6)), [2, 1, 1, 1, 1, 1])
CAT2, CAT2_SHIFT = choice(["no", "yes"], [8, 2]), choice(["no", "yes"], [7, 3])
CAT5, CAT5_SHIFT = choice(LETTERS5, [5, 4, 3, 2, 1]), choice(LETTERS5, [4, 4, 3, 2, 2])
CAT50, CAT50_SHIFT = choice(NAMES50, ZIPF50), choice(NAMES50, ZIPF50[::-1])
CODES, CODES_SHIFT = integers([0, 1, 2, 3], [4, 3, 2, 1]), integers([0, 1, 2, 3], [3, 3, 2, 2])
NUM, CAT = "numeric", "categorical"
CASES = [
    # continuous numbers
    Case("num_none", NUM, normal(), normal()),
    Case("num_mean_0.1", NUM, normal(), normal(0.1)),
    Case("num_mean_0.5", NUM, normal(), normal(0.5)),
    Case("num_var_1.5", NUM, normal(), normal(0, 1.5)),
    Case("num_var_1.1", NUM, normal(), normal(0, 1.1)),
    Case("num_missing", NUM, missing(normal(), 0.05), missing(normal(), 0.3)),
    Case("num_missing_mean", NUM, missing(normal(), 0.05), missing(normal(0.3), 0.3)),
    Case("num_nonfinite", NUM, non_finite(normal(), 0.01), non_finite(normal(), 0.05)),
    Case("num_skew", NUM, lognormal(1.0), lognormal(1.3)),
    Case("int_poisson", NUM, poisson(20), poisson(20)),
    Case("int_poisson_shift", NUM, poisson(20), poisson(21)),
    # low-cardinality numbers: 2, 3, 5 distinct values (Z / chi-square / Jensen-Shannon), 6 (KS /
    # Wasserstein); a new value in current moves a column across those boundaries
    Case("lc2_none", NUM, LC2, LC2),
    Case("lc2_shift", NUM, LC2, LC2_SHIFT),
    Case("lc2_new", NUM, LC2, numbers([0, 1, 2], [6, 3, 1])),
    Case("lc3_none", NUM, LC3, LC3),
    Case("lc3_shift", NUM, LC3, LC3_SHIFT),
    Case("lc3_missing", NUM, missing(LC3, 0.1), missing(LC3, 0.4)),
    Case("lc5_none", NUM, LC5, LC5),
    Case("lc5_shift", NUM, LC5, LC5_SHIFT),
    Case("lc5_new", NUM, LC5, numbers([1, 2, 3, 4, 5, 6], [1] * 6)),
    Case("lc6_none", NUM, LC6, LC6),
    Case("lc6_shift", NUM, LC6, LC6_SHIFT),
    # categories; integer codes with few values are categories to Evidently (<= 10 values)
    Case("cat2_none", CAT, CAT2, CAT2),
    Case("cat2_shift", CAT, CAT2, CAT2_SHIFT),
    Case("cat5_none", CAT, CAT5, CAT5),
    Case("cat5_shift", CAT, CAT5, CAT5_SHIFT),
    Case("cat5_new", CAT, CAT5, choice([*LETTERS5, "f", "g"], [5, 4, 3, 2, 1, 1, 1])),
    Case("cat5_missing", CAT, missing(CAT5, 0.02), missing(CAT5, 0.3)),
    Case("cat50_none", CAT, CAT50, CAT50),
    Case("cat50_shift", CAT, CAT50, CAT50_SHIFT),
    Case("bool_none", CAT, as_bool(LC2), as_bool(LC2)),
    Case("bool_shift", CAT, as_bool(LC2), as_bool(LC2_SHIFT)),
    Case("category_shift", CAT, as_category(CAT5), as_category(CAT5_SHIFT)),
    Case("codes_none", CAT, CODES, CODES),
    Case("codes_shift", CAT, CODES, CODES_SHIFT),
]
BY_NAME = {case.column: case for case in CASES}
ALL = [case.column for case in CASES]
# the bigger blocks split the cases between them
LARGE = ["num_mean_0.1", "num_var_1.1", "num_missing_mean", "num_nonfinite", "num_skew",
         "lc3_shift", "lc5_new", "lc6_shift", "cat2_shift", "cat5_new", "cat5_missing",
         "cat50_shift", "bool_none", "codes_shift"]  # fmt: skip
REST = [name for name in ALL if name not in LARGE]


def make_frames(
    columns: list[str], rows_reference: int, rows_current: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames, one column per case, each column its own random stream."""
    reference, current = {}, {}
    for index, name in enumerate(columns):
        case = BY_NAME[name]
        rng_ref = np.random.default_rng([seed, index, 0])
        rng_cur = np.random.default_rng([seed, index, 1])
        reference[name] = case.reference(rng_ref, rows_reference)
        current[name] = case.current(rng_cur, rows_current)
    return pd.DataFrame(reference), pd.DataFrame(current)


@dataclass(frozen=True)
class Block:
    """One Evidently report: which columns, how many reference and current rows, which seed."""

    rows_reference: int
    rows_current: int
    seed: int
    columns: tuple[str, ...]
    stattest: str | None = None

    @property
    def label(self) -> str:
        test = f" {self.stattest}" if self.stattest else ""
        return f"{self.rows_reference}x{self.rows_current}{test} seed {self.seed}"


BLOCKS = [
    Block(200, 300, 1, tuple(ALL)),
    Block(999, 999, 2, tuple(ALL)),
    Block(1000, 700, 3, tuple(ALL)),
    Block(1001, 1001, 4, tuple(ALL)),
    Block(1001, 2500, 5, tuple(LARGE)),
    Block(10_000, 10_000, 6, tuple(REST)),
    Block(50_000, 40_000, 7, tuple(LARGE)),
    Block(1_000_000, 300_000, 8, ("num_mean_0.1", "cat5_new")),
    Block(5000, 5000, 9, tuple(ALL), stattest="psi"),
]


@dataclass
class Compared:
    block: Block
    native: DriftResult
    evidently: DriftResult
    profile: DriftResult  # native, from a profile of the reference (not the raw data)
    n_unique: dict[str, int]  # distinct non-missing values of reference and current together


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> list[Compared]:
    from cellops.monitoring.api import drift
    from cellops.monitoring.profile import build_profile

    report_dir = tmp_path_factory.mktemp("drift-reports")
    out = []
    for block in BLOCKS:
        reference, current = make_frames(
            list(block.columns), block.rows_reference, block.rows_current, block.seed
        )
        kwargs = {"stattest": block.stattest} if block.stattest else {}
        native = drift(reference, current, engine="native", **kwargs)
        evidently = drift(reference, current, engine="evidently", report_dir=report_dir, **kwargs)
        profile = drift(build_profile(reference), current, engine="native", **kwargs)
        n_unique = {
            name: int(pd.concat([reference[name], current[name]]).astype(object).nunique())
            for name in block.columns
        }
        out.append(Compared(block, native, evidently, profile, n_unique))
    return out


def describe(item: Compared, native: ColumnDrift, evidently: ColumnDrift) -> str:
    return (
        f"[{item.block.label}] {native.column} ({native.kind}, n_unique "
        f"{item.n_unique[native.column]}): native {native.test}={native.score!r} "
        f"drifted={native.drifted} {native.note!r}; evidently {evidently.test}="
        f"{evidently.score!r} drifted={evidently.drifted} {evidently.note!r}"
    )


def pairs(compared: list[Compared]) -> Iterator[tuple[Compared, ColumnDrift, ColumnDrift]]:
    for item in compared:
        for column in item.block.columns:
            yield item, item.native.column(column), item.evidently.column(column)


def scores_close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def test_engines_agree_on_column_decisions(compared: list[Compared]) -> None:
    decisions = list(pairs(compared))
    disagree = [describe(i, n, e) for i, n, e in decisions if n.drifted != e.drifted]
    agree = len(decisions) - len(disagree)
    drifted = sum(e.drifted for _, _, e in decisions)
    line = (
        f"engines agree on {agree}/{len(decisions)} column decisions "
        f"({100 * agree / len(decisions):.1f}%; Evidently found drift in {drifted}) over "
        f"{len(compared)} reports, reference rows {min(c.block.rows_reference for c in compared)}"
        f" to {max(c.block.rows_reference for c in compared):,}"
    )
    print(f"\n{line}" + "".join(f"\n  disagree: {text}" for text in disagree))
    warnings.warn(line, AgreementReport)
    assert agree >= 0.99 * len(decisions), "\n".join(disagree)
    datasets = [(c.native.dataset_drift, c.evidently.dataset_drift) for c in compared]
    assert all(a == b for a, b in datasets), datasets


def test_profile_engine_agrees_with_evidently(compared: list[Compared]) -> None:
    """From a stored profile (no raw reference), decisions may only differ near a threshold."""
    decisions = [(i, i.profile.column(n.column), e) for i, n, e in pairs(compared)]
    disagree = [describe(i, p, e) for i, p, e in decisions if p.drifted != e.drifted]
    agree = len(decisions) - len(disagree)
    gaps = [
        abs(p.score - e.score) for _, p, e in decisions if p.test == e.test and e.score == e.score
    ]
    line = (
        f"native engine from a reference profile agrees with Evidently on {agree}/"
        f"{len(decisions)} column decisions ({100 * agree / len(decisions):.1f}%); largest "
        f"score gap {max(gaps):.3g}"
    )
    print(f"\n{line}" + "".join(f"\n  disagree: {text}" for text in disagree))
    warnings.warn(line, AgreementReport)
    assert agree >= 0.99 * len(decisions), "\n".join(disagree)


def test_engines_type_columns_and_choose_tests_alike(compared: list[Compared]) -> None:
    differ = [
        f"{describe(i, n, e)}; kinds {n.kind}/{e.kind}, thresholds {n.threshold}/{e.threshold}"
        for i, n, e in pairs(compared)
        if (n.test, n.kind, n.threshold, n.note) != (e.test, e.kind, e.threshold, e.note)
        or n.kind != BY_NAME[n.column].kind
    ]
    assert not differ, "\n".join(differ)


def test_scores_match_where_both_ran_the_same_test(compared: list[Compared]) -> None:
    same = [(i, n, e) for i, n, e in pairs(compared) if n.test == e.test]
    differ = [describe(i, n, e) for i, n, e in same if not scores_close(n.score, e.score)]
    tests = sorted({n.test for _, n, _ in same})
    print(f"\nscores equal (rel 1e-6) on {len(same) - len(differ)}/{len(same)} columns; "
          f"tests: {', '.join(tests)}")  # fmt: skip
    assert not differ, "\n".join(differ)


def test_matrix_covers_every_test_on_both_sides(compared: list[Compared]) -> None:
    """Guards the matrix itself: every default test and PSI, with drift and without."""
    seen = {(e.test, e.drifted) for _, _, e in pairs(compared)}
    for test in ("ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi"):
        assert (test, True) in seen and (test, False) in seen, test
    # the row-count switch: the same numeric case gets KS at 1000 rows, Wasserstein at 1001
    chosen = {(i.block.rows_reference, n.column): n.test for i, n, _ in pairs(compared)}
    assert (
        chosen[(1000, "num_mean_0.1")] == "ks" and chosen[(1001, "num_mean_0.1")] == "wasserstein"
    )
    assert chosen[(1000, "lc5_new")] == "ks" and chosen[(1000, "lc5_shift")] == "chisquare"


def test_dataset_drift_matches_evidentlys_own_count(compared: list[Compared]) -> None:
    for item in compared:
        extra = item.evidently.extra
        counted = [c for c in item.evidently.columns if not c.note]
        assert extra["evidently_drifted_count"] == sum(c.drifted for c in counted)
        assert item.evidently.share_threshold == item.native.share_threshold == 0.5


def test_evidently_report_is_saved_as_html(project: Path) -> None:
    from cellops.monitoring.engines import get_engine

    engine = get_engine("evidently")
    reference, current = make_frames(["num_mean_0.5", "cat5_new"], 400, 400, 21)
    result = engine.run(reference, current)
    path = Path(result.report_path)
    assert path.parent == project / "reports" / "drift"
    assert path.name.startswith("drift-") and path.suffix == ".html"
    text = path.read_text()
    assert "<html" in text.lower() and "num_mean_0.5" in text
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left over
    assert result.engine == "evidently" and result.drifted_columns() == ["num_mean_0.5", "cat5_new"]

    other = engine.run(
        reference, current, ["cat5_new"], 0.3, stattest="psi", report_dir=project / "elsewhere"
    )
    assert Path(other.report_path).parent == project / "elsewhere"
    assert [(c.column, c.test) for c in other.columns] == [("cat5_new", "psi")]
    assert other.share_threshold == 0.3 and other.dataset_drift


def test_evidently_engine_refuses_bad_input_with_a_named_error(project: Path) -> None:
    from cellops.errors import CellopsUsageError
    from cellops.monitoring.engines import get_engine
    from cellops.monitoring.profile import build_profile

    engine = get_engine("evidently")
    reference, current = make_frames(["num_none", "cat5_none"], 100, 100, 22)
    with pytest.raises(CellopsUsageError, match="missing from the current data: cat5_none"):
        engine.run(reference, current[["num_none"]], report_dir=project)
    with pytest.raises(CellopsUsageError, match="DataFrames"):
        engine.run({"num_none": [1.0]}, current, report_dir=project)
    with pytest.raises(CellopsUsageError, match="needs the raw reference data"):
        engine.run(build_profile(reference), current, report_dir=project)
    with pytest.raises(CellopsUsageError, match="unknown drift test 'kl'"):
        engine.run(reference, current, stattest="kl", report_dir=project)
    with pytest.raises(CellopsUsageError, match="current data has no rows"):
        engine.run(reference, current.iloc[:0], report_dir=project)
    assert not list(project.glob("*.html"))  # refused before Evidently ran


def test_columns_evidently_cannot_test_are_reported_as_the_native_engine_does(
    project: Path,
) -> None:
    """Where Evidently would raise (all missing, a changed type) both engines say the same."""
    from cellops.monitoring.api import drift

    rows = 300
    rng = np.random.default_rng(23)
    normal_ref, normal_cur = rng.normal(size=rows), rng.normal(size=rows)
    reference = pd.DataFrame({
        "gone": normal_ref, "never": np.full(rows, np.nan), "retyped": normal_ref,
        "nullable": pd.array(rng.integers(0, 50, rows), dtype="Int64"),
        "infinite": np.where(rng.random(rows) < 0.1, np.inf, normal_ref),
        "when": pd.date_range("2024-01-01", periods=rows, freq="h"),
        "letters": rng.choice(list("abc"), rows),
    })  # fmt: skip
    current = pd.DataFrame({
        "gone": np.full(rows, np.nan), "never": np.full(rows, np.nan),
        "retyped": rng.choice(["x", "y"], rows),
        "nullable": pd.array(rng.integers(10, 60, rows), dtype="Int64"),
        "infinite": normal_cur,
        "when": pd.date_range("2024-06-01", periods=rows, freq="h"),
        "letters": rng.choice(list("abc"), rows),
    })  # fmt: skip
    native = drift(reference, current, engine="native", stattest="wasserstein")
    evidently = drift(reference, current, engine="evidently", stattest="wasserstein")
    for ours, theirs in zip(native.columns, evidently.columns, strict=True):
        assert (ours.column, ours.kind, ours.test, ours.drifted, ours.note) == (
            theirs.column, theirs.kind, theirs.test, theirs.drifted, theirs.note,
        )  # fmt: skip
        assert scores_close(ours.score, theirs.score), (ours, theirs)
    assert evidently.extra["skipped"] == native.extra["skipped"]
    assert list(evidently.extra["skipped"]) == ["when"]
    found = {c.column: c for c in evidently.columns}
    assert found["gone"].drifted and found["gone"].note == "all values missing in current"
    assert not found["never"].drifted
    assert found["retyped"].drifted and found["retyped"].note.startswith("type changed")
    assert found["nullable"].test == "wasserstein" and found["nullable"].drifted
    assert found["infinite"].note.startswith("inf/-inf treated as missing")
    assert found["letters"].test == "chisquare" and "numeric columns only" in found["letters"].note
