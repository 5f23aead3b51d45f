"""The step engine: plan a step (inputs, outputs, cache key), then restore it or run it.

The magic, a job and the tests all call `run_step`; it knows nothing of IPython. `execute` is
the callable that runs the cell's code in `namespace` and returns the value of its last
expression.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..cache import replay
from ..cache.hashing import code_digest, path_digest, value_digest
from ..cache.index import CacheEntry, StepCache
from ..cache.objects import ObjectStore
from ..cache.statcache import stat_cache_for
from ..errors import (
    CellopsUsageError,
    CorruptObjectError,
    StepOutputError,
    UndigestableError,
    UntrustedObjectError,
)
from ..store.session import ActiveStep, Session
from . import generators, observed, recording
from . import hooks as step_hooks
from .outputs import escaping_links, restore_outputs, store_outputs
from .plan import StepPlan, StepSpec, check_step_name, plan_step
from .state import save_step_state

__all__ = ["CellOutput", "StepOutcome", "StepPlan", "StepSpec", "plan_step", "run_step", "tell"]

UNDIGESTABLE = "undigestable"
_swept: weakref.WeakSet[Session] = weakref.WeakSet()  # sessions that cleaned up objects/tmp


def tell(message: str) -> None:
    """Something about a step the user should know, that does not stop it: on stderr, where a
    notebook shows it under the cell. (Not a warning: the cell's own warnings must behave as
    without cellops, and a warnings filter must not hide what cellops says.)"""
    print(f"cellops: {message}", file=sys.stderr)


class CellOutput(Protocol):
    """What a front end shows of a cell: recorded while a step runs, shown again on a hit."""

    def capture(self) -> contextlib.AbstractContextManager[list[dict[str, Any]]]: ...

    def format_value(self, value: Any) -> dict[str, Any] | None: ...

    def replay(self, outputs: list[dict[str, Any]]) -> None: ...


@dataclass
class StepOutcome:
    name: str
    key: str
    cached: bool
    value: Any = None
    restored: list[str] = field(default_factory=list)
    cached_from: str | None = None
    saved_seconds: float = 0.0
    outputs: list[dict[str, Any]] = field(default_factory=list)  # to show again on a hit
    has_value: bool = False  # on a hit: `value` is the cell's last expression
    cached_elsewhere: bool = False  # the run that computed it is not in this store

    def message(self) -> str:
        names = ", ".join(self.restored) or "nothing"
        if self.cached_elsewhere:
            return (
                f"cached: restored {names} (saved {self.saved_seconds:.1f} s), computed by run "
                f"{self.cached_from}, which is not in this store (deleted, or recorded in "
                "another store: a pulled cache)"
            )
        return (
            f"cached: restored {names} from run {self.cached_from} "
            f"(saved {self.saved_seconds:.1f} s)"
        )


def _ensure_store(session: Session) -> None:
    session.ensure_store()  # a named error (unreachable, damaged, disk full), no traceback


def run_step(
    session: Session,
    spec: StepSpec,
    namespace: dict[str, Any],
    execute: Callable[[], Any],
    output: CellOutput | None = None,
) -> StepOutcome:
    """Restore the step from the cache, or run it; either way record it as one MLflow run."""
    __tracebackhide__ = True  # IPython hides this frame from the user's traceback
    check_step_name(session, spec)
    generators.track_seeding(None)  # no-op once the magics started it with the kernel's history
    _ensure_store(session)
    plan = plan_step(session, spec, namespace)
    step_hooks.before_step(session, spec.name, plan)
    store = ObjectStore(session.settings.objects_dir)
    cache = StepCache(session.settings.cache_dir)
    if session not in _swept:  # the session's first step: what killed writers left behind
        _swept.add(session)
        store.sweep_temp()
    if plan.undigestable and spec.use_cache:
        tell(
            f"step '{spec.name}' is not cached, so it runs every time: cellops cannot tell "
            f"whether an input changed: {'; '.join(plan.undigestable)}"
        )
    elif spec.use_cache and not spec.force:
        pending = _pending_entry(session, plan.key)
        entries = [pending] if pending is not None else []
        entries += [
            e for e in cache.candidates(plan.key) if not entries or e.variant != pending.variant
        ]
        reasons = []
        for entry in entries:
            changed = _changed_since(session, entry)
            if changed:
                reasons.append(f"{changed} (cached run {entry.run_id})")
                continue
            # a pulled cache (or one kept across a new store) names runs of another store:
            # the values are still right (checked by key), but the message must not say the run
            # is here
            elsewhere = entry is not pending and not session.run_exists(entry.run_id)
            try:
                return _restore(session, spec, plan, entry, store, namespace, elsewhere)
            except UntrustedObjectError as exc:
                cache.untrusted.append(exc)
                continue
            except CorruptObjectError as exc:
                tell(f"step '{spec.name}': {exc}; running the step again")
                cache.forget(plan.key, entry.variant)
                break
        else:
            if cache.untrusted:  # said first: what to do about it differs
                tell(f"step '{spec.name}': {cache.untrusted[0]}")
            elif reasons:
                tell(f"step '{spec.name}' runs again: {reasons[0]}")
    return _execute(session, spec, plan, store, cache, namespace, execute, output)


def _changed_since(session: Session, entry: CacheEntry) -> str:
    """Why the entry no longer holds: a file it read changed, a generator is elsewhere."""
    stat_cache = stat_cache_for(session.settings.state_dir) if entry.file_checks else None
    files = observed.changed_files(entry.file_checks, session.settings.root, stat_cache)
    moved = generators.changed_generators(entry.generator_checks)
    reasons = [f"{label} changed" for label in files]
    reasons += [
        f"it drew from the global {name} random generator, which is in another state now "
        "(seed it before the step to reuse the result)"
        for name in moved
    ]
    return "; ".join(reasons)


def _base_tags(plan: StepPlan) -> dict[str, str]:
    return {
        "cellops.key": plan.key,
        "cellops.code_digest": plan.code_digest,
        "cellops.inputs": ",".join(plan.inputs),
        "cellops.outputs": ",".join(plan.outputs),
        "cellops.upstream": ",".join(plan.upstream),
    }


def _restore(
    session, spec, plan, entry: CacheEntry, store, namespace, elsewhere: bool = False
) -> StepOutcome:
    started = time.perf_counter()
    restored = restore_outputs(store, entry.bundle, namespace)
    for label, ref in entry.files_out.items():
        store.restore_path(ref, session.settings.root / label)
    names = list(entry.restored) + list(entry.files_out)
    run_future = recording.start_step_run(session, spec.name, _base_tags(plan))
    record = recording.StepRecord(
        status="FINISHED",
        params=plan.params,
        metrics=[(k, v, 0) for k, v in entry.metrics.items()],
        tags={
            "cellops.state": "cached",
            "cellops.cached_from": entry.run_id,
            "cellops.cached_from_store": "other" if elsewhere else "this",
            "cellops.restore_s": f"{time.perf_counter() - started:.3f}",
        },
        texts=_texts(spec, plan, entry.output_digests, entry.files_out, entry.file_checks),
    )
    recording.finish_step_run(session, run_future, record)
    step_hooks.after_step(session, spec.name, plan, run_future)
    _remember(
        session, spec, plan, "cached", entry.duration_s, entry.metrics, run_future, entry.restored
    )
    return StepOutcome(
        spec.name,
        plan.key,
        True,
        restored.value,
        names,
        entry.run_id,
        entry.duration_s,
        outputs=entry.cell_outputs,
        has_value=restored.has_value,
        cached_elsewhere=elsewhere,
    )


def _texts(spec, plan, output_digests, files_out, files_read=None) -> dict[str, str]:
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
                "files_read": files_read or {},
                "modules": plan.modules,
                "files_out": {k: v.get("digest") for k, v in files_out.items()},
                "upstream": plan.upstream,
            }
        ),
    }


def _execute(session, spec, plan, store, cache, namespace, execute, output) -> StepOutcome:
    __tracebackhide__ = True
    run_future = recording.start_step_run(session, spec.name, _base_tags(plan))
    active = ActiveStep(spec.name, run_future)
    session.active_steps.append(active)
    read_values = [namespace[n] for n in plan.inputs if n in namespace]
    inside_inputs = {
        n: replay.reachable(namespace[n])
        for n in plan.inputs
        if n in namespace and replay.is_shareable(namespace[n])
    }
    named = observed.named_paths(
        spec.source, read_values, session.settings.root, session.settings.state_dir
    )
    started = time.perf_counter()
    watch = observed.start_file_watch()
    try:
        with generators.GeneratorWatch() as drawn, _capturing(output) as cell_outputs:
            value = execute()
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        _finish_failed(session, spec, plan, active, status, started)
        raise
    finally:
        observed.stop_file_watch(watch)
        session.active_steps.remove(active)
    ran = _Ran(
        time.perf_counter() - started, value, watch, named, inside_inputs, drawn, cell_outputs
    )
    try:
        return _record_run(session, spec, plan, store, cache, namespace, active, ran, output)
    except BaseException as exc:  # an interrupt while outputs are hashed or stored
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        _finish_failed(session, spec, plan, active, status, started)
        raise


@dataclass
class _Ran:
    """What the cell did when it ran."""

    duration: float
    value: Any
    watch: observed.FileWatch
    named: list[str]  # project files the cell names, as they existed before it ran
    inside_inputs: dict[str, list[tuple[replay.Path, Any]]]  # objects in its inputs, before
    generators: generators.GeneratorWatch
    cell_outputs: list[dict[str, Any]]


@contextlib.contextmanager
def _capturing(output: CellOutput | None) -> Iterator[list[dict[str, Any]]]:
    if output is None:
        yield []
    else:
        with output.capture() as recorded:
            yield recorded


def _changed_inputs(plan: StepPlan, namespace: dict[str, Any], root: Path) -> list[str]:
    """Inputs the step changed in place (`rows.append(1)`, `clf.fit(X, y)`): outputs too."""
    changed = []
    for name, before in plan.inputs.items():
        if name in plan.outputs or name not in namespace:
            continue
        try:
            after = value_digest(namespace[name], root)
        except UndigestableError:
            after = UNDIGESTABLE
        if after != before:
            changed.append(name)
    return changed


def _record_run(session, spec, plan, store, cache, namespace, active, ran, output) -> StepOutcome:
    settings = session.settings
    escaping = escaping_links(settings.root, settings.state_dir, plan.files_out)
    if escaping:  # made by the cell: checked now, before anything of it is read or stored
        raise StepOutputError(
            f"step '{spec.name}': {escaping[0]}; nothing of the step was cached. Copy the file "
            "into the project instead of linking to it, or leave it out of --files-out"
        )
    missing_files = [p for p in plan.files_out if not (settings.root / p).exists()]
    if missing_files:
        raise CellopsUsageError(
            f"step '{spec.name}' did not write {', '.join(missing_files)} declared by "
            "--files-out; write the file in the cell, or drop it from --files-out"
        )
    changed = _changed_inputs(plan, namespace, settings.root)
    produced = [name for name in plan.outputs if name in namespace]
    produced += [name for name in changed if name not in produced]
    output_digests = {name: _digest_or_mark(namespace[name], settings.root) for name in produced}
    metrics = _step_metrics(spec, namespace)
    stat_cache = stat_cache_for(settings.state_dir)
    exclude = set(plan.files_in) | set(plan.files_out)
    reads = observed.file_reads(
        ran.watch, ran.named, settings.root, settings.state_dir, exclude, stat_cache
    )
    stat_cache.save()
    used = ran.generators.use()
    cacheable = spec.use_cache and not plan.undigestable
    if cacheable and reads.unreadable:
        tell(
            f"step '{spec.name}' is not cached: it read {', '.join(reads.unreadable)}, which "
            "cellops could not hash"
        )
        cacheable = False
    stored, files_refs = None, {}
    if cacheable:
        stored = store_outputs(
            store, namespace, produced, changed, ran.inside_inputs, used.after, ran.value
        )
        if stored.unstorable:
            tell(
                f"step '{spec.name}' is not cached: cannot store {', '.join(stored.unstorable)}; "
                "it still ran and was tracked"
            )
            cacheable = False
    if cacheable:
        files_refs = {p: store.put_path(settings.root / p) for p in plan.files_out}
    else:
        files_refs = {p: {"digest": path_digest(settings.root / p)} for p in plan.files_out}
    tags = {"cellops.state": "executed", "cellops.cacheable": str(cacheable).lower()}
    if changed:
        tags["cellops.changed_inputs"] = ",".join(changed)
    record = recording.StepRecord(
        status="FINISHED",
        params={**plan.params, **active.params},
        metrics=[*active.metrics, *((k, v, 0) for k, v in metrics.items())],
        tags=tags,
        texts=_texts(spec, plan, output_digests, files_refs, reads.digests),
        artifacts=active.artifacts,
        staged=[Path(a[0]).parent for a in active.artifacts],
    )
    record.metrics.append(("cellops.duration_s", ran.duration, 0))
    recording.finish_step_run(session, active.run_future, record)
    step_hooks.after_step(session, spec.name, plan, active.run_future)
    all_metrics = {k: v for k, v, _ in active.metrics} | metrics
    if cacheable:
        cell_outputs = list(ran.cell_outputs)
        if ran.value is not None and not stored.value_stored and output is not None:
            shown = output.format_value(ran.value)
            if shown is not None:
                cell_outputs.append(shown)
        entry = CacheEntry(
            key=plan.key,
            step=spec.name,
            run_id="",
            bundle=stored.ref,
            restored=produced,
            output_digests=output_digests,
            files_out=files_refs,
            metrics=all_metrics,
            duration_s=ran.duration,
            file_checks=reads.digests,
            generator_checks=used.before,
            cell_outputs=cell_outputs,
        )
        _save_entry_when_recorded(session, cache, entry, active.run_future)
    _remember(session, spec, plan, "fresh", ran.duration, all_metrics, active.run_future, produced)
    return StepOutcome(spec.name, plan.key, False, ran.value)


def _digest_or_mark(value: Any, root: Path) -> str:
    try:
        return value_digest(value, root)
    except UndigestableError:
        return UNDIGESTABLE


def _save_entry_when_recorded(session, cache, entry: CacheEntry, run_future) -> None:
    """Index the entry once its run is recorded: a hit always names a run that exists.

    Every object the entry names is already stored, so the entry is complete when it appears.
    """

    session.pending_entries[entry.key] = (entry, run_future)

    def save(client: Any) -> None:  # noqa: ARG001 - a tracker job gets the client
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


def _step_metrics(spec: StepSpec, namespace: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for name in spec.metrics:
        if name not in namespace:
            tell(f"step '{spec.name}': metric {name!r} was not defined")
            continue
        number = recording.as_metric(namespace[name])
        if number is None:
            tell(
                f"step '{spec.name}': metric {name!r} is a {type(namespace[name]).__name__}, "
                "not a number; it was not logged"
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
    _remember(session, spec, plan, state, duration, {}, active.run_future, None)


def _remember(session, spec, plan, state, duration, metrics, run_future, produced) -> None:
    """Note the step's state; `produced` (None when it failed) names what it bound or changed."""
    if produced is not None:
        session.last_keys[spec.name] = plan.key
        for name in produced:
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
        "outputs": plan.outputs if produced is None else produced,
        "upstream": plan.upstream,
        "duration_s": round(duration, 3),
        "metrics": metrics,
        "run_id": None,
        "finished_at": time.time(),
    }
    save_step_state(session.settings, session.notebook_label, record)

    def add_run_id(client: Any) -> None:  # noqa: ARG001 - a tracker job gets the client
        record["run_id"] = run_future.result()
        save_step_state(session.settings, session.notebook_label, record)

    session.tracker.submit(add_run_id)
