"""`cellops lineage TARGET`: what produced a file version, a step run or a model version, and
which runs used it. Answered from MLflow alone (tags `cellops.files_in` / `cellops.files_out`
hold {path: DVC hash} on every run that read or wrote a file), so it works on any store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import CellopsUsageError
from . import dvc

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


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


@dataclass
class FileLineage:
    label: str
    md5: str | None  # the version asked about (on disk, else DVC's record)
    recorded: dvc.Recorded | None
    on_disk: str | None
    produced_by: list[RunInfo] = field(default_factory=list)  # runs that wrote it
    restored_by: list[RunInfo] = field(default_factory=list)  # cache hits that put it back
    used_by: list[RunInfo] = field(default_factory=list)


@dataclass
class RunLineage:
    run: RunInfo
    model: str | None = None
    inputs: dict[str, list[RunInfo]] = field(default_factory=dict)  # path -> its producers
    outputs: dict[str, list[RunInfo]] = field(default_factory=dict)  # path -> runs using it


def _info(run: Any) -> RunInfo:
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
        files_in=json.loads(tags.get("cellops.files_in") or "{}"),
        files_out=json.loads(tags.get("cellops.files_out") or "{}"),
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
    infos = [_info(run) for run in runs]
    key = "files_in" if tag.endswith("_in") else "files_out"
    return [info for info in infos if md5 in getattr(info, key).values()]


def lineage(settings: Settings, target: str, client: Any = None) -> FileLineage | RunLineage:
    from ..store.client import connect_checked

    client = client or connect_checked(settings)
    if target.startswith("models:/"):
        return _model_lineage(client, target)
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
    from ..cache.statcache import stat_cache_for
    from .dvchash import dvc_md5

    on_disk = None
    if path.exists():
        cache = stat_cache_for(settings.state_dir)
        on_disk = dvc_md5(path, cache)
        cache.save()
    md5 = on_disk or (recorded.md5 if recorded else None)
    result = FileLineage(label, md5, recorded, on_disk)
    if md5:
        writers = _search(client, "cellops.files_out", md5)
        result.produced_by = [r for r in writers if r.state != "cached"]
        result.restored_by = [r for r in writers if r.state == "cached"]
        result.used_by = _search(client, "cellops.files_in", md5)
    return result


def run_lineage(client: Any, run_id: str, model: str | None = None) -> RunLineage:
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST
        raise CellopsUsageError(f"no run {run_id} in the tracking store ({exc})") from None
    result = RunLineage(_info(run), model)
    for label, md5 in result.run.files_in.items():
        result.inputs[label] = _search(client, "cellops.files_out", md5)
    for label, md5 in result.run.files_out.items():
        result.outputs[label] = _search(client, "cellops.files_in", md5)
    return result


def _model_lineage(client: Any, target: str) -> RunLineage:
    name, _, ref = target.removeprefix("models:/").partition("/")
    try:
        if "@" in name and not ref:
            name, _, alias = name.partition("@")
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, ref)
    except Exception as exc:  # MlflowException: no such model, version or alias
        raise CellopsUsageError(
            f"no model {target} in the registry ({str(exc).splitlines()[0][:200]}); "
            "give models:/NAME/VERSION or models:/NAME@ALIAS"
        ) from None
    if not version.run_id:
        raise CellopsUsageError(f"{target} names no run that produced it")
    return run_lineage(client, version.run_id, model=f"{name} version {version.version}")
