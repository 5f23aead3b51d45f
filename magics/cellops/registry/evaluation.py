"""Run the gate: score the challenger and the champion on one holdout, check every condition."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import CellopsUsageError
from .gate import ConditionResult, Gate, _fmt
from .scoring import (
    Holdout,
    LoadedVersion,
    Task,
    load_holdout,
    load_version,
    score_versions,
    task_of,
)
from .spec import ModelSettings, model_settings
from .store import (
    CHALLENGER,
    CHAMPION,
    RegistryStore,
    alias_version,
    is_missing,
    project_path,
    require_model,
)


@dataclass
class GateResult:
    model: str
    challenger: str
    champion: str | None
    conditions: list[ConditionResult]
    metrics: dict[str, dict[str, float] | None] = field(default_factory=dict)
    holdout: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def first_model(self) -> bool:
        return self.champion is None

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.conditions)

    @property
    def skipped(self) -> list[ConditionResult]:
        return [c for c in self.conditions if c.passed is None]

    def verdict(self) -> str:
        word = "passed" if self.passed else "FAILED"
        failed = [c.text for c in self.conditions if c.passed is False]
        text = f"gate {word} for {self.model} v{self.challenger}"
        if self.first_model:
            text += (
                f" (first model of {self.model}: no champion, so judged on the absolute "
                f"conditions only; {len(self.skipped)} relative condition(s) skipped)"
            )
        else:
            text += f" against champion v{self.champion}"
        if failed:
            text += f"; failing: {'; '.join(failed)}"
        return text

    def lines(self) -> list[str]:
        width = max([len(c.text) for c in self.conditions] + [9])
        rows = [self.verdict()]
        for c in self.conditions:
            rows.append(f"  {c.status:<7} {c.text:<{width}}  {c.describe()}")
        mine, theirs = self.metrics.get("challenger") or {}, self.metrics.get("champion")
        names = sorted(set(mine) | set(theirs or {}))
        if names:
            header = f"  {'metric':<16}{'v' + self.challenger:>12}"
            if theirs is not None:
                header += f"{'champion v' + str(self.champion):>16}"
            rows.append(header)
            for name in names:
                row = f"  {name:<16}{_fmt(mine.get(name)):>12}"
                if theirs is not None:
                    row += f"{_fmt(theirs.get(name)):>16}"
                rows.append(row)
        if self.holdout:
            source, count = self.holdout.get("source"), self.holdout.get("rows")
            rows.append(f"  holdout: {source} ({count} rows)")
        return rows

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "challenger": self.challenger,
            "champion": self.champion,
            "passed": self.passed,
            "first_model": self.first_model,
            "conditions": [c.to_dict() for c in self.conditions],
            "metrics": self.metrics,
            "holdout": self.holdout,
            "seconds": round(self.seconds, 3),
        }

    def compact(self) -> list[dict[str, Any]]:
        """The conditions with both sides, short enough for a tag."""
        return [
            {"condition": c.text, "status": c.status, "sides": c.describe()[:300]}
            for c in self.conditions
        ]


def resolve_version(store: RegistryStore, name: str, version: str | int | None) -> str:
    """`version` checked to exist, or the version the `challenger` alias points at."""
    if version is None:
        found = store.call(lambda client: alias_version(client, name, CHALLENGER))
        if found is None:
            raise CellopsUsageError(
                f"{name} has no @{CHALLENGER}: register a model first, or pass --version V"
            )
        return found

    def read(client: Any) -> tuple[str | None, list[int]]:
        try:
            return str(client.get_model_version(name, str(version)).version), []
        except Exception as exc:
            if not is_missing(exc):
                raise
        return None, sorted(
            (int(v.version) for v in client.search_model_versions(f"name = '{name}'")),
            reverse=True,
        )

    found, versions = store.call(read)
    if found is not None:
        return found
    raise CellopsUsageError(
        f"{name} has no version {version}; its versions: {', '.join(map(str, versions)) or 'none'}"
    )


def gate_conditions(config: ModelSettings, gate: list[str] | None) -> Gate:
    conditions = list(gate) if gate else config.gate
    if not conditions:
        raise CellopsUsageError(
            f"no gate for {config.name}: declare one in pyproject.toml, for example\n"
            f"  [tool.cellops.models.{config.name}]\n"
            '  gate = ["f1 >= 0.9", "recall >= champion.recall"]\n'
            "or pass conditions with --gate (gate=[...] in Python)"
        )
    where = "" if gate else f"[tool.cellops.models.{config.name}] in pyproject.toml"
    return Gate(conditions, where=where)


def _common_task(loaded: list[LoadedVersion], data: Holdout) -> Task:
    """The challenger's task; a champion of the other kind cannot be compared with it."""
    task = task_of(loaded[0], data)
    for other in loaded[1:]:
        theirs = task_of(other, data)
        if theirs.kind != task.kind:
            raise CellopsUsageError(
                f"{loaded[0].label} is {task.reason}, but the champion {other.label} is "
                f"{theirs.reason}: they cannot be judged by one gate. Register the {task.noun} "
                f"under another model name, or promote with --force --reason TEXT"
            )
    return task


def evaluate_gate(
    store: RegistryStore,
    name: str,
    version: str | int | None = None,
    *,
    gate: list[str] | None = None,
    holdout: Any = None,
    label: str | None = None,
    latency_samples: int | None = None,
    champion: str | None | type[Ellipsis] = ...,
) -> GateResult:
    """Score the challenger (and the champion, if any) on the holdout and check the gate.

    `champion` is the champion version observed by the caller (`None`: there is none); by
    default it is read here.
    """
    started = time.perf_counter()
    config = model_settings(store.settings, name)
    checked = gate_conditions(config, gate)  # a syntax error is reported before any work
    require_model(store, name)
    challenger = resolve_version(store, name, version)
    if champion is ...:
        champion = store.call(lambda client: alias_version(client, name, CHAMPION))
    source = holdout if holdout is not None else config.holdout
    if source is None:
        raise CellopsUsageError(
            f"no holdout to score {name} on: pass --holdout PATH (holdout=... in Python), or set "
            f'holdout = "data/holdout.parquet" in [tool.cellops.models.{name}]'
        )
    if isinstance(source, str) and holdout is None:
        source = project_path(store.settings, source)  # paths in pyproject.toml: from the root
    data = load_holdout(source, label or config.label, name)
    wanted = [challenger] + ([champion] if champion is not None else [])
    loaded = [
        store.call(lambda client, v=v: load_version(client, store.uri, name, v)) for v in wanted
    ]
    task = _common_task(loaded, data)
    checked.check_names(task.metrics, f"{loaded[0].label} is {task.reason}")
    scored = score_versions(loaded, data, latency_samples or config.latency_samples, task)
    theirs = scored[1] if champion is not None else None
    return GateResult(
        model=name,
        challenger=challenger,
        champion=champion,
        conditions=checked.evaluate(scored[0], theirs),
        metrics={"challenger": scored[0], "champion": theirs},
        holdout={"source": data.source, "rows": data.rows, "digest": data.digest},
        seconds=time.perf_counter() - started,
    )
