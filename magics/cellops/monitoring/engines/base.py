"""What every drift engine shares. `DriftEngine.run` does the bookkeeping once; an engine
implements only `compare_columns`.

`run` checks what it was given (the share threshold, the forced test, the kinds of the two data
sets, their rows, the columns asked for), sets aside the columns no engine can test (nested
values: structs and lists), asks the engine about the others, and builds the `DriftResult`:
the columns in the order asked for, the skipped ones with their reasons in
`extra["skipped"]`, the rows, the engine's name ("NAME-profile" when the reference was a
stored profile), the threshold and the report the engine wrote.

An engine states what it needs as class attributes, which `cellops.drift` and
`cellops drift --model` read instead of testing engine names: `needs_raw_reference` (it cannot
work from a `ReferenceProfile`) and `strings_as_categories` (Parquet string columns are read as
pandas categoricals for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...errors import CellopsUsageError
from .. import columns as cols
from ..result import ColumnDrift, DriftResult


@dataclass(frozen=True)
class DriftOptions:
    """How to compare, as the user asked (checked by `DriftEngine.run`)."""

    share_threshold: float = 0.5
    stattest: str | None = None  # one test for every column; None: the default test per column
    report_dir: Path | None = None  # where an engine that writes a report puts it (None: default)


@dataclass
class Comparison:
    """What an engine found: one row per column it tested, and why it left the others out."""

    columns: list[ColumnDrift] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it was not tested
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific facts, kept as they are
    report_path: str | Path | None = None


def check_share_threshold(value: Any) -> float:
    """The share of drifted columns that makes dataset drift: a number in (0, 1].

    The one check of it: the magic and the CLI only parse the number, so all three refuse the
    same values with the same message. 0 is refused: it would call every data set drifted.
    """
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0 < share <= 1:
        shown = repr(value) if share != share else f"{share:g}"  # 0, 0.0 and "0" alike
        raise CellopsUsageError(
            "share_threshold (--share-threshold) must be a share of columns in (0, 1], "
            f"e.g. 0.5; got {shown}"
        )
    return share


class DriftEngine:
    """Compares a current data set with a reference, column by column."""

    name: ClassVar[str] = "base"
    needs_raw_reference: ClassVar[bool] = False
    """It needs the reference data itself (a DataFrame), not a stored `ReferenceProfile`."""
    strings_as_categories: ClassVar[bool] = False
    """Parquet string columns are read for it as pandas categoricals (one Python object per
    distinct value rather than per row); else as plain strings."""

    def run(
        self,
        reference: Any,
        current: Any,
        columns: list[str] | None = None,
        share_threshold: float = 0.5,
        stattest: str | None = None,
        report_dir: str | Path | None = None,
    ) -> DriftResult:
        """Drift of `current` (a DataFrame) against `reference` (a DataFrame, or a
        `ReferenceProfile` unless `needs_raw_reference`)."""
        from ..choice import check_stattest
        from ..profile import ReferenceProfile

        options = DriftOptions(
            check_share_threshold(share_threshold),
            check_stattest(stattest),
            Path(report_dir) if report_dir is not None else None,
        )
        self.check_reference(reference)
        self._check_current(current)
        from_profile = isinstance(reference, ReferenceProfile)
        ref_names = list(reference.columns) if from_profile else _names(reference)
        names = cols.resolve_columns(ref_names, _names(current), columns)
        rows_reference = reference.rows if from_profile else len(reference)
        if rows_reference == 0:
            raise CellopsUsageError("the reference data has no rows: nothing to compare against")
        if len(current) == 0:
            raise CellopsUsageError("the current data has no rows: nothing to check")

        untestable = {name: cols.NESTED_NOTE for name in names if _nested(reference, current, name)}
        tested = [name for name in names if name not in untestable]
        found = self.compare_columns(reference, current, tested, options) if tested else None
        found = found or Comparison()
        skipped = {**untestable, **found.skipped}
        order = {name: index for index, name in enumerate(names)}
        extra = dict(found.extra)
        if skipped:
            extra["skipped"] = {name: skipped[name] for name in names if name in skipped}
        return DriftResult(
            columns=sorted(found.columns, key=lambda c: order.get(c.column, len(order))),
            share_threshold=options.share_threshold,
            engine=f"{self.name}-profile" if from_profile else self.name,
            rows_reference=int(rows_reference),
            rows_current=int(len(current)),
            report_path=str(found.report_path) if found.report_path else None,
            extra=extra,
        )

    def compare_columns(
        self, reference: Any, current: Any, names: list[str], options: DriftOptions
    ) -> Comparison:
        """Test the columns `names` (present on both sides, none nested, at least one).

        `reference` and `current` are as `run` checked them; `options.stattest` is a known
        test or None. Leave a column out by naming it in `Comparison.skipped` with the reason.
        """
        raise NotImplementedError

    def check_reference(self, reference: Any) -> None:
        """A usage error unless this engine can work from `reference`."""
        import pandas as pd

        from ..profile import ReferenceProfile

        if isinstance(reference, pd.DataFrame):
            return
        if isinstance(reference, ReferenceProfile):
            if not self.needs_raw_reference:
                return
            from . import profile_engines

            others = " or ".join(f"engine={n!r}" for n in profile_engines()) or "another engine"
            raise CellopsUsageError(
                f"engine={self.name!r} needs the raw reference data (a DataFrame or a "
                f"Parquet/CSV path), not a profile; use {others} with a profile"
            )
        raise CellopsUsageError(
            f"the {self.name} engine needs the reference and current data as pandas "
            "DataFrames (or Parquet/CSV paths through cellops.drift)"
            + ("" if self.needs_raw_reference else ", or a ReferenceProfile as the reference")
        )

    def _check_current(self, current: Any) -> None:
        import pandas as pd

        if not isinstance(current, pd.DataFrame):
            raise CellopsUsageError(
                f"the {self.name} engine needs the current data as a pandas DataFrame (or a "
                f"Parquet/CSV path through cellops.drift), not a {type(current).__name__}"
            )


def _names(frame: Any) -> list[str]:
    return [str(c) for c in frame.columns]


def _nested(reference: Any, current: Any, name: str) -> bool:
    """Whether the column holds structs or lists on either side."""
    from ..profile import ReferenceProfile

    if cols.storage(current[name]) == cols.NESTED:
        return True
    if isinstance(reference, ReferenceProfile):
        return reference.columns[name].dtype == cols.NESTED
    return cols.storage(reference[name]) == cols.NESTED
