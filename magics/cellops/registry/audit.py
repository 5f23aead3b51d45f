"""The registry's audit trail: every gate decision, promotion and rollback, written down.

Each event is one MLflow run in the experiment `cellops-registry-events` (tags: who, when,
which job and run, the model, the versions before and after, the decision and reason; metrics:
both models' scores; artifact `gate.json`: every condition with both sides), and its gist is
also kept on the model version's tags (`cellops.gate.last`, `cellops.promotion`,
`cellops.rollback`), so the MLflow UI shows both. `history` reads the events back, with the
versions' registrations.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .._limits import MAX_TAG, tag_text
from .store import EVENTS_EXPERIMENT, TAG_LAST_GATE, RegistryStore


@dataclass
class Event:
    kind: str  # gate | promote | rollback
    model: str
    version: str  # the version judged (promote, gate) or put back (rollback)
    decision: str  # promoted | forced | refused | conflict | unchanged | rolled back | ...
    reason: str
    champion_before: str | None
    champion_after: str | None
    context: dict[str, str]
    gate: Any = None  # a GateResult
    when_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    run_id: str = ""

    def tags(self) -> dict[str, str]:
        tags = {
            "cellops.kind": "registry-event",
            "cellops.event": self.kind,
            "cellops.model": self.model,
            "cellops.version": self.version,
            "cellops.decision": self.decision,
            "cellops.reason": tag_text(self.reason),
            "cellops.champion.before": self.champion_before or "",
            "cellops.champion.after": self.champion_after or "",
            "cellops.user": self.context.get("user", ""),
            "mlflow.user": self.context.get("user", ""),
            "cellops.job": self.context.get("job", ""),
            "cellops.source_run": self.context.get("run", ""),
            "cellops.notebook": self.context.get("notebook", ""),
        }
        if self.gate is not None:
            tags["cellops.gate.passed"] = str(self.gate.passed).lower()
            tags["cellops.gate.first_model"] = str(self.gate.first_model).lower()
            tags["cellops.gate"] = _json_within(self.gate.compact(), MAX_TAG)
            tags["cellops.holdout"] = str(self.gate.holdout.get("source", ""))[:500]
        return tags

    def summary(self) -> dict[str, Any]:
        """The gist kept on the version's tags."""
        gist = {
            "event": self.kind,
            "decision": self.decision,
            "at": _iso(self.when_ms),
            "by": self.context.get("user", ""),
            "job": self.context.get("job", ""),
            "run": self.context.get("run", ""),
            "reason": self.reason[:1000],
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "event_run": self.run_id,
        }
        if self.gate is not None:
            gist["passed"] = self.gate.passed
            gist["first_model"] = self.gate.first_model
            gist["conditions"] = self.gate.compact()
        return gist


def _json_within(value: Any, limit: int) -> str:
    text = json.dumps(value)
    while len(text) > limit and isinstance(value, list) and value:
        value = value[:-1]
        text = json.dumps([*value, {"condition": "...", "status": "see gate.json"}])
    return text[:limit]


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def events_experiment(client: Any, store: RegistryStore) -> str:
    from ..store.session import ensure_experiment

    return ensure_experiment(client, store.settings, EVENTS_EXPERIMENT)


def record(store: RegistryStore, event: Event, version_tags: dict[str, str] | None = None) -> str:
    """Write `event` as a run of the events experiment, and its gist on the version's tags."""
    from mlflow.entities import Metric

    def create(client: Any) -> str:
        experiment_id = events_experiment(client, store)
        name = f"{event.kind} {event.model} v{event.version}: {event.decision}"
        run = client.create_run(
            experiment_id, start_time=event.when_ms, tags=event.tags(), run_name=name
        )
        return run.info.run_id

    def complete(client: Any) -> None:  # repeatable, unlike create: a retry is harmless
        run_id = event.run_id
        metrics = []
        if event.gate is not None:
            for side, values in event.gate.metrics.items():
                for key, value in (values or {}).items():
                    if value == value:  # not nan
                        metrics.append(Metric(f"{side}.{key}", float(value), event.when_ms, 0))
            if metrics:
                client.log_batch(run_id, metrics=metrics)
            client.log_text(run_id, json.dumps(event.gate.to_dict(), indent=1), "gate.json")
        client.set_terminated(run_id, "FINISHED", end_time=int(time.time() * 1000))

    event.run_id = store.call(create)
    store.call(complete)
    tags = dict(version_tags or {})
    if event.gate is not None:
        tags[TAG_LAST_GATE] = tag_text(json.dumps(event.summary()))

    def write_tags(client: Any) -> None:
        for key, value in tags.items():
            client.set_model_version_tag(event.model, event.version, key, value)

    if tags:
        store.call(write_tags)
    return event.run_id


@dataclass
class HistoryEntry:
    when_ms: int
    kind: str  # register | gate | promote | rollback
    version: str
    decision: str
    user: str
    job: str
    run: str
    reason: str = ""
    champion_before: str = ""
    champion_after: str = ""
    conditions: list[dict[str, str]] = field(default_factory=list)
    first_model: bool = False

    @property
    def when(self) -> str:
        return _iso(self.when_ms)

    def lines(self) -> list[str]:
        head = f"{self.when}  {self.kind:<8} v{self.version:<4} {self.decision}"
        if self.kind in ("promote", "rollback") and self.champion_before != self.champion_after:
            head += (
                f"  (champion {('v' + self.champion_before) if self.champion_before else 'none'}"
                f" -> v{self.champion_after})"
            )
        head += f"  by {self.user or '?'}"
        if self.job:
            head += f"  job {self.job}"
        if self.run:
            head += f"  run {self.run}"
        rows = [head]
        if self.reason:
            rows.append(f"    reason: {self.reason}")
        if self.first_model:
            rows.append("    first model: absolute conditions only")
        for c in self.conditions:
            status, text = c.get("status", ""), c.get("condition", "")
            rows.append(f"    {status:<7} {text}  {c.get('sides', '')}")
        return rows


def history(store: RegistryStore, name: str, limit: int = 100) -> list[HistoryEntry]:
    """Registrations and events of model `name`, oldest first."""
    from .store import require_model

    require_model(store, name)

    def read(client: Any) -> list[HistoryEntry]:
        entries = []
        for mv in client.search_model_versions(f"name = '{name}'"):
            tags = mv.tags or {}
            entries.append(
                HistoryEntry(
                    mv.creation_timestamp,
                    "register",
                    str(mv.version),
                    "registered",
                    tags.get("cellops.user", mv.user_id or ""),
                    tags.get("cellops.job", ""),
                    mv.run_id or "",
                )  # fmt: skip
            )
        experiment = client.get_experiment_by_name(EVENTS_EXPERIMENT)
        if experiment is not None:
            runs = client.search_runs(
                [experiment.experiment_id],
                f"tags.`cellops.model` = '{name}'",
                order_by=["attributes.start_time DESC"],
                max_results=limit,
            )
            for run in runs:
                t = run.data.tags
                try:
                    conditions = json.loads(t.get("cellops.gate", "[]"))
                except ValueError:
                    conditions = []
                entries.append(
                    HistoryEntry(
                        run.info.start_time,
                        t.get("cellops.event", ""),
                        t.get("cellops.version", ""),
                        t.get("cellops.decision", ""),
                        t.get("cellops.user", ""),
                        t.get("cellops.job", ""),
                        t.get("cellops.source_run", ""),
                        t.get("cellops.reason", ""),
                        t.get("cellops.champion.before", ""),
                        t.get("cellops.champion.after", ""),
                        conditions,
                        t.get("cellops.gate.first_model") == "true",
                    )  # fmt: skip
                )
        entries.sort(key=lambda e: e.when_ms)
        return entries[-limit:]

    return store.call(read)


def history_links(store: RegistryStore, name: str) -> list[str]:
    """Where model `name` and its events are in MLflow's UI: the links, or the command that
    opens the model (the events' link needs a UI to point at)."""
    from ..store.links import UiLinks

    links = UiLinks(store.settings)
    lines = [f"in MLflow: {links.model(name).sentence()}"]
    if links.base:
        found = store.call(lambda client: client.get_experiment_by_name(EVENTS_EXPERIMENT))
        if found is not None:
            search = f"tags.`cellops.model` = '{name}'"
            page = links.experiment_runs(found.experiment_id, "its events", search)
            lines.append(f"its events: {page.url}")
    return lines


def format_history(name: str, entries: list[HistoryEntry]) -> str:
    if not entries:
        return f"{name}: nothing recorded yet"
    return "\n".join(line for entry in entries for line in entry.lines())
