"""Column typing as Evidently 0.7 infers it, and the comparison of two schemas.

Evidently (`core/datasets.py` `infer_column_type`, applied to the *current* data, whose data
definition `DataDriftPreset` and `ValueDrift` use):
- float dtypes -> numerical;
- int dtypes -> categorical when at most 10 distinct values (INTEGER_CARDINALITY_LIMIT), else
  numerical;
- "string" dtype, or object holding str (first and last non-missing value) -> text when more
  than half of the non-missing values are distinct, else categorical;
- bool and category -> categorical; datetime -> datetime (not tested); anything else
  (object of numbers or bools, all-missing object) -> unknown (not tested).
Nested values (Parquet structs and lists, read as dicts and arrays; pandas' Arrow-backed
struct/list dtypes) have their own storage class, "nested": no engine tests them
(`engines/base.py` sets them aside with a note).
One deliberate difference: pandas' nullable "Int64"/"Float64"/"boolean" dtypes, which Evidently
leaves "unknown" (their names do not start with "int"/"float"), are typed like int/float/bool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CellopsUsageError
from .result import CATEGORICAL, NUMERIC

TEXT = "text"
DATETIME = "datetime"
UNKNOWN = "unknown"
INTEGER_CARDINALITY_LIMIT = 10

# storage classes: a column whose class differs between reference and current changed type
NUMBER = "number"
STRING = "string"
NESTED = "nested"
NESTED_NOTE = "nested values (struct/list): not tested"
# what a struct, list or map value of a Parquet column is once read into pandas
_NESTED_VALUES = (dict, list, tuple, set, frozenset, np.ndarray)


def storage(series: Any) -> str:
    """'float' | 'int' | 'bool' | 'string' | 'datetime' | 'nested' | 'other' | 'empty' for a
    pandas Series."""
    import pandas as pd

    dtype = series.dtype
    name = dtype.name.lower()
    if isinstance(dtype, pd.CategoricalDtype):
        return "string"
    if isinstance(dtype, pd.ArrowDtype) and _arrow_nested(dtype.pyarrow_dtype):
        return NESTED
    if name.startswith("float"):
        return "float"
    if name.startswith(("int", "uint")):
        return "int"
    if name == "bool" or name == "boolean":
        return "bool"
    if name.startswith("datetime"):
        return "datetime"
    if name in ("string", "str") or name.startswith("string"):
        return "string"
    if name == "object":
        array = series.to_numpy()
        first, last = _first_present(array), _first_present(array[::-1])
        if first is None:
            return "empty"
        if isinstance(first, str) and isinstance(last, str):
            return "string"
        if isinstance(first, _NESTED_VALUES) or isinstance(last, _NESTED_VALUES):
            return NESTED
        return "other"
    return "other"


def _arrow_nested(arrow_type: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_nested(arrow_type)


def _first_present(values: Any) -> Any:
    """The first non-missing value (None if none), scanning a block at a time."""
    import pandas as pd

    for start in range(0, len(values), 4096):
        block = values[start : start + 4096]
        present = np.flatnonzero(~pd.isna(block))
        if present.size:
            return block[present[0]]
    return None


def storage_class(store: str) -> str:
    """Storage classes that can be compared: ints and floats are both numbers."""
    return NUMBER if store in ("float", "int") else store


def evidently_kind(store: str, n_unique: int, count: int) -> str:
    """Evidently's column type from the storage class, distinct and non-missing counts."""
    if store == "float":
        return NUMERIC
    if store == "int":
        return CATEGORICAL if n_unique <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    if store == "string":
        return TEXT if n_unique > count * 0.5 else CATEGORICAL
    if store == "bool":
        return CATEGORICAL
    if store == "datetime":
        return DATETIME
    return UNKNOWN


def finite_values(series: Any) -> tuple[np.ndarray, int, int]:
    """(non-missing finite float values, missing count, non-finite count) of a numeric Series."""
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if finite.all():
        return values, 0, 0
    nan = np.isnan(values)
    n_nan = int(nan.sum())
    n_inf = int(values.size - n_nan - finite.sum())
    return values[finite], n_nan, n_inf


def resolve_columns(
    reference: list[str], current: list[str], columns: list[str] | None
) -> list[str]:
    """The columns to compare, or a CellopsUsageError naming what is missing where."""
    ref_set, cur_set = set(reference), set(current)
    if columns is not None:
        columns = [str(c) for c in columns]
        if not columns:
            raise CellopsUsageError("columns=[] selects nothing: name at least one column")
        no_ref = [c for c in columns if c not in ref_set]
        no_cur = [c for c in columns if c not in cur_set]
        if no_ref or no_cur:
            parts = []
            if no_ref:
                parts.append(f"not in the reference: {', '.join(no_ref)}")
            if no_cur:
                parts.append(f"not in the current data: {', '.join(no_cur)}")
            common = [c for c in reference if c in cur_set]
            raise CellopsUsageError(
                f"unknown columns ({'; '.join(parts)}). Columns in both: "
                f"{', '.join(common) or '(none)'}"
            )
        return columns
    missing = [c for c in reference if c not in cur_set]
    extra = [c for c in current if c not in ref_set]
    if missing or extra:
        common = [c for c in reference if c in cur_set]
        parts = []
        if missing:
            parts.append(f"missing from the current data: {', '.join(missing)}")
        if extra:
            parts.append(f"not in the reference: {', '.join(extra)}")
        hint = (
            f"compare the shared ones with columns={common!r} (CLI: --columns {','.join(common)})"
            if common
            else "the two data sets share no column: check that they are the right files"
        )
        raise CellopsUsageError(
            f"reference and current columns differ ({'; '.join(parts)}); {hint}"
        )
    if not reference:
        raise CellopsUsageError("the data has no columns: nothing to compare")
    return list(reference)
