"""Evidently 0.7.23's default per-column drift test, its thresholds and its decision rule.

Matched against evidently/ (0.7.23):
- `presets/drift.py` `DataDriftPreset.generate_metrics`: one `ValueDrift` per numerical,
  categorical and text column of the current data's data definition; `drift_share` 0.5.
- `metrics/column_statistics.py` `ValueDriftCalculation` -> `legacy/calculations/data_drift.py`
  `get_one_column_drift`: the column's +/-inf become NaN and missing values are dropped in both
  data sets *before* the test is chosen (so "rows" below is the reference's non-missing count);
  an empty column raises (we report it with a note instead).
- `legacy/calculations/stattests/registry.py` `_get_default_stattest`, with n_values =
  `pd.concat([reference, current]).nunique()`:
  text: text-content drift (a classifier; not reproduced: see `native.py`);
  reference rows <= 1000: numerical -> chisquare if 2 < n_values <= 5, z if n_values <= 2,
  ks if n_values > 5; categorical -> chisquare if n_values > 2 else z;
  reference rows > 1000: numerical -> jensenshannon if n_values <= 5 else wasserstein;
  categorical -> jensenshannon.
- thresholds and decisions (`StatTest.default_threshold`, each `_..._stat_test`):
  ks p <= 0.05; chisquare p < 0.05; z p < 0.05; wasserstein (normed by max(std(ref), 0.001),
  `np.std`, ddof 0) >= 0.1; jensenshannon >= 0.1; psi >= 0.1.
- `stattests/utils.py` `get_binned_data` (jensenshannon without, psi with zero filling):
  numerical with more than 20 distinct reference values -> `np.histogram_bin_edges` "sturges"
  of reference+current, counts / len; otherwise per distinct value of the union, counts / len.
- `core/datasets.py` `infer_column_type` for column typing: see `columns.py`.
"""

from __future__ import annotations

from ..errors import CellopsUsageError
from .result import CATEGORICAL, NUMERIC

KS = "ks"
CHISQUARE = "chisquare"
Z = "z"
WASSERSTEIN = "wasserstein"
JENSENSHANNON = "jensenshannon"
PSI = "psi"

THRESHOLDS: dict[str, float] = {
    KS: 0.05,
    CHISQUARE: 0.05,
    Z: 0.05,
    WASSERSTEIN: 0.1,
    JENSENSHANNON: 0.1,
    PSI: 0.1,
}
STATTESTS: tuple[str, ...] = tuple(THRESHOLDS)
# tests that need numbers; the others run on values (counts) or bins
NUMERIC_ONLY = frozenset({KS, WASSERSTEIN})

SMALL_DATA_ROWS = 1000
FEW_VALUES = 5
BINNED_MIN_UNIQUE = 20  # get_binned_data bins numbers only above this many reference values


def default_test(kind: str, reference_rows: int, n_values: int) -> str:
    """Evidently's `_get_default_stattest` for a numeric or categorical column.

    `reference_rows`: non-missing reference values; `n_values`: distinct non-missing values of
    reference and current together.
    """
    if kind == NUMERIC:
        if reference_rows <= SMALL_DATA_ROWS:
            if n_values <= FEW_VALUES:
                return CHISQUARE if n_values > 2 else Z
            return KS
        return JENSENSHANNON if n_values <= FEW_VALUES else WASSERSTEIN
    if kind == CATEGORICAL:
        if reference_rows <= SMALL_DATA_ROWS:
            return CHISQUARE if n_values > 2 else Z
        return JENSENSHANNON
    raise ValueError(f"no drift test for a {kind} column")


def is_drifted(test: str, score: float, threshold: float) -> bool:
    """Evidently's comparison: ks p <= t; chisquare, z p < t; distances >= t."""
    if score != score:  # nan
        return False
    if test == KS:
        return bool(score <= threshold)
    if test in (CHISQUARE, Z):
        return bool(score < threshold)
    return bool(score >= threshold)


def check_stattest(stattest: str | None) -> str | None:
    if stattest is None:
        return None
    name = str(stattest).strip().lower()
    if name not in THRESHOLDS:
        raise CellopsUsageError(
            f"unknown drift test {stattest!r}; choose one of: {', '.join(STATTESTS)} "
            "(or leave it out for Evidently's default choice per column)"
        )
    return name
