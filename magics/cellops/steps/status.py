"""Fresh, cached, stale, failed or never run: the state of each step of a notebook.

A step is stale when its code changed since its last run, when an input that no step
produces (a parameter, a function from a plain cell) has a different value now, or when a
step upstream of it re-ran with another result or is itself stale, failed or never run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.hashing import code_digest, value_digest
from ..errors import CellopsError
from .notebook import StepCell

FRESH, CACHED, STALE, FAILED, NEVER_RUN = "fresh", "cached", "stale", "failed", "never run"


@dataclass
class StepStatus:
    name: str
    state: str
    duration_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    why: str = ""

    def as_row(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "state": self.state,
            "last duration (s)": "" if self.duration_s is None else f"{self.duration_s:.2f}",
            "metrics": ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items()),
            "run id": self.run_id or "",
            "why": self.why,
        }


def step_statuses(
    states: dict[str, dict[str, Any]],
    cells: list[StepCell] | None = None,
    inputs_changed: Callable[[dict[str, Any]], list[str]] | None = None,
) -> list[StepStatus]:
    """Statuses in notebook order (steps only seen in the records come last)."""
    cells_by_name = {cell.name: cell for cell in cells or []}
    order = list(cells_by_name)
    order += sorted(
        (n for n in states if n not in cells_by_name), key=lambda n: states[n]["finished_at"]
    )
    result: dict[str, StepStatus] = {}
    for name in order:
        state = states.get(name)
        if state is None:
            result[name] = StepStatus(name, NEVER_RUN)
            continue
        status = StepStatus(
            name,
            state["state"],
            state.get("duration_s"),
            state.get("metrics") or {},
            state.get("run_id"),
        )
        if status.state in ("failed", "killed"):
            status.state, status.why = FAILED, f"last run {state['state']}"
        elif name in cells_by_name and code_digest(cells_by_name[name].source) != state.get(
            "code_digest"
        ):
            status.state, status.why = STALE, "code changed"
        elif inputs_changed is not None and (changed := inputs_changed(state)):
            status.state, status.why = STALE, f"input changed: {', '.join(changed)}"
        result[name] = status
    for name in order:  # notebook order is upstream first
        status, state = result[name], states.get(name)
        if state is None or status.state not in (FRESH, CACHED):
            continue
        for upstream, key in (state.get("upstream") or {}).items():
            up = result.get(upstream)
            if up is not None and up.state not in (FRESH, CACHED):
                status.state, status.why = STALE, f"upstream '{upstream}' is {up.state}"
                break
            if upstream in states and states[upstream].get("key") != key:
                status.state, status.why = STALE, f"upstream '{upstream}' re-ran"
                break
    return [result[name] for name in order]


def changed_inputs(
    states: dict[str, dict[str, Any]],
    values: Mapping[str, Any],
    root: Path | None = None,
    *,
    missing_changed: bool = True,
) -> Callable[[dict[str, Any]], list[str]]:
    """`inputs_changed` for `step_statuses`: the inputs of a step, among those no step produces
    (a step's outputs are judged through that step), whose value in `values` has another
    digest than the one recorded when the step ran.

    `values` is a kernel's namespace, where a missing name counts as changed, or the values a
    notebook file gives its parameters (`missing_changed=False`: the file knows no others).
    """
    produced = {name for state in states.values() for name in state.get("outputs") or ()}

    def inputs_changed(state: dict[str, Any]) -> list[str]:
        changed = []
        for name, digest in (state.get("inputs") or {}).items():
            if name in produced:
                continue
            if name not in values:
                if missing_changed:
                    changed.append(name)
            elif _digest(values[name], root) != digest:
                changed.append(name)
        return changed

    return inputs_changed


def _digest(value: Any, root: Path | None) -> str | None:
    """The digest the step engine records for an input (None if it cannot have one)."""
    try:
        return value_digest(value, root)
    except CellopsError:  # a value with no digest alike in every process: never "the same"
        return None


def format_table(statuses: list[StepStatus]) -> str:
    """A plain-text table for the terminal."""
    rows = [s.as_row() for s in statuses]
    if not rows:
        return "no steps yet: mark a cell with %%step NAME and run it"
    headers = list(rows[0])
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = (str(row[h]).ljust(w) for h, w in zip(headers, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
