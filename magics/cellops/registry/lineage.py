"""`cellops lineage models:/NAME/VERSION`: one answer to an auditor's questions about a model
version: which data (each file by one hash, DVC's, the one `cellops lineage FILE` and `dvc`
show), which code (the steps that ran before it was registered, with their cell sources, and
the git commit), which parameters (every job parameter: given and defaulted), who registered
it and when, and every gate decision, promotion and rollback since (the audit trail).

The data stage answers for runs and files (`cellops.data.lineage`); this module adds the
registry's facts and composes the two.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..data.lineage import DataVersion, RunInfo, data_version, session_steps, when, with_cells
from ..errors import CellopsUsageError
from .audit import HistoryEntry, history
from .store import TAG_METRICS, RegistryStore, alias_version, require_model

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))/?$")
TAG_DATA = "cellops.data"


@dataclass
class ModelLineage:
    name: str
    version: str
    aliases: list[str]
    registered_by: str
    registered_ms: int
    source: RunInfo  # the run the version names (a step's, or the session's or job's)
    session: RunInfo  # the session or job run it belongs to (the source itself, if one)
    parameters: dict[str, str]  # every parameter of the session or job
    given: list[str]  # those given to the job (-p, papermill), the rest are the defaults
    data: list[DataVersion]
    steps: list[RunInfo]  # the steps that ran before it was registered, with their cells
    events: list[HistoryEntry] = field(default_factory=list)  # gate, promote, rollback
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def job(self) -> str:
        return self.session.job

    def lines(self) -> list[str]:
        """The answer as text: who and what, the data, the params, the steps, the decisions."""
        rows = self._head_lines() + self._data_lines() + self._param_lines()
        rows.append("steps:" + ("" if self.steps else " no step ran before it was registered"))
        for step in self.steps:
            rows += _step_lines(step)
        rows.append("registry:")
        rows.append(f"  {when(self.registered_ms)}  registered by {self.registered_by or '?'}")
        for event in self.events:
            rows += ["  " + line for line in event.lines()]
        return rows

    def _head_lines(self) -> list[str]:
        aliases = f", aliases: {', '.join('@' + a for a in self.aliases)}" if self.aliases else ""
        job = f", job {self.job}" if self.job else ""
        rows = [
            f"model {self.name} version {self.version} ({self.uri}){aliases}",
            f"registered by {self.registered_by or '?'} at {when(self.registered_ms)}{job}",
        ]
        if self.metrics:
            scores = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
            rows.append(f"metrics: {scores}")
        dirty = " with uncommitted changes" if self.source.dirty == "true" else ""
        rows += [
            "produced by:",
            self.source.describe(),
            f"  code:   git {self.source.commit[:12] or '?'}{dirty}",
        ]
        if self.session.run_id != self.source.run_id:
            rows.append(f"  in {self.session.describe()}")
        return rows

    def _data_lines(self) -> list[str]:
        rows = ["data:" + ("" if self.data else " no data file was recorded")]
        for found in self.data:
            rows.append(f"  {found.label}  {found.md5}")
            rows.append(f"    {found.dvc_status}; {found.status}")
            rows += [f"    written by {run.describe()}" for run in found.produced_by]
            if found.recorded_as:
                rows.append(f"    (registered as {found.recorded_as}, the step cache's digest)")
        return rows

    def _param_lines(self) -> list[str]:
        if not self.parameters:
            return ["params: none given to the session (each step's are listed below)"]
        rows = ["params:"]
        for key, value in sorted(self.parameters.items()):
            origin = "given" if key in self.given else "default"
            rows.append(f"  {key} = {value}  ({origin})")
        return rows

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "model",
            "model": self.name,
            "version": self.version,
            "uri": self.uri,
            "aliases": self.aliases,
            "registered_by": self.registered_by,
            "registered_at": when(self.registered_ms),
            "job": self.job,
            "metrics": self.metrics,
            "source": self.source.to_dict(),
            "session": self.session.to_dict(),
            "parameters": {
                key: {"value": value, "given": key in self.given}
                for key, value in sorted(self.parameters.items())
            },
            "data": [found.to_dict() for found in self.data],
            "steps": [step.to_dict() for step in self.steps],
            "events": [_event_dict(event) for event in self.events],
        }


def _step_lines(step: RunInfo) -> list[str]:
    rows = [f"  {step.describe()}"]
    if step.cached_from:
        rows.append(f"    restored from the cache of run {step.cached_from}")
    params = ", ".join(f"{k}={v}" for k, v in sorted(step.params.items()))
    rows.append(f"    params: {params or '-'}")
    for label, md5 in sorted(step.files_in.items()):
        rows.append(f"    reads:  {label} {md5}")
    for label, md5 in sorted(step.files_out.items()):
        rows.append(f"    writes: {label} {md5}")
    if step.cell is None:
        rows.append("    cell:   (its source is not in the store)")
    else:
        rows.append(f"    cell {step.code_digest[:12]}:")
        rows += [f"      | {line}" for line in step.cell.rstrip("\n").splitlines()]
    return rows


def _event_dict(event: HistoryEntry) -> dict[str, Any]:
    return {
        "at": event.when,
        "event": event.kind,
        "version": event.version,
        "decision": event.decision,
        "by": event.user,
        "job": event.job,
        "run": event.run,
        "reason": event.reason,
        "champion_before": event.champion_before,
        "champion_after": event.champion_after,
        "first_model": event.first_model,
        "conditions": event.conditions,
    }


def parse_target(target: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of `models:/NAME/VERSION` or `models:/NAME@ALIAS`."""
    match = _URI.match(target.strip())
    if not match:
        raise CellopsUsageError(
            f"{target!r} is not a model cellops can read: give models:/NAME/VERSION or "
            "models:/NAME@ALIAS, for example models:/fraud/4 or models:/fraud@champion"
        )
    return match["name"], match["version"], match["alias"]


def model_lineage(store: RegistryStore, target: str) -> ModelLineage:
    """Everything recorded about the model version `target` names (see the module's doc)."""
    from .evaluation import resolve_version

    name, version, alias = parse_target(target)
    model = require_model(store, name)
    if alias is not None:
        version = store.call(lambda client: alias_version(client, name, alias))
        if version is None:
            raise CellopsUsageError(
                f"model {name!r} has no @{alias}; its aliases: {_aliases(model)}"
            )
    version = resolve_version(store, name, version)
    mv = store.call(lambda client: client.get_model_version(name, version))
    if not mv.run_id:
        raise CellopsUsageError(f"{target} names no run that produced it")
    found = store.call(lambda client: _runs(client, mv))
    events = [e for e in history(store, name, limit=10_000) if _about(e, str(mv.version))]
    return _compose(store, model, mv, *found, events)


def _aliases(model: Any) -> str:
    names = sorted(dict(getattr(model, "aliases", {}) or {}))
    return ", ".join("@" + n for n in names) or "none"


def _runs(client: Any, mv: Any) -> tuple[RunInfo, RunInfo, list[RunInfo], dict[str, Any]]:
    """The version's run, its session (or job) run, the steps before it, the job manifest."""
    from ..data.lineage import run_info

    try:
        source = run_info(client.get_run(mv.run_id))
    except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST
        raise CellopsUsageError(
            f"model {mv.name} version {mv.version} names run {mv.run_id}, which is not in the "
            f"tracking store ({str(exc).splitlines()[0][:200]})"
        ) from None
    session = source
    if source.kind == "step" and source.parent:
        session = run_info(client.get_run(source.parent))
    steps = session_steps(client, session, until_ms=mv.creation_timestamp)
    if source.kind == "step" and all(s.run_id != source.run_id for s in steps):
        steps.append(source)
    return source, session, with_cells(client, steps), _manifest(client, session)


def _manifest(client: Any, session: RunInfo) -> dict[str, Any]:
    """The job's reproducibility manifest (its parameters and their defaults), if a job."""
    import tempfile
    from pathlib import Path

    from .._process import environment
    from ..jobs.manifest import MANIFEST_ARTIFACT

    if session.kind != "job":
        return {}
    with tempfile.TemporaryDirectory(prefix="cellops-lineage-") as folder:
        try:
            with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                path = client.download_artifacts(session.run_id, MANIFEST_ARTIFACT, folder)
            return json.loads(Path(path).read_text())
        except Exception:  # the job is still running, or it is a job of an older cellops
            return {}


def _about(event: HistoryEntry, version: str) -> bool:
    """An event that judged this version, made it champion, or replaced it as champion."""
    return event.kind != "register" and version in (
        event.version,
        event.champion_before if event.champion_before != event.champion_after else "",
    )


def _compose(store, model, mv, source, session, steps, manifest, events) -> ModelLineage:
    tags = mv.tags or {}
    # the session run's params are those given (Papermill's, a job's -p); a job's manifest
    # adds the notebook's defaults for the rest
    parameters = {k: str(v) for k, v in (manifest.get("defaults") or {}).items()}
    given = {**session.params, **{k: str(v) for k, v in (manifest.get("parameters") or {}).items()}}
    parameters |= given
    data = _data_files(tags, steps)
    versions = [
        store.call(lambda c, k=k, v=v: data_version(store.settings, c, k, v))
        for k, v in data.items()
    ]
    aliases = sorted(
        a for a, v in (getattr(model, "aliases", {}) or {}).items() if str(v) == str(mv.version)
    )
    return ModelLineage(
        name=mv.name,
        version=str(mv.version),
        aliases=aliases,
        registered_by=tags.get("cellops.user", mv.user_id or ""),
        registered_ms=mv.creation_timestamp or 0,
        source=source,
        session=session,
        parameters=parameters,
        given=sorted(given),
        data=versions,
        steps=steps,
        events=events,
        metrics=_json(tags.get(TAG_METRICS)),
    )


def _data_files(tags: dict[str, str], steps: list[RunInfo]) -> dict[str, str]:
    """{path: hash} of the version's data: what the registry recorded, and what its steps
    read (their runs hold DVC's hash; a version of an older cellops holds another)."""
    files = _json(tags.get(TAG_DATA))
    for step in steps:
        files.update(step.files_in)
    return dict(sorted(files.items()))


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
