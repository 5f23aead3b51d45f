"""The outcome of a drift check, the same whichever engine computed it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

NUMERIC = "numeric"
CATEGORICAL = "categorical"
COLUMN_HEADERS = ("column", "type", "test", "score", "threshold", "drifted", "note")


@dataclass
class ColumnDrift:
    """One column's test: `score` is a p-value for ks/chisquare/z, a distance for the others."""

    column: str
    kind: str
    test: str
    score: float
    threshold: float
    drifted: bool
    note: str = ""


@dataclass
class DriftResult:
    """Per-column decisions, and dataset drift when the drifted share reaches the threshold."""

    columns: list[ColumnDrift]
    share_threshold: float
    engine: str
    rows_reference: int
    rows_current: int
    report_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_drifted(self) -> int:
        return sum(c.drifted for c in self.columns)

    @property
    def share(self) -> float:
        return self.n_drifted / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.share >= self.share_threshold

    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnDrift:
        for entry in self.columns:
            if entry.column == name:
                return entry
        raise KeyError(name)

    def summary(self) -> str:
        verdict = "DRIFT" if self.dataset_drift else "no dataset drift"
        return (
            f"{verdict}: {self.n_drifted} of {len(self.columns)} columns drifted "
            f"(share {self.share:.2f}, threshold {self.share_threshold:.2f}; engine "
            f"{self.engine}; {self.rows_reference:,} reference rows, "
            f"{self.rows_current:,} current rows)"
        )

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        for entry in payload["columns"]:
            entry["score"] = _finite_or_none(entry["score"])
        payload["share"] = self.share
        payload["dataset_drift"] = self.dataset_drift
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> DriftResult:
        columns = [
            ColumnDrift(**{**entry, "score": _none_to_nan(entry.get("score"))})
            for entry in payload["columns"]
        ]
        return cls(
            columns=columns,
            share_threshold=float(payload["share_threshold"]),
            engine=str(payload["engine"]),
            rows_reference=int(payload["rows_reference"]),
            rows_current=int(payload["rows_current"]),
            report_path=payload.get("report_path"),
            extra=dict(payload.get("extra") or {}),
        )

    def to_frame(self) -> Any:
        import pandas as pd

        fields = ["column", "kind", "test", "score", "threshold", "drifted", "note"]
        return pd.DataFrame([asdict(c) for c in self.columns], columns=fields)

    def table_rows(self, drifted_first: bool = False) -> list[tuple[str, ...]]:
        """The per-column table as text cells, in `COLUMN_HEADERS` order."""
        entries = self.columns
        if drifted_first:
            entries = sorted(entries, key=lambda c: (not c.drifted, c.column))
        return [
            (c.column, c.kind, c.test, _fmt(c.score), _fmt(c.threshold),
             "DRIFT" if c.drifted else "-", c.note)
            for c in entries
        ]  # fmt: skip

    def skipped_lines(self) -> list[str]:
        """One line per column left out (`extra["skipped"]`), with the reason."""
        skipped = self.extra.get("skipped") or {}
        return [f"not tested: {name} ({reason})" for name, reason in skipped.items()]

    def __str__(self) -> str:
        from .._text import table

        lines = [table(COLUMN_HEADERS, self.table_rows()), *self.skipped_lines(), self.summary()]
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 - IPython's protocol
        printer.text(str(self))

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{h}</th>" for h in COLUMN_HEADERS)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>"
            for row in self.table_rows()
        )
        skipped = "".join(f"<p>{escape(line)}</p>" for line in self.skipped_lines())
        return (
            f"<p><b>{escape(self.summary())}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{skipped}"
        )


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _none_to_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)
