"""The native drift engine: Evidently's per-column tests, from raw reference data or a profile.

Columns are typed from the *current* data, as Evidently types them (`columns.py`); the test
is `choice.default_test` unless one is forced. From raw data every score is computed as
Evidently computes it. From a `ReferenceProfile`:
- exact (same score) when the reference column has at most 2048 distinct values (so always for
  references of at most 2048 rows, hence for every KS and chi-square/z chosen by default, which
  need <= 1000 reference rows), and for categorical columns of at most 10 000 distinct values;
- otherwise (many distinct numbers) the reference CDF comes from the quantile sketch and the
  current CDF from an 8192-bin histogram over the combined range: the normed Wasserstein
  distance and the KS statistic are then within about 0.002 of the raw value for ordinary
  data (measured in tests/test_drift_profile.py; a range stretched by extreme outliers widens
  the bins and the error), Jensen-Shannon/PSI over Sturges' bins within about 0.002. Decisions
  equal the raw decisions except when the raw score lies that close to the threshold;
- categorical columns with more than 10 000 distinct reference values compare the top 10 000
  one by one and lump the rest (and current values outside them) into one "other" bucket.

Where Evidently raises, the native engine reports the column with a note instead:
all values missing on one side (drifted; on both sides: not drifted), a type that changed
between reference and current (drifted), a text column (not tested: Evidently runs a text
classifier for those; not drifted). Datetime and unknown-typed columns are left out, as
`DataDriftPreset` leaves them out, and listed in `DriftResult.extra["skipped"]` (with nested
columns, which `DriftEngine.run` sets aside before an engine sees them).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import choice
from .. import columns as cols
from .. import stattests as st
from ..profile import EXACT_VALUES, ColumnProfile, ReferenceProfile
from ..result import CATEGORICAL, NUMERIC, ColumnDrift
from .base import Comparison, DriftEngine, DriftOptions

GRID_BINS = 8192
TAIL_BINS = 1024
NAN = float("nan")


@dataclass
class _Numeric:
    store: str
    n: int
    missing: int
    nonfinite: int
    std: float
    low: float
    high: float
    n_unique: int | None  # None: more than EXACT_VALUES
    values: np.ndarray | None = None  # distinct values, when at most EXACT_VALUES
    counts: np.ndarray | None = None
    sorted: np.ndarray | None = None  # the whole sample (raw reference)
    quantiles: np.ndarray | None = None  # sketch (profile with many values)
    tail_low: np.ndarray | None = None  # exact smallest and largest values (with the sketch)
    tail_high: np.ndarray | None = None

    @classmethod
    def from_values(cls, store: str, values: np.ndarray, missing: int, nonfinite: int):
        s = np.sort(values)
        ref = cls(store, s.size, missing, nonfinite, NAN, NAN, NAN, None, sorted=s)
        if s.size:
            ref.std, ref.low, ref.high = float(np.std(s)), float(s[0]), float(s[-1])
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            ref.n_unique = int(starts.size)
            if starts.size <= EXACT_VALUES:
                ref.values, ref.counts = s[starts], np.diff(np.r_[starts, s.size])
            else:
                ref.n_unique = None
        return ref

    @classmethod
    def from_profile(cls, p: ColumnProfile):
        ref = cls(p.dtype, p.count, p.missing, p.nonfinite, NAN, NAN, NAN, None)
        if p.count:
            ref.std, ref.low, ref.high = float(p.std), float(p.min), float(p.max)
            if p.values is not None:
                ref.values = np.asarray(p.values, dtype=np.float64)
                ref.counts = np.asarray(p.value_counts, dtype=np.int64)
                ref.n_unique = int(ref.values.size)
            ref.quantiles = np.asarray(p.quantiles, dtype=np.float64)
            if p.tail_low and p.tail_high:
                ref.tail_low = np.asarray(p.tail_low, dtype=np.float64)
                ref.tail_high = np.asarray(p.tail_high, dtype=np.float64)
        return ref

    def sample(self) -> np.ndarray | None:
        if self.sorted is not None:
            return self.sorted
        if self.values is not None:
            return np.repeat(self.values, self.counts)
        return None

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """F(x) = share of values <= x (interpolated in the sketch when not exact)."""
        if self.values is not None:
            cum = np.r_[0, np.cumsum(self.counts)]
            return cum[np.searchsorted(self.values, x, side="right")] / self.n
        q = self.quantiles
        last = np.searchsorted(q, np.unique(q), side="right") - 1
        f = np.interp(x, q[last], st_p(q.size)[last], left=0.0, right=1.0)
        if self.tail_low is not None:
            low, high = self.tail_low, self.tail_high
            in_low, in_high = x < low[-1], x >= high[0]
            f[in_low] = np.searchsorted(low, x[in_low], side="right") / self.n
            k = self.n - high.size
            f[in_high] = (k + np.searchsorted(high, x[in_high], side="right")) / self.n
        return f

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        """Counts per bin, as `np.histogram(values, edges)` (exact unless from a sketch)."""
        if self.sorted is not None:
            return st.sorted_histogram(self.sorted, edges).astype(np.float64)
        if self.values is not None:
            cum = np.r_[0, np.cumsum(self.counts)]
            left = np.searchsorted(self.values, edges[:-1], side="left")
            right = np.searchsorted(self.values, edges[-1:], side="right")
            return np.diff(cum[np.r_[left, right]]).astype(np.float64)
        below = self.cdf(edges)
        below[0], below[-1] = 0.0, 1.0
        return np.diff(below) * self.n


def st_p(size: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, size)


@dataclass
class _Counts:
    """Counts of values: keys are floats for numbers, strings otherwise."""

    n: int
    missing: int
    nonfinite: int
    counts: Any  # pandas Series indexed by key
    other: int = 0  # values beyond the profile's top values
    lump: bool = True  # current values outside `counts` go to `other` (else: new values)


def _numeric_counts(values: np.ndarray, missing: int, nonfinite: int) -> _Counts:
    import pandas as pd

    keys, counts = np.unique(values, return_counts=True)
    return _Counts(values.size, missing, nonfinite, pd.Series(counts, index=keys))


def _series_counts(series: Any) -> _Counts:
    import pandas as pd

    if series.dtype.name.lower().startswith(("float", "int", "uint")):
        return _numeric_counts(*cols.finite_values(series))
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    valid = codes[codes >= 0]
    counts = pd.Series(np.bincount(valid, minlength=len(uniques)), index=[str(v) for v in uniques])
    counts = counts[counts > 0]  # a category dtype lists its unused categories too
    if not counts.index.is_unique:
        counts = counts.groupby(level=0).sum()
    return _Counts(int(valid.size), int(codes.size - valid.size), 0, counts)


def _profile_counts(p: ColumnProfile) -> _Counts:
    import pandas as pd

    if p.is_numeric:
        if p.values is not None:
            counts = pd.Series(p.value_counts, index=np.asarray(p.values, dtype=np.float64))
            return _Counts(p.count, p.missing, p.nonfinite, counts)
        # many distinct numbers, now used as categories: their values are not kept
        empty = pd.Series([], dtype=np.int64)
        return _Counts(p.count, p.missing, p.nonfinite, empty, p.count, lump=False)
    counts = pd.Series(p.counts or {}, dtype=np.int64)
    counts.index = pd.Index([str(v) for v in counts.index], dtype=object)
    return _Counts(p.count, p.missing, p.nonfinite, counts, p.other_count)


class _Reference:
    """One reference column: raw Series or ColumnProfile, converted on demand."""

    def __init__(self, series: Any = None, profile: ColumnProfile | None = None):
        self.series, self.profile = series, profile
        self.store = cols.storage(series) if profile is None else profile.dtype
        self._numeric: _Numeric | None = None
        self._counts: _Counts | None = None

    def numeric(self) -> _Numeric:
        if self._numeric is None:
            if self.profile is not None:
                self._numeric = _Numeric.from_profile(self.profile)
            else:
                self._numeric = _Numeric.from_values(self.store, *cols.finite_values(self.series))
        return self._numeric

    def counts(self) -> _Counts:
        if self._counts is None:
            self._counts = self._make_counts()
        return self._counts

    def _make_counts(self) -> _Counts:
        if self.profile is not None:
            return _profile_counts(self.profile)
        if self.store in ("float", "int"):
            num = self.numeric()
            if num.values is not None:
                import pandas as pd

                series = pd.Series(num.counts, index=num.values)
                return _Counts(num.n, num.missing, num.nonfinite, series)
        return _series_counts(self.series)

    def count(self) -> int:
        if self.profile is not None:
            return self.profile.count
        if self.store in ("float", "int"):
            return self.numeric().n
        if self.store == "empty":
            return 0
        return self.counts().n

    def nonfinite(self) -> int:
        if self.store not in ("float", "int"):
            return 0
        return self.profile.nonfinite if self.profile is not None else self.numeric().nonfinite


class NativeEngine(DriftEngine):
    """Evidently's tests computed by cellops, from the raw reference or a stored profile."""

    name = "native"
    strings_as_categories = True  # it counts categories: no Python string per row needed

    def compare_columns(
        self, reference: Any, current: Any, names: list[str], options: DriftOptions
    ) -> Comparison:
        from_profile = isinstance(reference, ReferenceProfile)

        def one(name: str) -> ColumnDrift | str:
            ref = (
                _Reference(profile=reference.columns[name])
                if from_profile
                else _Reference(series=reference[name])
            )
            return compare_column(name, ref, current[name], options.stattest)

        workers = min(len(names), os.cpu_count() or 1)
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                outcomes = list(pool.map(one, names))
        else:
            outcomes = [one(name) for name in names]
        return Comparison(
            columns=[o for o in outcomes if isinstance(o, ColumnDrift)],
            skipped={n: o for n, o in zip(names, outcomes, strict=True) if isinstance(o, str)},
        )


def compare_column(
    name: str, ref: _Reference, current: Any, stattest: str | None
) -> ColumnDrift | str:
    """One column's test, or a string saying why the column is left out."""
    cur_store = cols.storage(current)
    cur_numeric = cur_store in ("float", "int")
    if cur_numeric:
        cur_values, cur_missing, cur_nonfinite = cols.finite_values(current)
        cur_count = cur_values.size
        cur_counts = None
    else:
        cur_values, cur_nonfinite = None, 0
        cur_counts = None if cur_store == "empty" else _series_counts(current)
        cur_count = 0 if cur_counts is None else cur_counts.n
    ref_count = ref.count()
    ref_kind_guess = NUMERIC if ref.store in ("float", "int") else CATEGORICAL
    notes = []
    if ref.nonfinite() or cur_nonfinite:
        notes.append(
            f"inf/-inf treated as missing ({ref.nonfinite()} in reference, "
            f"{cur_nonfinite} in current)"
        )

    def row(kind: str, test: str, score: float, threshold: float, drifted: bool, note: str):
        text = "; ".join([note, *notes] if note else notes)
        return ColumnDrift(name, kind, test, float(score), float(threshold), drifted, text)

    if ref_count == 0 or cur_count == 0:
        both = ref_count == 0 and cur_count == 0
        where = "reference and current" if both else "reference" if ref_count == 0 else "current"
        return row(ref_kind_guess, "", NAN, NAN, not both, f"all values missing in {where}")
    ref_class, cur_class = cols.storage_class(ref.store), cols.storage_class(cur_store)
    if ref_class != cur_class:
        return row(
            ref_kind_guess, "", NAN, NAN, True,
            f"type changed: {_describe(ref.store)} in reference, {_describe(cur_store)} in current",
        )  # fmt: skip
    if cur_store == "int":
        n_unique_cur = int(np.unique(cur_values).size)
    elif cur_store == "float":
        n_unique_cur = -1  # floats are numerical whatever their distinct count
    else:
        n_unique_cur = len(cur_counts.counts)
    kind = cols.evidently_kind(cur_store, n_unique_cur, cur_count)
    if kind in (cols.DATETIME, cols.UNKNOWN):
        return f"{kind} column: not tested (Evidently's DataDriftPreset leaves it out)"
    if kind == cols.TEXT:
        return row(
            cols.TEXT, "", NAN, NAN, False,
            "text column (over half the values distinct): not tested by the native engine; "
            "engine='evidently' runs its text classifier",
        )  # fmt: skip
    test, note = _choose(kind, stattest)
    if kind == NUMERIC:
        test, score = _numeric_test(ref.numeric(), cur_values, cur_store, test)
    else:
        ref_counts = ref.counts()
        if cur_counts is None:
            cur_counts = _numeric_counts(cur_values, 0, 0)
        test, score = _categorical_test(ref_counts, cur_counts, test)
    threshold = choice.THRESHOLDS[test]
    return row(kind, test, score, threshold, choice.is_drifted(test, score, threshold), note)


def _describe(store: str) -> str:
    return {"float": "numeric", "int": "numeric", "string": "text"}.get(store, store)


def _choose(kind: str, stattest: str | None) -> tuple[str | None, str]:
    if stattest is None:
        return None, ""
    if kind == CATEGORICAL and stattest in choice.NUMERIC_ONLY:
        return None, f"{stattest} applies to numeric columns only; used the default test"
    if kind == NUMERIC and stattest in (choice.CHISQUARE, choice.Z):
        return None, f"{stattest} applies to categorical columns only; used the default test"
    return stattest, ""


def _numeric_test(ref: _Numeric, cur: np.ndarray, cur_store: str, test: str | None):
    cur_distinct = None
    if ref.n_unique is not None and ref.n_unique <= choice.BINNED_MIN_UNIQUE:
        cur_distinct = np.unique(cur, return_counts=True)
    if test is None:
        if ref.n_unique is None or ref.n_unique > choice.FEW_VALUES:
            n_values = choice.FEW_VALUES + 1
        else:
            n_values = int(np.union1d(ref.values, cur_distinct[0]).size)
        test = choice.default_test(NUMERIC, ref.n, n_values)
    if test == choice.KS:
        sample = ref.sample()
        if sample is not None:
            return test, st.ks_pvalue(sample, cur)
        _, d = _grid_distances(ref, cur)
        return test, st.ks_pvalue_from_d(d, ref.n, cur.size)
    if test == choice.WASSERSTEIN:
        if ref.sorted is not None:
            distance = st.wasserstein_sorted(ref.sorted, np.sort(cur))
        elif ref.values is not None:
            distance = _w1_discrete(ref.values, ref.counts, cur)
        else:
            distance, _ = _grid_distances(ref, cur)
        return test, st.wasserstein_norm(distance, ref.std)
    if test in (choice.CHISQUARE, choice.Z) or (
        ref.n_unique is not None and ref.n_unique <= choice.BINNED_MIN_UNIQUE
    ):
        if cur_distinct is None:
            cur_distinct = np.unique(cur, return_counts=True)
        keys = np.union1d(ref.values, cur_distinct[0])
        ref_counts = np.zeros(keys.size)
        cur_counts = np.zeros(keys.size)
        ref_counts[np.searchsorted(keys, ref.values)] = ref.counts
        cur_counts[np.searchsorted(keys, cur_distinct[0])] = cur_distinct[1]
        return test, _counts_test(test, ref_counts, cur_counts)
    # get_binned_data: Sturges bins of reference + current
    integer = ref.store == "int" and cur_store == "int"
    lo, hi = min(ref.low, float(cur.min())), max(ref.high, float(cur.max()))
    edges = st.sturges_edges(lo, hi, ref.n + cur.size, integer=integer)
    ref_pct = ref.histogram(edges) / ref.n
    cur_pct = st.uniform_histogram(cur, edges) / cur.size
    if test == choice.PSI:
        return test, st.psi(ref_pct, cur_pct)
    return test, st.jensenshannon(ref_pct, cur_pct)


def _counts_test(test: str, ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    if test == choice.CHISQUARE:
        return st.chisquare_pvalue(ref_counts, cur_counts)
    if test == choice.Z:
        return st.z_pvalue(ref_counts, cur_counts)
    ref_pct, cur_pct = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    if test == choice.PSI:
        return st.psi(ref_pct, cur_pct)
    return st.jensenshannon(ref_pct, cur_pct)


def _categorical_test(ref: _Counts, cur: _Counts, test: str | None) -> tuple[str, float]:
    import pandas as pd

    ref_series, cur_series = ref.counts, cur.counts
    if ref.other:
        other = 0.0
        if ref.lump:
            inside = cur_series.index.isin(ref_series.index)
            other = float(cur_series[~inside].sum())
            cur_series = cur_series[inside]
        ref_series = pd.concat([ref_series, pd.Series([ref.other], index=["\0other"])])
        cur_series = pd.concat([cur_series, pd.Series([other], index=["\0other"])])
    table = pd.concat([ref_series, cur_series], axis=1, join="outer").fillna(0)
    ref_counts = table.iloc[:, 0].to_numpy(dtype=np.float64)
    cur_counts = table.iloc[:, 1].to_numpy(dtype=np.float64)
    if test is None:
        test = choice.default_test(CATEGORICAL, ref.n, len(table))
    return test, _counts_test(test, ref_counts, cur_counts)


def _w1_discrete(values: np.ndarray, counts: np.ndarray, cur: np.ndarray) -> float:
    """Exact W1 between a reference of distinct values with counts and a current sample."""
    cur_sorted = np.sort(cur)
    starts = np.flatnonzero(np.r_[True, cur_sorted[1:] != cur_sorted[:-1]])
    cur_values = cur_sorted[starts]
    cur_counts = np.diff(np.r_[starts, cur_sorted.size])
    support = np.union1d(values, cur_values)
    f_ref = np.zeros(support.size)
    f_cur = np.zeros(support.size)
    f_ref[np.searchsorted(support, values)] = counts
    f_cur[np.searchsorted(support, cur_values)] = cur_counts
    f_ref = np.cumsum(f_ref) / counts.sum()
    f_cur = np.cumsum(f_cur) / cur_counts.sum()
    return float(np.dot(np.abs(f_ref - f_cur)[:-1], np.diff(support)))


def _grid_distances(ref: _Numeric, cur: np.ndarray) -> tuple[float, float]:
    """(W1, KS statistic) from the reference CDF and a histogram of the current values.

    8192 equal bins between the reference's exact tails (else its 0.05% and 99.95% quantiles),
    1024 in each tail up to the combined min and max: fine where the data is, whatever the
    outliers.
    """
    lo, hi = min(ref.low, float(cur.min())), max(ref.high, float(cur.max()))
    if lo == hi:
        return 0.0, 0.0
    if ref.tail_low is not None:
        c_lo, c_hi = float(ref.tail_low[-1]), float(ref.tail_high[0])
    else:
        c_lo, c_hi = float(ref.quantiles[1]), float(ref.quantiles[-2])
    if not lo <= c_lo < c_hi <= hi:
        c_lo, c_hi = lo, hi
    below, above = cur < c_lo, cur > c_hi
    n_below, n_above = int(np.count_nonzero(below)), int(np.count_nonzero(above))
    middle = st.grid_counts(cur, c_lo, c_hi, GRID_BINS)
    middle[0] -= n_below
    middle[-1] -= n_above
    edges, counts = [np.linspace(c_lo, c_hi, GRID_BINS + 1)], [middle]
    if c_lo > lo:
        edges.insert(0, np.linspace(lo, c_lo, TAIL_BINS + 1)[:-1])
        counts.insert(0, st.grid_counts(cur[below], lo, c_lo, TAIL_BINS))
    if c_hi < hi:
        edges.append(np.linspace(c_hi, hi, TAIL_BINS + 1)[1:])
        counts.append(st.grid_counts(cur[above], c_hi, hi, TAIL_BINS))
    grid = np.concatenate(edges)
    f_cur = np.r_[0.0, np.cumsum(np.concatenate(counts))] / cur.size
    diff = np.abs(ref.cdf(grid) - f_cur)
    w1 = float(np.sum((diff[1:] + diff[:-1]) * 0.5 * np.diff(grid)))
    return w1, float(diff.max())
