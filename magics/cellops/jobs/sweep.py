"""A parameter grid run as jobs, grouped under one parent MLflow run and ranked by a metric."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from .._limits import tag_text
from ..config import load_settings
from ..errors import CellopsUsageError, DuplicateParameterError
from ..store.reaper import owner_tags
from .executors import Outcome, get_executor
from .params import inspect_parameters
from .run import JobRequest, JobResult, _open_store, prepare


@dataclass
class SweepResult:
    parent_run_id: str
    points: list[dict[str, Any]]
    outcomes: list[Outcome]
    rank_by: str | None = None
    ranked: list[int] = field(default_factory=list)  # indexes of points, best first

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for index in self.ranked:
            outcome, point = self.outcomes[index], self.points[index]
            row: dict[str, Any] = {"rank": len(rows) + 1, **point}
            if isinstance(outcome, JobResult):
                row["status"] = "ok" if outcome.ok else "failed"
                if self.rank_by:
                    row[self.rank_by] = outcome.metrics.get(self.rank_by)
                row["run"] = outcome.run_id
                if outcome.failure is not None:
                    row["error"] = outcome.failure.describe()
            else:
                row["status"], row["error"] = "error", f"{type(outcome).__name__}: {outcome}"
            rows.append(row)
        return rows


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def run_sweep(
    base: JobRequest,
    grid: dict[str, list[Any]],
    executor: str = "dask",
    rank_by: str | None = None,
    ascending: bool = False,
    progress: bool = True,
    **executor_options: Any,
) -> SweepResult:
    if not grid:
        raise CellopsUsageError("a sweep needs at least one parameter with values: -p NAME V1 V2")
    notebook = base.notebook.resolve()
    points = grid_points(grid)
    spec = inspect_parameters(notebook, base.kernel_name)
    requests = []
    for point in points:  # every point is checked before any kernel starts
        request = replace(base, notebook=notebook, parameters={**base.parameters, **point})
        request.parameters = prepare(request, spec)
        request.progress = False
        requests.append(request)
    settings = load_settings(notebook.parent)
    client, experiment_id = _open_store(settings, notebook)
    tags = {
        "cellops.kind": "sweep",
        "cellops.sweep.grid": tag_text(json.dumps(grid)),
        **owner_tags(),
    }
    parent = client.create_run(experiment_id, tags=tags, run_name=f"{notebook.stem} sweep")
    parent_id = parent.info.run_id
    for request in requests:
        request.parent_run_id = parent_id
    runner = get_executor(executor, **executor_options)
    try:
        outcomes = runner.run_all(requests, progress=progress)
    finally:
        runner.close()
    result = SweepResult(parent_id, points, outcomes, rank_by)
    result.ranked = _rank(outcomes, rank_by, ascending)
    _record(client, result)
    return result


def _rank(outcomes: list[Outcome], metric: str | None, ascending: bool) -> list[int]:
    def key(index: int) -> tuple[int, float]:
        outcome = outcomes[index]
        if not isinstance(outcome, JobResult) or not outcome.ok:
            return (2, 0.0)
        value = outcome.metrics.get(metric) if metric else None
        if value is None:
            return (1, 0.0)
        return (0, value if ascending else -value)

    return sorted(range(len(outcomes)), key=key)


def _record(client: Any, result: SweepResult) -> None:
    import time

    from mlflow.entities import Metric, Param

    ok = [o for o in result.outcomes if isinstance(o, JobResult) and o.ok]
    now = int(time.time() * 1000)
    metrics = [Metric("points", len(result.points), now, 0), Metric("succeeded", len(ok), now, 0)]
    params = []
    best = result.outcomes[result.ranked[0]] if result.ranked else None
    if result.rank_by and isinstance(best, JobResult) and result.rank_by in best.metrics:
        metrics.append(Metric(f"best_{result.rank_by}", best.metrics[result.rank_by], now, 0))
        params = [Param(f"best.{k}", str(v)) for k, v in result.points[result.ranked[0]].items()]
    client.log_batch(result.parent_run_id, metrics=metrics, params=params)
    client.log_text(result.parent_run_id, json.dumps(result.rows(), indent=1, default=str),
                    "cellops/sweep.json")  # fmt: skip
    status = "FINISHED" if len(ok) == len(result.points) else "FAILED"
    client.set_terminated(result.parent_run_id, status=status)


def parse_grid(tokens: list[str]) -> dict[str, list[str]]:
    """`-p lr 0.1 0.01 -p depth 3 5` as {"lr": ["0.1", "0.01"], "depth": ["3", "5"]}."""
    groups: list[list[str]] = []
    for token in tokens:
        if token in ("-p", "--parameter"):
            groups.append([])
            continue
        is_value = not token.startswith("-") or token[1:2].isdigit() or token[1:2] == "."
        if not groups or not is_value:
            raise CellopsUsageError(
                f"unexpected {token!r}: give the grid as -p NAME VALUE [VALUE ...], "
                "for example -p lr 0.1 0.01 -p depth 3 5"
            )
        groups[-1].append(token)
    grid: dict[str, list[str]] = {}
    for group in groups:
        if len(group) < 2:
            raise CellopsUsageError(
                f"-p {' '.join(group)}: give a name and at least one value, e.g. -p depth 3 5"
            )
        name, values = group[0], group[1:]
        if name in grid:
            raise DuplicateParameterError(
                f"parameter {name!r} is given twice: -p {name} {' '.join(grid[name])} and "
                f"-p {name} {' '.join(values)}; give all its values in one -p: "
                f"-p {name} {' '.join(grid[name] + values)}"
            )
        grid[name] = values
    return grid
