"""The Evidently engine: `DataDriftPreset` through Evidently 0.7's current API, and its HTML report.

Evidently is imported inside the functions (its import takes 5-8 s). Columns are typed as the
native engine types them (`columns.py`: Evidently's own inference, applied to the current data)
and handed to Evidently in an explicit `DataDefinition`, so both engines test the same columns
the same way. Where Evidently would raise (a column all missing on one side, a type that changed)
the column is reported with the native engine's note and decision instead; datetime and
unknown-typed columns are left out, as `DataDriftPreset` leaves them out. Text columns get
Evidently's text-content drift (a domain classifier with 1000 bootstrap rounds: ~30 s a column
even on 100 rows). Per column, the test Evidently chose, its score and threshold, and its
decision (the status of the column's "Value Drift" test) are read back from the snapshot.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..result import CATEGORICAL, NUMERIC, ColumnDrift
from .base import Comparison, DriftEngine, DriftOptions

REPORTS_SUBDIR = Path("reports") / "drift"

# Evidently resolves the default test to its display name; an explicit `stattest` stays as given.
TEST_NAMES = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
    "Absolute text content drift": "abs_text_content_drift",
    "Percentile text content drift": "perc_text_content_drift",
}
# Tests whose score is a p-value (drift when small); the others are distances (drift when large).
P_VALUE_TESTS = {"ks", "chisquare", "z"}


class EvidentlyEngine(DriftEngine):
    """Evidently's `DataDriftPreset` on the raw reference data, and its HTML report."""

    name = "evidently"
    needs_raw_reference = True  # Evidently compares samples: a profile is not one

    def compare_columns(
        self, reference: Any, current: Any, names: list[str], options: DriftOptions
    ) -> Comparison:
        stattest = options.stattest
        plans = {name: _plan(name, reference[name], current[name], stattest) for name in names}
        tested = [name for name, plan in plans.items() if isinstance(plan, _Plan)]
        found: dict[str, ColumnDrift] = {}
        html = None
        extra: dict[str, Any] = {}
        if tested:
            found, html, extra = _evidently_drift(
                reference[tested],
                current[tested],
                {n: plans[n] for n in tested},
                options.share_threshold,
            )
        results, skipped = [], {}
        for name, plan in plans.items():
            if isinstance(plan, _Plan):
                results.append(plan.finish(found[name]))
            elif isinstance(plan, ColumnDrift):
                results.append(plan)
            else:
                skipped[name] = plan
        report_path = _save_report(html, options.report_dir) if html is not None else None
        return Comparison(results, skipped, extra, report_path)


@dataclass
class _Plan:
    """A column Evidently will test: its type, the forced test (if it applies), our notes."""

    kind: str
    method: str | None
    notes: list[str]

    def finish(self, found: ColumnDrift) -> ColumnDrift:
        found.note = "; ".join(self.notes)
        return found


def _plan(name: str, reference: Any, current: Any, stattest: str | None) -> Any:
    """A `_Plan`, or the column's result when Evidently would raise, or why it is left out.

    Typed and judged as the native engine does (`columns.py`, `native.compare_column`), so the
    two engines report the same columns the same way: Evidently's inference on the current
    data, all-missing columns and changed types reported with a note instead of an exception.
    """
    from .. import columns as cols

    ref_store, cur_store = cols.storage(reference), cols.storage(current)
    ref_count, ref_nonfinite, _ = _present(reference, ref_store)
    cur_count, cur_nonfinite, cur_values = _present(current, cur_store)
    notes = []
    if ref_nonfinite or cur_nonfinite:
        notes.append(
            f"inf/-inf treated as missing ({ref_nonfinite} in reference, "
            f"{cur_nonfinite} in current)"
        )
    guess = NUMERIC if ref_store in ("float", "int") else CATEGORICAL

    def untested(drifted: bool, note: str, kind: str = guess) -> ColumnDrift:
        text = "; ".join([note, *notes])
        nan = float("nan")
        return ColumnDrift(name, kind, "", nan, nan, drifted, text)

    if ref_count == 0 or cur_count == 0:
        both = ref_count == 0 and cur_count == 0
        where = "reference and current" if both else "reference" if ref_count == 0 else "current"
        return untested(not both, f"all values missing in {where}")
    if cols.storage_class(ref_store) != cols.storage_class(cur_store):
        return untested(
            True,
            f"type changed: {_describe(ref_store)} in reference, {_describe(cur_store)} in current",
        )
    if cur_store == "int":
        import numpy as np

        n_unique = int(np.unique(cur_values).size)
    elif cur_store == "float":
        n_unique = -1
    else:
        n_unique = int(current.dropna().astype(str).nunique())
    kind = cols.evidently_kind(cur_store, n_unique, cur_count)
    if kind in (cols.DATETIME, cols.UNKNOWN):
        return f"{kind} column: not tested (Evidently's DataDriftPreset leaves it out)"
    method = stattest
    if stattest is not None and stattest not in ALLOWED.get(kind, ()):
        method = None
        if kind != cols.TEXT:
            only = "numeric" if kind == CATEGORICAL else "categorical"
            notes.insert(0, f"{stattest} applies to {only} columns only; used the default test")
    return _Plan(kind, method, notes)


# which forced tests Evidently accepts for which column type (each StatTest's feature types)
ALLOWED = {
    NUMERIC: ("ks", "wasserstein", "jensenshannon", "psi"),
    CATEGORICAL: ("chisquare", "z", "jensenshannon", "psi"),
}


def _present(series: Any, store: str) -> tuple[int, int, Any]:
    """(non-missing finite count, non-finite count, finite values for numbers)."""
    from .. import columns as cols

    if store in ("float", "int"):
        values, _, nonfinite = cols.finite_values(series)
        return int(values.size), nonfinite, values
    if store == "empty":
        return 0, 0, None
    return int(series.notna().sum()), 0, None


def _describe(store: str) -> str:
    return {"float": "numeric", "int": "numeric", "string": "text"}.get(store, store)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Evidently and SciPy warn about pandas idioms and small samples; the result says enough."""
    previous = logging.getLogger("evidently").level
    logging.getLogger("evidently").setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("evidently").setLevel(previous)


def _evidently_drift(
    reference: Any, current: Any, plans: dict[str, _Plan], share_threshold: float
) -> tuple[dict[str, ColumnDrift], str, dict[str, Any]]:
    from ..columns import TEXT

    kinds = {name: plan.kind for name, plan in plans.items()}
    with _quiet():
        import evidently
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        names = list(reference.columns)
        definition = DataDefinition(
            numerical_columns=[c for c in names if kinds[c] == NUMERIC],
            categorical_columns=[c for c in names if kinds[c] == CATEGORICAL],
            text_columns=[c for c in names if kinds[c] == TEXT],
        )
        methods = {name: plan.method for name, plan in plans.items() if plan.method}
        preset = DataDriftPreset(
            columns=names, drift_share=share_threshold, per_column_method=methods or None
        )
        report = Report([preset], include_tests=True)
        snapshot = report.run(
            Dataset.from_pandas(_prepared(current, kinds), data_definition=definition),
            Dataset.from_pandas(_prepared(reference, kinds), data_definition=definition),
        )
        html = snapshot.get_html_str(as_iframe=False)
        found, summary = _read_snapshot(snapshot, kinds)
    missing = [c for c in names if c not in found]
    if missing:  # pragma: no cover - Evidently reports every column it was given
        raise RuntimeError(f"Evidently's report has no drift result for {missing}")
    extra = {"evidently_version": evidently.__version__, **summary}
    return found, html, extra


def _prepared(frame: Any, kinds: dict[str, str]) -> Any:
    """Pandas' category and nullable dtypes as the plain ones Evidently handles."""
    import numpy as np
    import pandas as pd

    converted = {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.CategoricalDtype):
            converted[name] = series.astype(object)
        elif isinstance(series.dtype, pd.api.extensions.ExtensionDtype) and kinds[name] == NUMERIC:
            converted[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
            converted[name] = series.astype(object).where(series.notna(), None)
    return frame.assign(**converted) if converted else frame


def _read_snapshot(snapshot: Any, kinds: dict[str, str]) -> tuple[dict[str, ColumnDrift], dict]:
    statuses: dict[str, str] = {}
    for test in snapshot.tests_results:
        statuses[test.metric_config.metric_id] = str(getattr(test.status, "value", test.status))
    found: dict[str, ColumnDrift] = {}
    summary: dict[str, Any] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            value = metric.get("value") or {}
            summary = {
                "evidently_drifted_count": _float(value.get("count")),
                "evidently_drifted_share": _float(value.get("share")),
            }
        if not kind.endswith(":ValueDrift"):
            continue
        column = str(config["column"])
        method = str(config.get("method") or "")
        test = TEST_NAMES.get(method, method)
        score = _float(metric.get("value"))
        threshold = _float(config.get("threshold"))
        status = statuses.get(metric.get("id"), "")
        if status in ("FAIL", "SUCCESS"):
            drifted = status == "FAIL"
        else:  # no test result: decide as Evidently's tests do
            drifted = _decide(test, score, threshold)
        found[column] = ColumnDrift(
            column=column,
            kind=kinds[column],
            test=test,
            score=score,
            threshold=threshold,
            drifted=drifted,
        )
    return found, summary


def _decide(test: str, score: float, threshold: float) -> bool:
    if math.isnan(score) or math.isnan(threshold):
        return False
    if test == "ks":
        return score <= threshold
    return score < threshold if test in P_VALUE_TESTS else score >= threshold


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def default_report_dir() -> Path:
    from ...config import load_settings

    return load_settings().root / REPORTS_SUBDIR


def _save_report(html: str, report_dir: str | Path | None) -> Path:
    from ..._fs import atomic_write_text

    folder = Path(report_dir) if report_dir is not None else default_report_dir()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = folder / f"drift-{stamp}.html"
    atomic_write_text(target, html)
    return target
