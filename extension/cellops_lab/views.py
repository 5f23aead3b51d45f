"""The JSON the panel reads, built from what the cellops core returns (no I/O here).

Field names and shapes are the API contract with the front end (see the README's "The server
API"); every time is ISO 8601 with the server's offset.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

_SIDES = re.compile(r"^\s*(\S+)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_STATE = {"never run": "never_run"}


def iso_ms(ms: int | float | None) -> str | None:
    if not ms:
        return None
    return iso(datetime.datetime.fromtimestamp(ms / 1000))


def iso(moment: datetime.datetime | float | None) -> str | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime.datetime):
        moment = datetime.datetime.fromtimestamp(moment)
    return moment.astimezone().isoformat(timespec="seconds")


# -- steps --------------------------------------------------------------------------------------


def step_row(row: Any, links: Any) -> dict[str, Any]:
    """One `steps.panel.PanelStep`; `links` is the project's `UiLinks`."""
    status, cell = row.status, row.cell
    run_url = links.run(status.run_id).url if status.run_id else None
    return {
        "name": status.name,
        "cell": cell.index if cell is not None else None,
        "cell_id": cell.cell_id if cell is not None else None,
        "state": _STATE.get(status.state, status.state),
        "reason": status.why or None,
        "duration_s": status.duration_s,
        "metrics": dict(status.metrics),
        "run_id": status.run_id,
        "run_url": run_url,
    }


# -- the registry ------------------------------------------------------------------------------


def model(info: Any, links: Any, rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `registry.catalog.ModelInfo` with its versions, newest first; `rollout` is what
    `serving.status.rollout_status` says (None: no rollout was ever started)."""
    aliases = {alias: v.version for v in info.versions for alias in v.aliases}
    return {
        "name": info.name,
        "aliases": aliases,
        "url": links.model(info.name).url,
        "versions": [version(info.name, v, links) for v in info.versions],
        "rollout": rollout,
    }


def version(name: str, info: Any, links: Any) -> dict[str, Any]:
    return {
        "version": info.version,
        "run_id": info.run_id or None,
        "created": iso_ms(info.created_ms),
        "aliases": list(info.aliases),
        "metrics": dict(info.metrics),
        "url": links.model_version(name, info.version).url,
        "gate": last_gate(info.last_gate),
    }


def last_gate(gist: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gate's last verdict on a version, from the gist its tag keeps (`audit.summary`):
    each condition's two sides as the gate printed them, read back as numbers."""
    if not gist or "conditions" not in gist:
        return None
    conditions = []
    for item in gist.get("conditions") or []:
        left, right = _sides(str(item.get("sides", "")))
        status = item.get("status")
        conditions.append(
            {
                "text": item.get("condition", ""),
                "left": left,
                "right": right,
                "passed": None if status == "skipped" else status == "pass",
                "sides": item.get("sides", ""),
            }
        )
    return {
        "passed": bool(gist.get("passed")),
        "decision": gist.get("decision"),
        "at": gist.get("at"),
        "conditions": conditions,
    }


def _sides(text: str) -> tuple[float | None, float | None]:
    match = _SIDES.match(text)
    if not match:
        return None, None
    return _number(match[1]), _number(match[3])


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def gate_conditions(result: Any) -> list[dict[str, Any]]:
    """The conditions of a `registry.evaluation.GateResult`, each with both sides' values
    (of its first comparison; `sides` holds every comparison as the CLI prints them)."""
    found = []
    for condition in result.conditions if result is not None else []:
        first = condition.comparisons[0] if condition.comparisons else None
        found.append(
            {
                "text": condition.text,
                "left": first.left_value if first is not None else None,
                "right": first.right_value if first is not None else None,
                "passed": condition.passed,
                "sides": condition.describe(),
            }
        )
    return found


def promotion(outcome: Any) -> dict[str, Any]:
    """A `registry.promote.PromotionOutcome` that moved (or kept) `@champion`."""
    return {
        "model": outcome.name,
        "alias": "champion",
        "version": outcome.champion_after,
        "previous": outcome.champion_before,
        "decision": outcome.decision,
        "message": outcome.headline(),
        "conditions": gate_conditions(outcome.gate),
    }


# -- drift, runs, parameters ------------------------------------------------------------------


def check(record: Any, links: Any) -> dict[str, Any]:
    """A `monitoring.history.CheckRecord`."""
    return {
        "run_id": record.run_id,
        "time": iso(record.time),
        "version": record.version,
        "share": record.share,
        "dataset_drift": record.dataset_drift,
        "drifted_columns": list(record.drifted_columns),
        "streak": record.streak,
        "url": links.run(record.run_id).url,
    }


def run(found: Any, links: Any) -> dict[str, Any]:
    info, tags = found.info, found.data.tags
    return {
        "run_id": info.run_id,
        "name": info.run_name,
        "status": info.status,
        "kind": tags.get("cellops.kind"),
        "start_time": iso_ms(info.start_time),
        "url": links.run(info.run_id, info.experiment_id).url,
    }


def parameter(found: Any) -> dict[str, Any]:
    """A `jobs.params.Parameter`; a default JSON cannot hold is given as its source."""
    value = found.default
    if not isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
        value = found.default_source
    return {
        "name": found.name,
        "value": value,
        "type": found.type_name,
        "source": found.default_source,
        "help": found.help,
    }
