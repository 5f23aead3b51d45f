"""Pinned pip requirements for a model, read from the running environment.

MLflow infers a model's requirements by loading it again in a subprocess and watching what it
imports: about 95% of `log_model`'s time. cellops already holds the model, so it walks the
object (its attributes, lists, dicts and the functions it keeps) to find the packages of the
classes in it, and pins those, the packages they require directly, and the serializer, at the
versions installed here. The result reproduces this environment for that model.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import re
import sys
import types
from collections.abc import Iterable
from typing import Any

# Top-level modules whose distribution has another name.
KNOWN_DISTRIBUTIONS = {"sklearn": "scikit-learn", "skops": "skops", "PIL": "pillow"}
SKIPPED_ROOTS = {"builtins", "__main__", "cellops", "mlflow", "_abc", "abc"}
MAX_OBJECTS = 20000


def module_roots(obj: Any) -> set[str]:
    """The top-level modules of every class (and function) reachable from `obj`."""
    roots: set[str] = set()
    seen: set[int] = set()
    stack = [obj]
    while stack and len(seen) < MAX_OBJECTS:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (str, bytes, int, float, bool, type(None))):
            continue
        if isinstance(item, (types.FunctionType, types.BuiltinFunctionType, type)):
            roots.add((getattr(item, "__module__", None) or "builtins").split(".")[0])
            continue
        if isinstance(item, types.ModuleType):
            roots.add(item.__name__.split(".")[0])
            continue
        roots.add(type(item).__module__.split(".")[0])
        if type(item).__module__.split(".")[0] in ("numpy", "pandas", "scipy"):
            continue  # their content holds no other library's objects worth the walk
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        state = getattr(item, "__dict__", None)
        if isinstance(state, dict):
            stack.extend(state.values())
    return {r for r in roots if r and r not in SKIPPED_ROOTS and r not in _stdlib()}


@functools.lru_cache(maxsize=1)
def _stdlib() -> frozenset[str]:
    return frozenset(sys.stdlib_module_names) | {"_" + n for n in sys.stdlib_module_names}


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@functools.lru_cache(maxsize=256)
def distribution_for(root: str) -> str | None:
    """The installed distribution providing top-level module `root`, or None."""
    name = KNOWN_DISTRIBUTIONS.get(root, root)
    try:
        metadata.version(name)
        return name
    except metadata.PackageNotFoundError:
        pass
    found = _packages_distributions().get(root)
    return found[0] if found else None


@functools.lru_cache(maxsize=256)
def _direct_requirements(distribution: str) -> tuple[str, ...]:
    """The distributions `distribution` requires (no extras, markers true here)."""
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return ()
    names = []
    for line in requires:
        requirement, _, marker = line.partition(";")
        if "extra" in marker:
            continue
        if marker.strip() and not _marker_holds(marker):
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match:
            names.append(match.group(1))
    return tuple(names)


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import Marker

        return Marker(marker).evaluate()
    except Exception:
        return True


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=512)
def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pinned(distributions: Iterable[str]) -> list[str]:
    """`name==version` for each installed distribution, sorted, without duplicates."""
    pins: dict[str, str] = {}
    for name in distributions:
        version = _version(name)
        if version is not None:
            pins.setdefault(_canonical(name), f"{name}=={version}")
    return [pins[k] for k in sorted(pins)]


def model_requirements(
    model: Any, serializer: str = "cloudpickle", extra: Iterable[str] = ()
) -> list[str]:
    """Pinned requirements for `model`: its libraries, what they need, and the serializer."""
    found = {d for d in map(distribution_for, module_roots(model)) if d}
    found.add(serializer)
    found.update(extra)
    needed = set(found)
    for name in found:
        needed.update(_direct_requirements(name))
    needed.discard("mlflow")  # MLflow adds its own pin
    return pinned(needed)
