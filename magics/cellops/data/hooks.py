"""What the step engine calls around a step that declares files: DVC versioning and lineage.

`before_step` refuses to overwrite a DVC-tracked output that was changed by hand (on a cache
restore as on a run). `after_step` (after a successful or restored step) computes each file's
DVC hash, puts the outputs under DVC when the project has DVC, and records the files on the
step's MLflow run: tags `cellops.files_in` / `cellops.files_out` ({path: hash}) and one MLflow
dataset input per file (its digest is the DVC hash; context "input" or "output"), written on
the session's tracker thread like every MLflow write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._fs import atomic_write_json, read_json
from .._limits import tag_text
from ..cache.statcache import stat_cache_for
from ..config import Settings
from ..errors import CellopsError, CellopsUsageError
from ..steps.state import notebook_slug
from . import dvc
from .dvchash import dvc_md5

MAX_KNOWN = 50_000  # xxh3 -> md5 pairs kept (newest)


def file_path(root: Path, label: str) -> Path:
    path = Path(label)
    return path if path.is_absolute() else root / label


def _data_dir(settings: Settings) -> Path:
    return settings.state_dir / "data"


# -- what cellops last wrote, per output, and which files each step used -------------------------


def written_hashes(settings: Settings) -> dict[str, str]:
    return read_json(_data_dir(settings) / "written.json") or {}


def remember_written(settings: Settings, hashes: dict[str, str]) -> None:
    if hashes:
        path = _data_dir(settings) / "written.json"
        atomic_write_json(path, {**(read_json(path) or {}), **hashes})


def _steps_file(settings: Settings, notebook_label: str) -> Path:
    return _data_dir(settings) / "steps" / f"{notebook_slug(notebook_label)}.json"


def step_files(settings: Settings, notebook_label: str) -> dict[str, dict[str, Any]]:
    """{step: {"files_in": {path: hash}, "files_out": {path: hash}}} as last run."""
    return read_json(_steps_file(settings, notebook_label)) or {}


def _remember_step(settings, notebook_label, step, files_in, files_out) -> None:
    path = _steps_file(settings, notebook_label)
    records = read_json(path) or {}
    records[step] = {"files_in": files_in, "files_out": files_out}
    atomic_write_json(path, records)


# -- before and after a step ----------------------------------------------------------------------


def hand_modified(settings: Settings, labels: list[str]) -> list[dvc.Recorded]:
    """DVC-tracked outputs whose content is neither what DVC recorded nor what cellops wrote."""
    root = settings.root
    if not labels or not dvc.is_initialized(root):
        return []
    cache = stat_cache_for(settings.state_dir)
    written = written_hashes(settings)
    changed = []
    for label in labels:
        path = file_path(root, label)
        if not path.exists():
            continue
        recorded = dvc.recorded_output(root, label)
        if recorded is None or recorded.md5 is None:
            continue
        now = dvc_md5(path, cache)
        if now != recorded.md5 and now != written.get(label):
            changed.append(recorded)
    cache.save()
    return changed


def before_step(session: Any, step: str, plan: Any) -> None:
    changed = hand_modified(session.settings, plan.files_out)
    if changed:
        raise CellopsUsageError(describe_changed(changed, f"step '{step}'"))


def describe_changed(changed: list[dvc.Recorded], who: str) -> str:
    names = ", ".join(r.label for r in changed)
    keep = " ; ".join(
        f"`dvc commit {r.stage}`" if r.stage else f"`dvc add {r.label}`" for r in changed
    )
    return (
        f"{who}: {names} changed since DVC recorded {'it' if len(changed) == 1 else 'them'} "
        f"({', '.join(r.pointer for r in changed)}), and cellops will not overwrite a change "
        f"made by hand. Keep the change as a new version with {keep}, or discard it with "
        f"`dvc checkout {' '.join(r.label for r in changed)}`; then run again"
    )


def after_step(session: Any, step: str, plan: Any, run_future: Any) -> None:
    if not plan.files_in and not plan.files_out:
        return
    from ..steps.engine import tell

    settings = session.settings
    try:
        files_in, files_out = file_hashes(settings, plan.files_in, plan.files_out)
    except OSError as exc:  # a file vanished since the step ran
        tell(f"step '{step}': its files were not recorded: {exc}")
        return
    try:
        pointers = put_under_dvc(settings.root, files_in, files_out)
    except CellopsError as exc:
        tell(f"step '{step}': its output files were not put under DVC: {exc}")
        pointers = {}
    _remember_step(settings, session.notebook_label, step, files_in, files_out)
    session.tracker.submit(
        log_files, run_future.result, settings.root, files_in, files_out, pointers
    )


def file_hashes(
    settings: Settings, labels_in: list[str] | dict[str, str], labels_out: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """DVC hashes of a step's files; the outputs' are remembered as what cellops wrote.

    `labels_in` may map each input to its xxh3 content digest (a step's plan has them): a
    content seen before then gets its DVC hash without a walk over its files.
    """
    cache = stat_cache_for(settings.state_dir)
    root = settings.root
    known_path = _data_dir(settings) / "md5_of_xxh3.json"
    known = read_json(known_path) or {}
    digests = labels_in if isinstance(labels_in, dict) else {}
    files_in, learned = {}, {}
    for label in labels_in:
        digest = digests.get(label)
        files_in[label] = known.get(digest) or dvc_md5(file_path(root, label), cache)
        if digest and digest not in known:
            learned[digest] = files_in[label]
    files_out = {label: dvc_md5(file_path(root, label), cache) for label in labels_out}
    cache.save()
    if learned:
        merged = {**known, **learned}
        atomic_write_json(known_path, dict(list(merged.items())[-MAX_KNOWN:]))
    remember_written(settings, files_out)
    return files_in, files_out


def put_under_dvc(
    root: Path, files_in: dict[str, str], files_out: dict[str, str]
) -> dict[str, str]:
    """`dvc add` the outputs DVC does not hold in this version; each file's DVC record.

    Nothing is done without DVC, nor inside `dvc repro` (DVC records a stage's outputs itself);
    a stage's outputs are left to `dvc repro` / `dvc commit`.
    """
    pointers: dict[str, str] = {}
    if not dvc.is_initialized(root):
        return pointers
    for label in files_in:
        recorded = None if Path(label).is_absolute() else dvc.recorded_output(root, label)
        if recorded is not None:
            pointers[label] = recorded.pointer
    to_add = []
    for label, md5 in files_out.items():
        recorded = dvc.recorded_output(root, label)
        if recorded is not None and (recorded.stage is not None or recorded.md5 == md5):
            pointers[label] = recorded.pointer
        else:
            to_add.append(label)
    if to_add and not dvc.in_dvc_stage():
        dvc.add(root, to_add)
        pointers.update({label: f"{label}.dvc" for label in to_add})
    return pointers


# -- the MLflow records (run on the tracker's thread) ---------------------------------------------


def log_files(
    client: Any,
    run_id_of: Callable[[], Any],
    root: Path,
    files_in: dict[str, str],
    files_out: dict[str, str],
    pointers: dict[str, str],
) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag, RunTag

    run_id = run_id_of()
    run_id = getattr(run_id, "run_id", run_id)  # a step's run id, or the session's SessionRun
    tags = client.get_run(run_id).data.tags
    new_tags = []
    for key, files in (("cellops.files_in", files_in), ("cellops.files_out", files_out)):
        if files:
            merged = {**json.loads(tags.get(key) or "{}"), **files}
            new_tags.append(RunTag(key, tag_text(json.dumps(merged, sort_keys=True))))
    if new_tags:
        client.log_batch(run_id, tags=new_tags)
    inputs = []
    for context, files in (("input", files_in), ("output", files_out)):
        for label, md5 in files.items():
            path = file_path(root, label)
            dataset = Dataset(
                name=label,
                digest=md5,
                source_type="local",
                source=json.dumps({"uri": path.as_uri()}),
                profile=json.dumps({"hash": "md5 (DVC)", "dvc": pointers.get(label)}),
            )
            inputs.append(DatasetInput(dataset, [InputTag("mlflow.data.context", context)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
