"""Drift engines, found by name: cellops' native engine, the Evidently adapter, and any engine
another package registers under the `cellops.drift_engines` entry-point group::

    [project.entry-points."cellops.drift_engines"]
    spark = "mypackage.drift:SparkEngine"   # a subclass of cellops' DriftEngine

The built-in engines are known without the package metadata (an uninstalled checkout works);
only the chosen engine's module is imported, so listing the names never imports Evidently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import CellopsError, CellopsUsageError

if TYPE_CHECKING:
    from .base import DriftEngine

GROUP = "cellops.drift_engines"
BUILTIN = {
    "native": "cellops.monitoring.engines.native:NativeEngine",
    "evidently": "cellops.monitoring.engines.evidently:EvidentlyEngine",
}


def _registered() -> dict[str, object]:
    """The group's entry points by (lower-case) name; the built-ins' own win over them."""
    from importlib.metadata import entry_points

    found: dict[str, object] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name.strip().lower(), entry)
    return found


def engine_names() -> list[str]:
    """The engines one can ask for: the built-ins first, then the registered ones."""
    return [*BUILTIN, *sorted(set(_registered()) - set(BUILTIN))]


def get_engine(name: str) -> DriftEngine:
    """The engine called `name`, or a usage error listing the known ones."""
    from importlib import import_module

    from .base import DriftEngine

    key = str(name).strip().lower()
    if key in BUILTIN:
        module, _, attribute = BUILTIN[key].partition(":")
        engine_class = getattr(import_module(module), attribute)
    else:
        registered = _registered()
        if key not in registered:
            raise CellopsUsageError(
                f"unknown drift engine {name!r}; choose one of: {', '.join(engine_names())}"
            )
        engine_class = registered[key].load()  # type: ignore[attr-defined]
    if not (isinstance(engine_class, type) and issubclass(engine_class, DriftEngine)):
        raise CellopsError(
            f"the drift engine {key!r} registered under {GROUP} is {engine_class!r}, not a "
            "subclass of cellops.monitoring.engines.base.DriftEngine"
        )
    return engine_class()


def profile_engines() -> list[str]:
    """The built-in engines that can work from a stored profile (for error messages; importing
    an engine's module never imports its heavy library)."""
    return [name for name in BUILTIN if not get_engine(name).needs_raw_reference]
