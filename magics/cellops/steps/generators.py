"""The global random generators (NumPy's legacy `np.random.*`, Python's `random`) and steps.

A step that draws from a global generator depends on the state it started from, which its
cache key cannot see. So the engine notes, around each executed step, which generators moved;
the cache entry then holds a *check* per generator, verified before a hit, and the states after
the step, restored on a hit so later cells draw the same numbers as after a real run.

What the check compares depends on where the generator's state came from in this process:

- **seeded** (`np.random.seed(1)`, `random.seed(1)`, `set_state`/`setstate` since cellops
  loaded, or anything before cellops loaded that it cannot rule out): the exact state. Seed 1
  never reuses the draws of seed 0.
- **entropy** (never seeded: the state Python and NumPy draw from the OS at import): any
  entropy state is as good as another, as in a plain run, so the check is the word "entropy".
  Without this, an unseeded notebook would never be restored in a new kernel, since
  scikit-learn's estimators draw from NumPy's generator whenever `random_state` is None.

To know which, the seed functions are wrapped once per process (`track_seeding`), NumPy's as
soon as `numpy.random` is imported. A step that seeds a generator before drawing from it does
not depend on the state it started from at all.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import re
import sys
from dataclasses import dataclass
from typing import Any

from ..cache.hashing import hash_strings

ENTROPY = "entropy"
_SEEDING = re.compile(r"\b(seed|set_?state)\s*\(")
_SEEDERS = {"random": ("seed", "setstate"), "numpy": ("seed", "set_state")}
_RANDOM_DRAWS = (
    "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample",
    "gauss", "normalvariate", "lognormvariate", "expovariate", "vonmisesvariate",
    "gammavariate", "betavariate", "paretovariate", "weibullvariate", "triangular",
    "getrandbits", "randbytes",
)  # fmt: skip

_seeded = {"random": True, "numpy": True}  # until tracking starts: assume seeded (strict)
_watches: list[GeneratorWatch] = []
_tracking = False


# -- the states -----------------------------------------------------------------------------


def _numpy_state() -> Any | None:
    numpy = sys.modules.get("numpy")  # never import NumPy for a step that does not use it
    if numpy is None or "numpy.random" not in sys.modules:
        return None
    return numpy.random.mtrand._rand.get_state(legacy=False)


def _set_numpy_state(state: Any) -> None:
    import numpy

    numpy.random.mtrand._rand.set_state(state)


def _random_state() -> Any:
    import random

    return random._inst.getstate()


def _set_random_state(state: Any) -> None:
    import random

    random._inst.setstate(state)


_GENERATORS = {
    "numpy": (_numpy_state, _set_numpy_state),
    "random": (_random_state, _set_random_state),
}


def _state_digest(name: str, state: Any) -> str:
    if state is None:
        return ""
    if name == "numpy":
        keys = state["state"]["key"]
        rest = {k: v for k, v in state.items() if k != "state"}
        return hash_strings("numpy", repr(sorted(rest.items())), str(state["state"]["pos"]),
                            keys.tobytes().hex())  # fmt: skip
    return hash_strings("random", repr(state))


def _check_token(name: str, state: Any) -> str:
    """What a hit must match: the exact state of a seeded generator, any entropy state."""
    if state is not None and not _seeded[name]:
        return ENTROPY
    return _state_digest(name, state)


def generator_states() -> dict[str, Any]:
    """The states of the global generators now (NumPy's only when NumPy is imported)."""
    return {name: get() for name, (get, _set) in _GENERATORS.items()}


def changed_generators(checks: dict[str, str]) -> list[str]:
    now = generator_states()
    return [name for name, token in checks.items() if _check_token(name, now.get(name)) != token]


def restore_generators(states: dict[str, Any]) -> None:
    for name, state in states.items():
        _GENERATORS[name][1](state)


# -- where a state came from -------------------------------------------------------------------


def track_seeding(earlier_code: list[str] | None) -> None:
    """Wrap the seed functions, once per process. `earlier_code` is the source of what ran
    before cellops loaded (a kernel's earlier cells), or None when unknown: a generator counts
    as never seeded only if it is known that nothing seeded it."""
    global _tracking
    if _tracking:
        return
    _tracking = True
    unseeded = earlier_code is not None and not any(
        "seed" in c or "state" in c for c in earlier_code
    )
    import random

    _seeded["random"] = not unseeded
    _wrap_seeders(random, "random")
    if "numpy.random" in sys.modules:
        _seeded["numpy"] = not unseeded
        _wrap_numpy(sys.modules["numpy.random"])
    else:
        _seeded["numpy"] = False  # imported later: from the OS, until the notebook seeds it
        sys.meta_path.insert(0, _AfterImport("numpy.random", _wrap_numpy))


def _wrap_numpy(module: Any) -> None:
    _wrap_seeders(module, "numpy")
    _wrap_seeders(module.mtrand, "numpy")


def _wrap_seeders(module: Any, name: str) -> None:
    for attribute in _SEEDERS[name]:
        original = getattr(module, attribute, None)
        if original is None or getattr(original, "_cellops_seeder", False):
            continue

        @functools.wraps(original)
        def seeder(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            explicit = bool(args and args[0] is not None) or any(
                v is not None for v in kwargs.values()
            )
            for watch in _watches:
                watch.on_seed(name)
            result = _original(*args, **kwargs)
            _seeded[name] = explicit  # seed(None) draws from the OS again
            return result

        seeder._cellops_seeder = True  # type: ignore[attr-defined]
        setattr(module, attribute, seeder)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `callback(module)` once the module `name` has been imported."""

    def __init__(self, name: str, callback: Any):
        self.name, self.callback, self._finding = name, callback, False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:  # noqa: ARG002 - importlib's finder protocol
        if fullname != self.name or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        original, callback = loader.exec_module, self.callback

        def exec_module(module: Any) -> None:
            original(module)
            callback(module)

        loader.exec_module = exec_module
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        return spec


# -- around a step --------------------------------------------------------------------------


@dataclass
class GeneratorUse:
    before: dict[str, str]  # generator -> check token of its state before the step
    after: dict[str, Any]  # generator -> its state after the step, restored on a hit


class GeneratorWatch:
    """The global generators' states around a step.

    Some libraries draw from Python's `random` when they are imported (rich does, and
    scikit-learn imports it): when `random` moved only while the step imported new modules, and
    the step called none of `random`'s functions, the move is put down to the imports.
    """

    def __init__(self) -> None:
        self.before = generator_states()
        self._digests = {name: _state_digest(name, s) for name, s in self.before.items()}
        self._tokens = {name: _check_token(name, s) for name, s in self.before.items()}
        self.seeded_first: set[str] = set()
        self.drawn: set[str] = set()
        self._modules = len(sys.modules)
        self._patched: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> GeneratorWatch:
        import random

        _watches.append(self)
        for attribute in _RANDOM_DRAWS:
            self._wrap_draw(random, attribute)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self in _watches:
            _watches.remove(self)
        for module, attribute, original in reversed(self._patched):
            setattr(module, attribute, original)
        self._patched.clear()

    def on_seed(self, name: str) -> None:
        if _state_digest(name, _GENERATORS[name][0]()) == self._digests[name]:
            self.seeded_first.add(name)  # seeded before any draw: the start does not matter

    def _wrap_draw(self, module: Any, attribute: str) -> None:
        """Note calls of `random`'s functions while the step runs. A module imported meanwhile
        may keep the wrapper: it only ever delegates."""
        original = getattr(module, attribute, None)
        if original is None:
            return

        @functools.wraps(original)
        def draw(*args: Any, **kwargs: Any) -> Any:
            if "random" not in self.drawn and not _importing():
                self.drawn.add("random")
            return original(*args, **kwargs)

        setattr(module, attribute, draw)
        self._patched.append((module, attribute, original))

    def use(self) -> GeneratorUse:
        """Which global generators the step advanced or reseeded, and their states now."""
        after = generator_states()
        imported = len(sys.modules) > self._modules
        used = GeneratorUse({}, {})
        for name, state in after.items():
            if _state_digest(name, state) == self._digests[name]:
                continue
            if name == "random" and imported and not self.drawn and not self.seeded_first:
                continue  # moved by a library's import, not by the step's own draws
            used.after[name] = state
            if name not in self.seeded_first:
                used.before[name] = self._tokens[name]
        return used


def _importing() -> bool:
    """Whether this call comes from a module being imported (a library drawing at import)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
