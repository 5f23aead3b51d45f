"""A step's outputs as one stored object, and putting them back on a hit.

The bundle holds, in one pickle (so objects shared between outputs stay shared):
`values` (names bound to a new value), `states` (inputs changed in place: their new state, put
back into the live object), `generators` (the global generators' states after the step) and
`value` (the cell's last expression). Notebook values the step read are stored as references
by name (see `ObjectStore.put_bundle`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import replay
from ..cache.objects import ObjectRef, ObjectStore, bundle_pickler
from ..errors import CorruptObjectError, UnserializableError
from . import generators


@dataclass
class Restored:
    value: Any = None  # the cell's last expression, when it was stored
    has_value: bool = False


@dataclass
class Stored:
    ref: ObjectRef | None
    value_stored: bool
    unstorable: list[str]  # "name (why)" of outputs no codec could store


def store_outputs(
    store: ObjectStore,
    namespace: dict[str, Any],
    produced: list[str],
    changed_inputs: list[str],
    inside_inputs: dict[str, list[tuple[replay.Path, Any]]],
    generators: dict[str, Any],
    value: Any,
) -> Stored:
    """Store what a step produced; `changed_inputs` are inputs it changed in place, and
    `inside_inputs` the objects inside each input before the step ran (`replay.reachable`).

    Every such object is stored as a reference by its path (`("pipe", path)`), so outputs
    holding one get the live object back. An input the step
    changed has the state of each object inside it stored too, and put back in place: fitting
    `pipe` fits the live PCA that `pca` names as well, as after a plain run.
    """
    values, states, live = {}, {}, {}
    for name in produced:
        if name not in changed_inputs or replay.state_of(namespace[name]) is None:
            values[name] = namespace[name]
    changed_first = sorted(inside_inputs, key=lambda name: name not in changed_inputs)
    for name in changed_first:
        if name not in namespace or name in values:
            continue
        for path, obj in inside_inputs[name]:
            if id(obj) in live:
                continue
            live[id(obj)] = ((name, path), obj)
            if name in changed_inputs and (state := replay.state_of(obj)) is not None:
                states[(name, path)] = state
    payload: dict[str, Any] = {"values": values, "states": states, "generators": generators}
    if value is not None:
        payload["value"] = value
    try:
        return Stored(store.put_bundle(payload, live), value is not None, [])
    except UnserializableError as first:
        if value is None:
            return Stored(None, False, _unstorable(values, states, live, first))
    payload.pop("value")  # the last expression may be what cannot be stored: show its repr
    try:
        return Stored(store.put_bundle(payload, live), False, [])
    except UnserializableError as error:
        return Stored(None, False, _unstorable(values, states, live, error))


def _unstorable(values, states, live, error: UnserializableError) -> list[str]:
    """Name the outputs that cannot be stored, each alone."""
    import io

    bad = []
    for name, item in [*values.items(), *((pid[0], state) for pid, state in states.items())]:
        try:
            bundle_pickler(io.BytesIO(), live).dump(item)
        except Exception as exc:
            bad.append(f"{name} ({type(exc).__name__}: {exc})")
    return bad or [f"the outputs together ({error})"]


def escaping_links(root: Path, state_dir: Path, labels: list[str]) -> list[str]:
    """What leads out of the project in the declared output files and folders, checked after
    the cell ran (the cell may have made it): each a symlink (the declared path, a folder on
    its way, or anything inside an output folder) whose target is outside the project, or in
    git's or cellops's own folders. Storing it would copy that file into the cache, and from
    there to the DVC remote."""
    found = []
    for label in labels:
        path = root / label
        for part in [*reversed(path.relative_to(root).parents[:-1]), Path(label)]:
            if (problem := _leaving(root, state_dir, label, root / part)) is not None:
                found.append(problem)
                break
        else:
            if path.is_dir():
                found += [
                    problem
                    for folder, dirs, files in os.walk(path)
                    for name in sorted(dirs + files)
                    if (problem := _leaving(root, state_dir, label, Path(folder) / name))
                ]
    return found


def _leaving(root: Path, state_dir: Path, label: str, path: Path) -> str | None:
    if not path.is_symlink():
        return None
    target = path.resolve()
    inside = target.is_relative_to(root) and not (
        target.is_relative_to(state_dir) or target.is_relative_to(root / ".git")
    )
    if inside:
        return None
    where = "in cellops's or git's files" if target.is_relative_to(root) else "outside the project"
    link = path.relative_to(root).as_posix()
    held = "is" if link == label.rstrip("/") else f"holds {link},"
    return f"--files-out {label} {held} a symlink to {target}, {where}"


def restore_outputs(store: ObjectStore, ref: ObjectRef, namespace: dict[str, Any]) -> Restored:
    """Load everything first, check the live objects can take their states, then apply."""
    bundle = store.get_bundle(ref, namespace)
    targets = []
    for (name, path), (kind, state) in bundle.get("states", {}).items():
        try:
            live = replay.resolve(namespace[name], path)
        except (KeyError, LookupError):
            live = None
        if live is None or not replay.fits(live, kind, state):
            raise CorruptObjectError(
                f"'{name}' is no longer the kind of object the cached step changed"
            )
        targets.append((live, kind, state))
    for live, kind, state in targets:
        replay.apply_state(live, kind, state)
    generators.restore_generators(bundle.get("generators", {}))
    namespace.update({name: replay.rebind(v, namespace) for name, v in bundle["values"].items()})
    return Restored(bundle.get("value"), "value" in bundle)
