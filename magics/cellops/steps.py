"""The step engine: plan a step (inputs, outputs, cache key), then restore it or run it.

The magic, a job and the tests all call `run_step`; it knows nothing of IPython. `execute` is
the callable that runs the cell's code in `namespace` and returns the value of its last
expression.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import recording
from .analysis import analyze_cell
from .cache import FORMAT_VERSION, CacheEntry, StepCache
from .data import hooks as data_hooks
from .errors import (
    CellopsUsageError,
    CorruptObjectError,
    StoreUnreachableError,
    UnserializableError,
)
from .hashing import code_digest, hash_strings, path_digest, value_digest
from .notebook import STEP_NAME, read_step_cells
from .objects import ObjectStore
from .session import ActiveStep, Session
from .statcache import stat_cache_for
from .stepstate import save_step_state

IGNORED_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "display"}


class StepWarning(UserWarning):
    """Something about a step the user should know, that does not stop it."""


@dataclass
class StepSpec:
    """A step as the user declared it."""

    name: str
    source: str  # Python code to run (IPython syntax already transformed)
    raw_source: str | None = None  # the cell body as typed, when it differs
    inputs: list[str] | None = None
    outputs: list[str] | None = None
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    files_in: list[str] = field(default_factory=list)
    files_out: list[str] = field(default_factory=list)
    use_cache: bool = True
    force: bool = False
    cell_id: str | None = None


@dataclass
class StepPlan:
    """What a step reads and writes, with the content hashes that make up its cache key."""

    inputs: dict[str, str]  # name -> value digest
    outputs: list[str]
    params: dict[str, str]  # name -> value as logged
    files_in: dict[str, str]  # project-relative path -> digest
    files_out: list[str]
    upstream: dict[str, str]  # step -> its key
    code_digest: str
    key: str


@dataclass
class StepOutcome:
    name: str
    key: str
    cached: bool
    value: Any = None
    restored: list[str] = field(default_factory=list)
    cached_from: str | None = None
    saved_seconds: float = 0.0

    def message(self) -> str:
        names = ", ".join(self.restored) or "nothing"
        return (
            f"cached: restored {names} from run {self.cached_from} "
            f"(saved {self.saved_seconds:.1f} s)"
        )


def plan_step(session: Session, spec: StepSpec, namespace: dict[str, Any]) -> StepPlan:
    try:
        names = analyze_cell(spec.source)
    except SyntaxError:
        names = None  # let the cell run and raise Python's own SyntaxError
    reads = list(spec.inputs) if spec.inputs is not None else list(names.reads if names else [])
    if spec.inputs is not None:
        missing = [n for n in spec.inputs if n not in namespace]
        if missing:
            raise CellopsUsageError(
                f"step '{spec.name}': declared input {', '.join(map(repr, missing))} "
                "is not defined; run the cell that defines it first, or remove it from --inputs"
            )
    for name in spec.params:
        if name not in namespace:
            raise CellopsUsageError(
                f"step '{spec.name}': --params names {name!r}, which is not defined; "
                "define it in an earlier cell (for example the parameters cell)"
            )
        if name not in reads:
            reads.append(name)
    inputs = {}
    for name in reads:
        if name in IGNORED_NAMES or name.startswith("_") or name not in namespace:
            continue
        if _is_library_code(namespace[name], session.settings.root):
            continue
        inputs[name] = value_digest(namespace[name])
    outputs = (
        list(spec.outputs) if spec.outputs is not None else list(names.writes if names else [])
    )
    outputs = [n for n in outputs if not n.startswith("_")]
    params = {
        name: recording.as_param(namespace[name])
        for name in reads
        if name in namespace and (name in spec.params or _is_scalar(namespace[name]))
    }
    files_in = {}
    stat_cache = stat_cache_for(session.settings.state_dir) if spec.files_in else None
    for raw in spec.files_in:
        path = _project_path(session, raw)
        if not path.exists():
            raise CellopsUsageError(
                f"step '{spec.name}': --files-in {raw!r} does not exist "
                f"(looked for {path}); check the path or create the file first"
            )
        files_in[_label(session, path)] = path_digest(path, stat_cache)
    if stat_cache is not None:
        stat_cache.save()
    files_out = [_label(session, _output_path(session, spec, raw)) for raw in spec.files_out]
    upstream = {
        session.producers[name]: session.last_keys[session.producers[name]]
        for name in inputs
        if name in session.producers and session.producers[name] != spec.name
    }
    digest = code_digest(spec.source)
    key = hash_strings(
        f"cellops-step-v{FORMAT_VERSION}",
        digest,
        json.dumps(sorted(inputs.items())),
        json.dumps(sorted(files_in.items())),
        json.dumps(sorted(upstream.items())),
        json.dumps(sorted(outputs)),
        json.dumps(sorted(files_out)),
    )
    return StepPlan(inputs, outputs, params, files_in, files_out, upstream, digest, key)


def _is_library_code(value: Any, root: Path) -> bool:
    """Modules, and functions and classes imported from installed packages, are not inputs:
    they belong to the environment (the job manifest records package versions). Those defined
    in the notebook or in the project's own modules are, and count by their source."""
    if isinstance(value, types.ModuleType):
        return True
    if not isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        return False
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    if module is None or module.__name__ == "__main__":
        return False
    source = getattr(module, "__file__", None)
    return source is None or not Path(source).resolve().is_relative_to(root)


def _is_scalar(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _project_path(session: Session, raw: str) -> Path:
    path = Path(raw)
    return (path if path.is_absolute() else Path(os.getcwd()) / path).resolve()


def _output_path(session: Session, spec: StepSpec, raw: str) -> Path:
    path = _project_path(session, raw)
    root = session.settings.root
    if path == root or not path.is_relative_to(root):
        raise CellopsUsageError(
            f"step '{spec.name}': --files-out {raw!r} is outside the project ({path} is not "
            f"under {root}), so it cannot be cached or versioned; write it inside the project"
        )
    return path


def _label(session: Session, path: Path) -> str:
    try:
        return path.relative_to(session.settings.root).as_posix()
    except ValueError:
        return path.as_posix()


def check_step_name(session: Session, spec: StepSpec) -> None:
    if not STEP_NAME.match(spec.name or ""):
        raise CellopsUsageError(
            f"invalid step name {spec.name!r}: use up to 64 letters, digits, '_', '-' or '.', "
            "starting with a letter or '_'; for example: %%step load_data"
        )
    known = session.step_cells.get(spec.name, spec.cell_id)
    if spec.cell_id and known and known != spec.cell_id:
        raise CellopsUsageError(
            f"another cell already defines step '{spec.name}'; give this step its own name, "
            f"for example: %%step {spec.name}_2"
        )
    if spec.cell_id:
        session.step_cells[spec.name] = spec.cell_id
    if session.notebook.runner == "papermill" and session.notebook.path:
        _check_notebook_names(session, spec.name)


def _check_notebook_names(session: Session, name: str) -> None:
    try:
        cells = read_step_cells(session.notebook.path)
    except (OSError, ValueError):
        return
    same = [cell.index for cell in cells if cell.name == name]
    if len(same) > 1:
        raise CellopsUsageError(
            f"step '{name}' is defined by {len(same)} cells (cells {same}) of "
            f"{session.notebook_label}; give each step its own name"
        )


def _ensure_store(session: Session) -> None:
    session.tracker.ensure_reachable()
    try:
        session.run_future.result()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnreachableError(session.tracker.uri, reason[:300]) from None


def run_step(
    session: Session, spec: StepSpec, namespace: dict[str, Any], execute: Callable[[], Any]
) -> StepOutcome:
    """Restore the step from the cache, or run it; either way record it as one MLflow run."""
    __tracebackhide__ = True  # IPython hides this frame from the user's traceback
    check_step_name(session, spec)
    _ensure_store(session)
    plan = plan_step(session, spec, namespace)
    data_hooks.before_step(session, spec.name, plan)
    store = ObjectStore(session.settings.objects_dir)
    cache = StepCache(session.settings.cache_dir)
    if spec.use_cache and not spec.force:
        entry = _pending_entry(session, plan.key) or cache.lookup(plan.key)
        if entry is not None:
            try:
                return _restore(session, spec, plan, entry, store, namespace)
            except CorruptObjectError as exc:
                warnings.warn(f"step '{spec.name}': {exc}; running the step again", StepWarning)
                cache.forget(plan.key)
    return _execute(session, spec, plan, store, cache, namespace, execute)


def _base_tags(spec: StepSpec, plan: StepPlan) -> dict[str, str]:
    return {
        "cellops.key": plan.key,
        "cellops.code_digest": plan.code_digest,
        "cellops.inputs": ",".join(plan.inputs),
        "cellops.outputs": ",".join(plan.outputs),
        "cellops.upstream": ",".join(plan.upstream),
    }


def _restore(session, spec, plan, entry: CacheEntry, store, namespace) -> StepOutcome:
    started = time.perf_counter()
    values = {name: store.get_value(ref) for name, ref in entry.outputs.items()}
    for label, ref in entry.files_out.items():
        store.restore_path(ref, session.settings.root / label)
    namespace.update(values)
    restored = list(values) + list(entry.files_out)
    run_future = recording.start_step_run(session, spec.name, _base_tags(spec, plan))
    record = recording.StepRecord(
        status="FINISHED",
        params=plan.params,
        metrics=[(k, v, 0) for k, v in entry.metrics.items()],
        tags={
            "cellops.state": "cached",
            "cellops.cached_from": entry.run_id,
            "cellops.restore_s": f"{time.perf_counter() - started:.3f}",
        },
        texts=_texts(spec, plan, entry.output_digests, entry.files_out),
    )
    recording.finish_step_run(session, run_future, record)
    data_hooks.after_step(session, spec.name, plan, run_future)
    _remember(session, spec, plan, "cached", entry.duration_s, entry.metrics, run_future)
    return StepOutcome(spec.name, plan.key, True, None, restored, entry.run_id, entry.duration_s)


def _texts(spec, plan, output_digests, files_out) -> dict[str, str]:
    return {
        "cellops/cell.py": spec.raw_source or spec.source,
        "cellops/step.json": recording.describe_json(
            {
                "step": spec.name,
                "key": plan.key,
                "code_digest": plan.code_digest,
                "inputs": plan.inputs,
                "outputs": output_digests,
                "params": plan.params,
                "files_in": plan.files_in,
                "files_out": {k: v.get("digest") for k, v in files_out.items()},
                "upstream": plan.upstream,
            }
        ),
    }


def _execute(session, spec, plan, store, cache, namespace, execute) -> StepOutcome:
    __tracebackhide__ = True
    run_future = recording.start_step_run(session, spec.name, _base_tags(spec, plan))
    active = ActiveStep(spec.name, run_future)
    session.active_steps.append(active)
    started = time.perf_counter()
    try:
        value = execute()
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        _finish_failed(session, spec, plan, active, status, started)
        raise
    finally:
        session.active_steps.remove(active)
    duration = time.perf_counter() - started

    missing_files = [p for p in plan.files_out if not (session.settings.root / p).exists()]
    if missing_files:
        _finish_failed(session, spec, plan, active, "FAILED", started)
        raise CellopsUsageError(
            f"step '{spec.name}' did not write {', '.join(missing_files)} declared by "
            "--files-out; write the file in the cell, or drop it from --files-out"
        )
    produced = [name for name in plan.outputs if name in namespace]
    output_digests = {name: value_digest(namespace[name]) for name in produced}
    metrics = _step_metrics(spec, namespace, active)
    refs, files_refs, unstorable = {}, {}, []
    if spec.use_cache:
        for name in produced:
            try:
                refs[name] = store.put_value(namespace[name])
            except UnserializableError as exc:
                unstorable.append(f"{name} ({exc})")
        files_refs = {p: store.put_path(session.settings.root / p) for p in plan.files_out}
    else:
        files_refs = {p: {"digest": path_digest(session.settings.root / p)} for p in plan.files_out}
    if unstorable:
        warnings.warn(
            f"step '{spec.name}' is not cached: cannot store {', '.join(unstorable)}; "
            "it still ran and was tracked",
            StepWarning,
        )
    cacheable = spec.use_cache and not unstorable
    tags = {"cellops.state": "executed", "cellops.cacheable": str(cacheable).lower()}
    record = recording.StepRecord(
        status="FINISHED",
        params={**plan.params, **active.params},
        metrics=[*active.metrics, *((k, v, 0) for k, v in metrics.items())],
        tags=tags,
        texts=_texts(spec, plan, output_digests, files_refs),
        artifacts=active.artifacts,
        staged=[Path(a[0]).parent for a in active.artifacts],
    )
    record.metrics.append(("cellops.duration_s", duration, 0))
    recording.finish_step_run(session, run_future, record)
    data_hooks.after_step(session, spec.name, plan, run_future)
    all_metrics = {k: v for k, v, _ in active.metrics} | metrics
    if cacheable:
        entry = CacheEntry(
            key=plan.key,
            step=spec.name,
            run_id="",
            outputs=refs,
            output_digests=output_digests,
            files_out=files_refs,
            metrics=all_metrics,
            duration_s=duration,
        )
        _save_entry_when_recorded(session, cache, entry, run_future)
    _remember(session, spec, plan, "fresh", duration, all_metrics, run_future)
    return StepOutcome(spec.name, plan.key, False, value)


def _save_entry_when_recorded(session, cache, entry: CacheEntry, run_future) -> None:
    """Index the entry once its run is recorded: a hit always names a run that exists.

    Every object the entry names is already stored, so the entry is complete when it appears.
    """

    session.pending_entries[entry.key] = (entry, run_future)

    def save(client: Any) -> None:
        try:
            entry.run_id = run_future.result()
            cache.save(entry)
        finally:
            session.pending_entries.pop(entry.key, None)

    session.tracker.submit(save)


def _pending_entry(session: Session, key: str) -> CacheEntry | None:
    """An entry whose index write is still queued: usable once its run is recorded."""
    pending = session.pending_entries.get(key)
    if pending is None:
        return None
    entry, run_future = pending
    entry.run_id = run_future.result()
    return entry


def _step_metrics(
    spec: StepSpec, namespace: dict[str, Any], active: ActiveStep
) -> dict[str, float]:
    metrics = {}
    for name in spec.metrics:
        if name not in namespace:
            warnings.warn(f"step '{spec.name}': metric {name!r} was not defined", StepWarning)
            continue
        number = recording.as_metric(namespace[name])
        if number is None:
            warnings.warn(
                f"step '{spec.name}': metric {name!r} is a {type(namespace[name]).__name__}, "
                "not a number; it was not logged",
                StepWarning,
            )
            continue
        metrics[name] = number
    return metrics


def _finish_failed(session, spec, plan, active, status, started) -> None:
    duration = time.perf_counter() - started
    error = traceback.format_exc()
    last_line = error.strip().splitlines()[-1] if error.strip() else status
    record = recording.StepRecord(
        status=status,
        params={**plan.params, **active.params},
        metrics=[*active.metrics, ("cellops.duration_s", duration, 0)],
        tags={"cellops.state": status.lower(), "cellops.error": last_line},
        texts={**_texts(spec, plan, {}, {}), "cellops/traceback.txt": error},
        artifacts=active.artifacts,
        staged=[Path(a[0]).parent for a in active.artifacts],
    )
    recording.finish_step_run(session, active.run_future, record)
    state = "failed" if status == "FAILED" else "killed"
    _remember(session, spec, plan, state, duration, {}, active.run_future, succeeded=False)


def _remember(session, spec, plan, state, duration, metrics, run_future, succeeded=True) -> None:
    if succeeded:
        session.last_keys[spec.name] = plan.key
        for name in plan.outputs:
            session.producers[name] = spec.name
    source = spec.raw_source or spec.source
    record = {
        "name": spec.name,
        "notebook": session.notebook_label,
        "state": state,
        "key": plan.key,
        "code_digest": code_digest(source),
        "source": source,
        "inputs": plan.inputs,
        "outputs": plan.outputs,
        "upstream": plan.upstream,
        "duration_s": round(duration, 3),
        "metrics": metrics,
        "run_id": None,
        "finished_at": time.time(),
    }
    save_step_state(session.settings, session.notebook_label, record)

    def add_run_id(client: Any) -> None:
        record["run_id"] = run_future.result()
        save_step_state(session.settings, session.notebook_label, record)

    session.tracker.submit(add_run_id)
