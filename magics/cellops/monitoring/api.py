"""`cellops.drift(reference, current)`: resolve the inputs, pick the engine, run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CellopsUsageError
from . import choice
from .columns import resolve_columns
from .result import DriftResult

ENGINES = ("native", "evidently")
DATA_SUFFIXES = (".parquet", ".pq", ".csv")


def drift(
    reference: Any,
    current: Any,
    columns: list[str] | None = None,
    engine: str = "native",
    share_threshold: float = 0.5,
    stattest: str | None = None,
    report_dir: str | Path | None = None,
) -> DriftResult:
    """Compare `current` with `reference` column by column, with Evidently's tests.

    reference: a DataFrame, a .parquet/.csv path, a `ReferenceProfile` or its .json path, or
    "models:/NAME/VERSION" / "models:/NAME@ALIAS" (the profile stored with that version).
    current: a DataFrame or a .parquet/.csv path. engine: "native" (default) or "evidently"
    (needs raw reference data; writes Evidently's HTML report under `report_dir`).
    stattest: one test for every column ("ks", "chisquare", "z", "wasserstein",
    "jensenshannon", "psi"), else Evidently's choice per column.
    """
    from .profile import ReferenceProfile

    engine = str(engine).strip().lower()
    if engine not in ENGINES:
        raise CellopsUsageError(
            f"unknown drift engine {engine!r}; choose one of: {', '.join(ENGINES)}"
        )
    stattest = choice.check_stattest(stattest)
    try:
        share_threshold = float(share_threshold)
    except (TypeError, ValueError):
        share_threshold = float("nan")
    if not 0 < share_threshold <= 1:
        raise CellopsUsageError(
            f"share_threshold must be a share of columns in (0, 1], e.g. 0.5; got {share_threshold}"
        )
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]

    ref = _load_reference(reference, columns, engine == "native")
    if engine == "evidently" and isinstance(ref, ReferenceProfile):
        raise CellopsUsageError(
            "engine='evidently' needs the raw reference data (a DataFrame or a Parquet/CSV "
            "path), not a profile; use engine='native' with a profile"
        )
    # the native engine counts categories: strings read as dictionaries (pandas categoricals)
    # skip building a Python object per value; Evidently gets the plain strings it expects
    strings_as_categories = engine == "native"
    cur = _load_frame(current, "current", columns, strings_as_categories)
    ref_columns = list(ref.columns) if isinstance(ref, ReferenceProfile) else _names(ref)
    names = resolve_columns(ref_columns, _names(cur), columns)
    ref_rows = ref.rows if isinstance(ref, ReferenceProfile) else len(ref)
    if ref_rows == 0:
        raise CellopsUsageError("the reference data has no rows: nothing to compare against")
    if len(cur) == 0:
        raise CellopsUsageError("the current data has no rows: nothing to check")

    if engine == "evidently":
        from .engines.evidently import run_evidently

        return run_evidently(ref, cur, names, share_threshold, stattest, report_dir)
    from .engines.native import run_native

    return run_native(ref, cur, names, share_threshold, stattest)


def _names(frame: Any) -> list[str]:
    return [str(c) for c in frame.columns]


def _load_reference(reference: Any, columns: list[str] | None, categories: bool) -> Any:
    from .profile import ReferenceProfile

    if isinstance(reference, ReferenceProfile):
        return reference
    if isinstance(reference, str) and reference.startswith("models:/"):
        from .reference import load_reference_profile, parse_model_uri

        ref = parse_model_uri(reference)
        return load_reference_profile(None, ref.name, ref.version or ref.alias)
    if isinstance(reference, (str, Path)) and Path(reference).suffix.lower() == ".json":
        return ReferenceProfile.load(reference)
    return _load_frame(reference, "reference", columns, categories)


def _load_frame(
    data: Any, role: str, columns: list[str] | None, strings_as_categories: bool = False
) -> Any:
    """A DataFrame as given, or read from a Parquet/CSV file (only the columns asked for)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            dup = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise CellopsUsageError(f"the {role} data repeats column names: {', '.join(dup)}")
        return (
            data.rename(columns=str) if any(not isinstance(c, str) for c in data.columns) else data
        )
    if isinstance(data, (str, Path)):
        path = Path(data)
        suffix = path.suffix.lower()
        if suffix not in DATA_SUFFIXES:
            raise CellopsUsageError(
                f"cannot read the {role} data {str(data)!r}: give a .parquet or .csv file"
                + (" (a profile .json can only be the reference)" if suffix == ".json" else "")
            )
        if not path.is_file():
            raise CellopsUsageError(f"the {role} data {str(data)!r} is not a file")
        if suffix == ".csv":
            from .profile import file_columns

            available = file_columns(path)
            wanted = [c for c in columns if c in available] if columns is not None else None
            return pd.read_csv(path, usecols=wanted)
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        wanted = [c for c in columns if c in schema.names] if columns is not None else None
        strings = [
            field.name
            for field in schema
            if strings_as_categories
            and (wanted is None or field.name in wanted)
            and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))
        ]
        return pq.read_table(path, columns=wanted, read_dictionary=strings or None).to_pandas()
    raise CellopsUsageError(
        f"cannot use a {type(data).__name__} as the {role} data: pass a pandas DataFrame or "
        "the path of a .parquet or .csv file"
        + (", a ReferenceProfile, or models:/NAME@ALIAS" if role == "reference" else "")
    )
