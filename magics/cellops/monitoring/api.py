"""`cellops.drift(reference, current)`: read the inputs as the chosen engine wants them, run it.

The checks of what the user gave (the threshold, the test, the columns, the rows) are the
engine base class's (`engines/base.py`); this module only turns paths and model URIs into
data, so every front end (the function, the magic, the CLI) gets the same answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._text import split_names
from ..errors import CellopsUsageError
from . import choice
from .engines import get_engine
from .engines.base import check_share_threshold
from .result import DriftResult

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
    current: a DataFrame or a .parquet/.csv path. engine: "native" (default), "evidently"
    (needs raw reference data; writes Evidently's HTML report under `report_dir`), or one
    registered under the `cellops.drift_engines` entry points (`engines.engine_names()`).
    stattest: one test for every column ("ks", "chisquare", "z", "wasserstein",
    "jensenshannon", "psi"), else Evidently's choice per column. Columns holding structs or
    lists are not tested: they are listed in `extra["skipped"]`.
    """
    chosen = get_engine(engine)
    # checked before any file is read (the engine checks them again, as cheaply)
    check_share_threshold(share_threshold)
    choice.check_stattest(stattest)
    if isinstance(columns, str):
        columns = split_names(columns)

    ref = _load_reference(reference, columns, chosen.strings_as_categories)
    chosen.check_reference(ref)
    cur = _load_frame(current, "current", columns, chosen.strings_as_categories)
    return chosen.run(ref, cur, columns, share_threshold, stattest, report_dir)


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
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        return _read_parquet_folder(Path(data), role, columns)
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
        "the path of a .parquet or .csv file or of a folder of .parquet files"
        + (", a ReferenceProfile, or models:/NAME@ALIAS" if role == "reference" else "")
    )


def _read_parquet_folder(folder: Path, role: str, columns: list[str] | None) -> Any:
    """A folder of Parquet files read as one table (hive partitions such as `date=...` become
    columns; names starting with "." or "_" are skipped, as files still being written are):
    for example the prediction log of `cellops serve`, `.cellops/predictions/model=NAME`."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    if not dataset.files:
        raise CellopsUsageError(
            f"the {role} data folder {str(folder)!r} holds no .parquet files: give a folder of "
            "Parquet files (such as .cellops/predictions/model=NAME) or a .parquet or .csv file"
        )
    names = dataset.schema.names
    wanted = [c for c in columns if c in names] if columns is not None else None
    return dataset.to_table(columns=wanted).to_pandas()
