"""Putting a step's effects back on a cache hit, so the notebook goes on as after a real run.

- An input the step changed in place (`rows.append(1)`, `clf.fit(X, y)`, `rng.random()`) is
  an output too. Where its type allows, its new state is put back *into the live object*, so
  every other name that holds it (a dict, a Pipeline) sees the change as after a plain run;
  otherwise the name is bound to the restored value.
- A function or class the step defined is restored by value; its functions are bound again to
  the notebook's live globals, so it reads the notebook's current values as the original did.
"""

from __future__ import annotations

import sys
import types
from collections import deque
from itertools import islice
from typing import Any

_ATOMS = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range)


def is_shareable(value: Any) -> bool:
    """Whether outputs may hold this object by reference (immutable atoms are just values)."""
    return not isinstance(value, _ATOMS)


def _numpy_kind(value: Any) -> str | None:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    if isinstance(value, numpy.random.RandomState):
        return "random_state"
    if isinstance(value, numpy.random.Generator):
        return "generator"
    if isinstance(value, numpy.ndarray):
        return "ndarray" if value.flags.writeable and value.base is None else None
    return None


def kind_of(value: Any) -> str | None:
    """How a live object can take back a stored state, or None if it cannot."""
    kind = _numpy_kind(value)
    if kind is not None:
        return kind
    if isinstance(value, list) and (type(value) is list or hasattr(value, "__dict__")):
        return "list"
    if isinstance(value, dict) and type(value).__module__ in ("builtins", "collections"):
        return "dict"
    if type(value) in (set, bytearray):
        return type(value).__name__
    if _plain_instance(value):
        return "attributes"
    return None


def state_of(value: Any) -> tuple[str, Any] | None:
    """(kind, state) to put back into the live object on a hit, or None if it cannot be."""
    kind = kind_of(value)
    if kind == "random_state":
        return kind, value.get_state(legacy=False)
    if kind == "generator":
        return kind, value.bit_generator.state
    if kind == "ndarray":
        return kind, value.copy()
    if kind == "list":
        return kind, (list(value), dict(getattr(value, "__dict__", {})))
    if kind == "dict":
        return kind, dict(value)
    if kind in ("set", "bytearray"):
        return kind, type(value)(value)
    if kind == "attributes":
        return kind, dict(vars(value))
    return None


def _plain_instance(value: Any) -> bool:
    """An object whose whole state is its `__dict__` (most estimators and user classes)."""
    if isinstance(value, (type, types.ModuleType, types.FunctionType)):
        return False
    if not hasattr(value, "__dict__") or _is_pandas(value):
        return False
    return all("__slots__" not in vars(cls) for cls in type(value).__mro__[:-1])


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas.")


def apply_state(live: Any, kind: str, state: Any) -> None:
    if kind == "random_state":
        live.set_state(state)
    elif kind == "generator":
        live.bit_generator.state = state
    elif kind == "ndarray":
        live[...] = state
    elif kind == "list":
        items, attributes = state
        live[:] = items
        if attributes:
            vars(live).clear()
            vars(live).update(attributes)
    elif kind == "dict" or kind == "set":
        live.clear()
        live.update(state)
    elif kind == "bytearray":
        live[:] = state
    elif kind == "attributes":
        vars(live).clear()
        vars(live).update(state)
    else:
        raise ValueError(f"unknown state kind {kind!r}")


def fits(live: Any, kind: str, state: Any) -> bool:
    """Whether the live object can take the stored state (same shape, for arrays)."""
    if kind_of(live) != kind:
        return False
    return kind != "ndarray" or (live.shape == state.shape and live.dtype == state.dtype)


def rebind(value: Any, namespace: dict[str, Any]) -> Any:
    """A restored notebook function (or class's methods) reading the live notebook globals."""
    module = namespace.get("__name__", "__main__")
    if isinstance(value, types.FunctionType) and value.__module__ == module:
        return _rebound_function(value, namespace)
    if isinstance(value, type) and value.__module__ == module:
        for attribute, member in list(vars(value).items()):
            rebound = _rebound_member(member, namespace, module)
            if rebound is not member:
                setattr(value, attribute, rebound)
    return value


def _rebound_member(member: Any, namespace: dict[str, Any], module: str) -> Any:
    if isinstance(member, types.FunctionType) and member.__module__ == module:
        return _rebound_function(member, namespace)
    if isinstance(member, (staticmethod, classmethod)):
        inner = member.__func__
        if isinstance(inner, types.FunctionType) and inner.__module__ == module:
            return type(member)(_rebound_function(inner, namespace))
    return member


def _rebound_function(function: types.FunctionType, namespace: dict[str, Any]):
    if function.__globals__ is namespace:
        return function
    rebound = types.FunctionType(
        function.__code__,
        namespace,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    rebound.__kwdefaults__ = function.__kwdefaults__
    rebound.__qualname__ = function.__qualname__
    rebound.__doc__ = function.__doc__
    rebound.__annotations__ = function.__annotations__
    rebound.__dict__.update(function.__dict__)
    rebound.__module__ = function.__module__
    return rebound


# -- the objects inside the notebook's values ---------------------------------------------------

MAX_REACHABLE = 10_000  # objects walked per value; beyond, only the value itself is shared

Path = tuple  # steps from a notebook value to an object inside it: ("a", name) | ("i", index)


def reachable(value: Any) -> list[tuple[Path, Any]]:
    """The containers and plain instances inside `value` (itself first), each with its path:
    through attribute dicts, list and tuple items and dict values under str or int keys.
    A Pipeline's steps and the PCA inside them are reached; arrays and frames are leaves.
    At most MAX_REACHABLE objects are looked at (a list of a million numbers is not walked)."""
    found: list[tuple[Path, Any]] = []
    seen: set[int] = set()
    queue: deque[tuple[Path, Any]] = deque([((), value)])
    while queue and len(seen) < MAX_REACHABLE:
        path, obj = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = kind_of(obj)
        if kind in ("attributes", "list", "dict") or (kind is not None and path == ()):
            found.append((path, obj))
        if kind == "attributes" or (kind == "list" and hasattr(obj, "__dict__")):
            children = [(("a", k), v) for k, v in vars(obj).items() if type(k) is str]
        elif kind == "list" or isinstance(obj, tuple):
            children = [(("i", i), v) for i, v in islice(enumerate(obj), MAX_REACHABLE)]
        elif kind == "dict":
            children = [(("k", k), v) for k, v in obj.items() if type(k) in (str, int)]
        else:
            continue
        queue.extend(
            ((*path, step), child)
            for step, child in children
            if isinstance(child, tuple) or is_shareable(child)
        )
    return found


def resolve(value: Any, path: Path) -> Any:
    """The object at `path` inside `value`; LookupError when it is not there."""
    for step, key in path:
        try:
            value = vars(value)[key] if step == "a" else value[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise LookupError(f"{step}:{key!r}") from exc
    return value
