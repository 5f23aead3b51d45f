"""The steps of a notebook as a front end shows them beside it (the JupyterLab panel).

Read from the notebook's cells and the local step state under `.cellops/steps/` only, never
from MLflow: a step's state file is written when its cell ends, while its MLflow records
follow on the tracker's thread, so a panel asking right after a cell finished already sees it.
The cells may be the saved file's or the live ones a browser holds (`merge_live_cells`), so a
cell edited but not saved shows stale at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .notebook import StepCell, read_cells
from .state import load_step_states
from .status import StepStatus, changed_inputs, step_statuses

_LOAD_LINE = re.compile(r"^\s*%(re)?load_ext\s+(\S+\s+)*cellops\b", re.M)
START_HINT = (
    "this notebook does not load cellops yet: add a first cell with `%load_ext cellops`, "
    "then mark a cell with `%%step NAME` (its first line) and run it"
)


@dataclass(frozen=True)
class PanelStep:
    status: StepStatus
    cell: StepCell | None  # None: a step only the records know (renamed or deleted cell)


@dataclass(frozen=True)
class NotebookSteps:
    loaded: bool  # a code cell runs `%load_ext cellops`
    steps: list[PanelStep]

    @property
    def hint(self) -> str | None:
        return None if self.loaded else START_HINT


def loads_cellops(raw_cells: list[dict[str, Any]]) -> bool:
    """Whether a code cell loads the extension (`%load_ext cellops`, or `%reload_ext`)."""
    return any(
        cell.get("cell_type") == "code" and _LOAD_LINE.search(_source(cell)) for cell in raw_cells
    )


def notebook_steps(
    settings: Settings, label: str, raw_cells: list[dict[str, Any]]
) -> NotebookSteps:
    """The statuses of notebook `label` (project-relative) for these cells, in notebook order,
    as `cellops steps` judges them (code, the parameters cell's literals, upstream steps)."""
    states = load_step_states(settings, label)
    cells, parameters = read_cells(raw_cells)
    judge = changed_inputs(states, parameters, settings.root, missing_changed=False)
    by_name = {cell.name: cell for cell in cells}
    statuses = step_statuses(states, cells, judge)
    rows = [PanelStep(status, by_name.get(status.name)) for status in statuses]
    return NotebookSteps(loads_cellops(raw_cells), rows)


def merge_live_cells(
    saved: list[dict[str, Any]], live: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The live cells (`{"id", "source"}`, in the browser's order), each completed from the
    saved cell with the same id: its type and tags (a `parameters` tag decides which cell
    holds the parameters). A live cell without a known id is a code cell without tags, unless
    it says otherwise (`cell_type`, `metadata`)."""
    saved_by_id = {cell.get("id"): cell for cell in saved if cell.get("id")}
    merged = []
    for cell in live:
        known = saved_by_id.get(cell.get("id")) or {}
        metadata = cell.get("metadata") or known.get("metadata") or {}
        merged.append(
            {
                "id": cell.get("id"),
                "cell_type": cell.get("cell_type") or known.get("cell_type") or "code",
                "source": cell.get("source", ""),
                "metadata": metadata,
            }
        )
    return merged


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)
