"""`cellops lineage TARGET`: what produced a file version or a step run, and which runs used it.
Answered from MLflow alone (tags `cellops.files_in` / `cellops.files_out` hold {path: DVC hash}
on every run that read or wrote a file), so it works on any store.

A model version's lineage needs the registry's facts as well (who registered and promoted it):
the registry stage composes it (`cellops.registry.lineage`) from the pieces here: the runs
(`RunInfo`), a session's steps with their cell sources, and the data versions they read, each
named by one hash, DVC's (`data_version`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import CellopsUsageError
from . import dvc

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
CELL_ARTIFACT = "cellops/cell.py"
MAX_STEPS = 1000


@dataclass
class RunInfo:
    run_id: str
    name: str
    kind: str  # step | session | job
    state: str  # executed | cached | (empty for a session or job run)
    notebook: str
    started_ms: int
    commit: str
    dirty: str
    code_digest: str
    cached_from: str
    params: dict[str, str]
    files_in: dict[str, str]
    files_out: dict[str, str]
    user: str = ""
    job: str = ""
    parent: str = ""  # the session or job run of a step
    cell: str | None = None  # the step's cell source, when it was read (`with_cells`)

    def describe(self) -> str:
        """One line: what ran, where, which run, when."""
        kind = self.kind or "run"
        what = f"step '{self.name}'" if self.kind == "step" else f"{kind} '{self.name}'"
        state = f" ({self.state})" if self.state else ""
        where = f" of {self.notebook}" if self.notebook else ""
        return f"{what}{where}, run {self.run_id}{state}, {when(self.started_ms)}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["started"] = when(self.started_ms)
        return data


def when(ms: int) -> str:
    """A timestamp in milliseconds as local time, for people and tools alike (ISO 8601)."""
    if not ms:
        return ""
    stamp = datetime.datetime.fromtimestamp(ms / 1000).astimezone()
    return stamp.isoformat(timespec="seconds")


@dataclass
class FileLineage:
    label: str
    md5: str | None  # the version asked about (on disk, else DVC's record)
    recorded: dvc.Recorded | None
    on_disk: str | None
    produced_by: list[RunInfo] = field(default_factory=list)  # runs that wrote it
    restored_by: list[RunInfo] = field(default_factory=list)  # cache hits that put it back
    used_by: list[RunInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "file",
            "path": self.label,
            "md5": self.md5,
            "on_disk": self.on_disk,
            "dvc": _recorded_dict(self.recorded),
            "produced_by": [r.to_dict() for r in self.produced_by],
            "restored_by": [r.to_dict() for r in self.restored_by],
            "used_by": [r.to_dict() for r in self.used_by],
        }


@dataclass
class RunLineage:
    run: RunInfo
    model: str | None = None
    inputs: dict[str, list[RunInfo]] = field(default_factory=dict)  # path -> its producers
    outputs: dict[str, list[RunInfo]] = field(default_factory=dict)  # path -> runs using it

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "run",
            "run": self.run.to_dict(),
            "inputs": {k: [r.to_dict() for r in v] for k, v in self.inputs.items()},
            "outputs": {k: [r.to_dict() for r in v] for k, v in self.outputs.items()},
        }


@dataclass
class DataVersion:
    """One version of a data file a model was trained on, named by DVC's hash."""

    label: str
    md5: str  # DVC's hash of the version that was read
    on_disk: str | None  # DVC's hash of the file now (None: it is gone)
    recorded: dvc.Recorded | None  # what DVC records for the path now
    produced_by: list[RunInfo] = field(default_factory=list)  # runs that wrote this version
    recorded_as: str = ""  # the hash the registry held, when it was not DVC's (older cellops)

    @property
    def status(self) -> str:
        if self.on_disk is None:
            return "the file is no longer in the project"
        if self.on_disk == self.md5:
            return "the file on disk is this version"
        return f"the file on disk has changed since (now {self.on_disk})"

    @property
    def dvc_status(self) -> str:
        if self.recorded is None:
            return "not tracked by DVC"
        if self.recorded.md5 == self.md5:
            return f"DVC: {self.recorded.pointer} records this version"
        return f"DVC: {self.recorded.pointer} records another version ({self.recorded.md5})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.label,
            "md5": self.md5,
            "on_disk": self.on_disk,
            "status": self.status,
            "dvc_status": self.dvc_status,
            "dvc": _recorded_dict(self.recorded),
            "produced_by": [r.to_dict() for r in self.produced_by],
            **({"recorded_as": self.recorded_as} if self.recorded_as else {}),
        }


def _recorded_dict(recorded: dvc.Recorded | None) -> dict[str, Any] | None:
    return dataclasses.asdict(recorded) if recorded is not None else None


def _json_tag(tags: dict[str, str], key: str) -> dict[str, str]:
    try:
        value = json.loads(tags.get(key) or "{}")
    except ValueError:  # a tag cut at MLflow's length limit
        return {}
    return value if isinstance(value, dict) else {}


def run_info(run: Any) -> RunInfo:
    """The lineage facts of an MLflow run."""
    tags = run.data.tags
    return RunInfo(
        run_id=run.info.run_id,
        name=tags.get("cellops.step") or run.info.run_name or "",
        kind=tags.get("cellops.kind", ""),
        state=tags.get("cellops.state", ""),
        notebook=tags.get("cellops.notebook", ""),
        started_ms=run.info.start_time or 0,
        commit=tags.get("mlflow.source.git.commit", ""),
        dirty=tags.get("cellops.git.dirty", ""),
        code_digest=tags.get("cellops.code_digest", ""),
        cached_from=tags.get("cellops.cached_from", ""),
        params=dict(run.data.params),
        files_in=_json_tag(tags, "cellops.files_in"),
        files_out=_json_tag(tags, "cellops.files_out"),
        user=tags.get("mlflow.user", ""),
        job=tags.get("cellops.job", ""),
        parent=tags.get("mlflow.parentRunId", ""),
    )


def _search(client: Any, tag: str, md5: str) -> list[RunInfo]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    runs = client.search_runs(
        experiments,
        f"tags.`{tag}` LIKE '%\"{md5}\"%'",
        max_results=1000,
        order_by=["attributes.start_time ASC"],
    )
    infos = [run_info(run) for run in runs]
    key = "files_in" if tag.endswith("_in") else "files_out"
    return [info for info in infos if md5 in getattr(info, key).values()]


def lineage(settings: Settings, target: str, client: Any = None) -> FileLineage | RunLineage:
    """The lineage of a project file (or folder) or of a run id. A model version's is the
    registry's to answer (`cellops.registry.lineage.model_lineage`)."""
    from ..store.client import connect_checked

    if target.startswith("models:/"):
        raise CellopsUsageError(
            f"{target} is a model: its lineage is read with the registry, "
            "cellops.registry.lineage.model_lineage(store, target), or `cellops lineage TARGET`"
        )
    client = client or connect_checked(settings)
    path = Path(target)
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    label = (
        path.relative_to(settings.root).as_posix() if path.is_relative_to(settings.root) else None
    )
    recorded = dvc.recorded_output(settings.root, label) if label else None
    if path.exists() or recorded is not None:
        return file_lineage(settings, client, label or path.as_posix(), path, recorded)
    if _RUN_ID.match(target):
        return run_lineage(client, target)
    raise CellopsUsageError(
        f"{target} is neither a file of the project, nor a run id, nor a model "
        "(models:/NAME/VERSION or models:/NAME@ALIAS)"
    )


def file_lineage(
    settings: Settings, client: Any, label: str, path: Path, recorded: dvc.Recorded | None
) -> FileLineage:
    on_disk = _on_disk(settings, path)
    md5 = on_disk or (recorded.md5 if recorded else None)
    result = FileLineage(label, md5, recorded, on_disk)
    if md5:
        writers = _search(client, "cellops.files_out", md5)
        result.produced_by = [r for r in writers if r.state != "cached"]
        result.restored_by = [r for r in writers if r.state == "cached"]
        result.used_by = _search(client, "cellops.files_in", md5)
    return result


def _on_disk(settings: Settings, path: Path) -> str | None:
    """DVC's hash of `path` now (through the stat cache), None when it is gone."""
    from ..cache.statcache import stat_cache_for
    from .dvchash import dvc_md5

    if not path.exists():
        return None
    cache = stat_cache_for(settings.state_dir)
    try:
        return dvc_md5(path, cache)
    finally:
        cache.save()


def run_lineage(client: Any, run_id: str, model: str | None = None) -> RunLineage:
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST
        raise CellopsUsageError(f"no run {run_id} in the tracking store ({exc})") from None
    result = RunLineage(run_info(run), model)
    for label, md5 in result.run.files_in.items():
        result.inputs[label] = _search(client, "cellops.files_out", md5)
    for label, md5 in result.run.files_out.items():
        result.outputs[label] = _search(client, "cellops.files_in", md5)
    return result


# -- the pieces of a model version's lineage --------------------------------------------------


def session_steps(client: Any, session_run: RunInfo, until_ms: int | None = None) -> list[RunInfo]:
    """The steps a session (or job) ran, the latest run of each, in the order they ran;
    with `until_ms`, only the runs started by then (what existed when a model was made)."""
    experiment = client.get_run(session_run.run_id).info.experiment_id
    runs = client.search_runs(
        [experiment],
        f"tags.`mlflow.parentRunId` = '{session_run.run_id}' and tags.`cellops.kind` = 'step'",
        order_by=["attributes.start_time DESC"],
        max_results=MAX_STEPS,
    )
    latest: dict[str, RunInfo] = {}
    for run in runs:
        info = run_info(run)
        if until_ms is None or info.started_ms <= until_ms:
            latest.setdefault(info.name, info)
    return sorted(latest.values(), key=lambda info: info.started_ms)


def with_cells(client: Any, steps: list[RunInfo]) -> list[RunInfo]:
    """Each step with its cell source (the artifact `cellops/cell.py` of its run)."""
    import tempfile

    from .._process import environment

    with tempfile.TemporaryDirectory(prefix="cellops-lineage-") as folder:
        for index, step in enumerate(steps):
            try:
                with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                    path = client.download_artifacts(
                        step.run_id, CELL_ARTIFACT, f"{folder}/{index}"
                    )
                step.cell = Path(path).read_text()
            except Exception:  # a run of an older cellops, or its artifacts are gone
                step.cell = None
    return steps


def data_version(settings: Settings, client: Any, label: str, digest: str) -> DataVersion:
    """The version `digest` of the file `label`, named by DVC's hash, with the runs that wrote
    it, what DVC records for the path, and whether the file on disk still is that version.

    Versions registered by an older cellops hold the step cache's xxh3 digest instead of DVC's
    md5; it is translated when the content is known (the data stage's table of both hashes,
    or the file on disk has that digest)."""
    from .hooks import file_path

    path = file_path(settings.root, label)
    on_disk = _on_disk(settings, path)
    md5 = _as_dvc_hash(settings, path, digest, on_disk)
    recorded = None if Path(label).is_absolute() else dvc.recorded_output(settings.root, label)
    writers = _search(client, "cellops.files_out", md5)
    found = DataVersion(label, md5, on_disk, recorded, [w for w in writers if w.state != "cached"])
    if md5 != digest:
        found.recorded_as = digest
    return found


def _as_dvc_hash(settings: Settings, path: Path, digest: str, on_disk: str | None) -> str:
    from .._fs import read_json
    from ..cache.hashing import path_digest

    if digest == on_disk:
        return digest
    known = read_json(settings.state_dir / "data" / "md5_of_xxh3.json") or {}  # hooks.py's
    if digest in known:
        return known[digest]
    if on_disk is not None and path_digest(path) == digest:
        return on_disk
    return digest
