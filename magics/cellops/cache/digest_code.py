"""Digests of code (functions, classes, modules) and of objects, and which code is the project's.

The project's code (defined in the notebook, in `__main__`, or in a file under the project root
that is not part of an environment) is a step input: its digest covers what it does, so a
function is digested by its code object, defaults, closure and the globals it reads, and a class
by its attributes. Library code belongs to the environment (the job manifest records package
versions) and is digested by its qualified name. Other objects are digested as pickle would
rebuild them (`__reduce_ex__`), their type as code.

These handlers run inside `hashing.Walker` (`w`): they feed tokens with `w.put`/`w.put_str`
and return None, or a generator yielding `(child, label)` pairs for the walker to digest in turn
(it keeps the stack, so deep code does not recurse in Python). Nothing here reads source files:
the code that counts is the code that is loaded, whatever the file on disk says now.
"""

from __future__ import annotations

import copyreg
import dis
import functools
import io
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import UndigestableError

Children = Iterator[tuple[Any, Any]]

# Class attributes that are not behaviour: the instance dict and weakref slots, the docstring,
# where it was defined, and caches added later (`__slotnames__` appears once copyreg has reduced
# an instance; `_abc_impl` holds ABC caches and cannot be digested).
_SKIP_CLASS_ATTRS = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__module__",
        "__doc__",
        "__slotnames__",
        "_abc_impl",
        "__firstlineno__",
        "__static_attributes__",
    }
)
_GLOBAL_OPS = frozenset(
    dis.opmap[name]
    for name in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME")
    if name in dis.opmap
)
_SLOT_STATE = (dict, type(None))
DESCRIPTORS = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


_STREAMS = (io.FileIO, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper)
_REFUSED = {
    types.GeneratorType: "where it has got to cannot be digested",
    types.CoroutineType: "where it has got to cannot be digested",
    types.AsyncGeneratorType: "where it has got to cannot be digested",
    types.FrameType: "it is part of the running program",
    types.TracebackType: "it holds frames of the running program",
}


class Refusal(Exception):
    """`obj` cannot be digested the same way in every process; hashing names its path."""

    def __init__(self, obj: Any, reason: str):
        super().__init__(reason)
        self.obj, self.reason = obj, reason


def undigestable(name: str, labels: list[Any], refusal: Refusal) -> UndigestableError:
    """The error for a refused part, named by its path from the value (`name`)."""
    path = name + "".join(_label_text(label) for label in labels)
    if len(path) > 200:
        path = f"{path[:90]}…{path[-90:]}"
    kind = type(refusal.obj)
    kind_name = kind.__qualname__ if kind.__module__ == "builtins" else library_name(kind)
    error = UndigestableError(f"`{path}` is a {kind_name} ({refusal.reason})")
    error.path, error.type_name = path, kind_name  # type: ignore[attr-defined]
    return error


def _label_text(label: Any) -> str:
    """Labels: None (the value), an int (an index), a 1-tuple (a key), a list (parts), a str."""
    if label is None:
        return ""
    if type(label) is int:
        return f"[{label}]"
    if type(label) is tuple:
        text = repr(label[0])
        return f"[{text if len(text) <= 60 else text[:57] + '...'}]"
    if type(label) is list:
        return "".join(map(_label_text, label))
    return label


def handler_for(t: type) -> Callable[[Any, Any], Children | None] | None:
    """The handler of code, of what cannot be digested, or None (data: hashing's own)."""
    for kinds, handler in _HANDLERS:
        if issubclass(t, kinds):
            return handler
    reason = _REFUSED.get(t)
    if reason is None and issubclass(t, _STREAMS):
        reason = "an open file or stream"
    socket = sys.modules.get("socket")
    if reason is None and socket is not None and issubclass(t, socket.socket):
        reason = "an open socket"
    return None if reason is None else functools.partial(_refuse, reason=reason)


def _refuse(w: Any, x: Any, reason: str) -> None:  # noqa: ARG001 - the walker calls refusals with (walker, value)
    raise Refusal(x, reason)


def is_library(value: Any, root: Path | None) -> bool:
    """True for modules, functions, builtins and classes of the environment (not inputs).

    False for the project's code, for plain data, and for functions a library made at run time
    (`<locals>` in the qualified name): their closure and defaults hold data, so they are values.
    """
    if isinstance(value, types.ModuleType):
        return not module_is_project(value, root)
    if isinstance(value, types.FunctionType):
        return "<locals>" not in value.__qualname__ and is_library_code(value, root)
    if isinstance(value, type):
        return is_library_code(value, root)
    if isinstance(value, types.BuiltinFunctionType):
        owner = value.__self__
        return owner is None or isinstance(owner, types.ModuleType) or is_library(owner, root)
    if isinstance(value, types.MethodType):
        owner = value.__self__
        return (is_kernel_shell(owner) or is_library(owner, root)) and is_library(
            value.__func__, root
        )
    if isinstance(value, DESCRIPTORS):
        return is_library(value.__objclass__, root)
    if type(value).__name__ == "ufunc" and type(value).__module__ == "numpy":
        return True
    return callable(value) and _is_library_global(value, root)


def _is_library_global(value: Any, root: Path | None) -> bool:
    """A library's callable object that its module holds under its own name (NumPy's
    dispatchers like `np.mean`, lru_cache wrappers): pickle finds it again by that name."""
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    if not isinstance(name, str) or module is None or module_is_project(module, root):
        return False
    found: Any = module
    for part in name.split("."):
        found = getattr(found, part, None)
    return found is value


def is_library_code(obj: Any, root: Path | None) -> bool:
    """Whether a function or class comes from the environment, judged by its `__module__`.

    `__main__`, no module, or a module that is not loaded (cloudpickle rebuilt the code) mean
    the notebook's own code: digested by content, the safe side.
    """
    name = getattr(obj, "__module__", None)
    module = sys.modules.get(name) if isinstance(name, str) else None
    return module is not None and not module_is_project(module, root)


def module_is_project(module: types.ModuleType, root: Path | None) -> bool:
    if module.__name__ == "__main__":
        return True
    if module.__name__.partition(".")[0] == __name__.partition(".")[0]:
        return False  # cellops is the tool, not a step input, even when installed editable
    path = getattr(module, "__file__", None)
    if path is None:
        spec = getattr(module, "__spec__", None)
        if module.__name__ in sys.builtin_module_names or (
            spec is not None and spec.origin in ("built-in", "frozen")
        ):
            return False
        folders = list(getattr(module, "__path__", None) or [])
        if not folders:
            return True  # made in memory (types.ModuleType, exec): the notebook's own
        path = folders[0]  # a namespace package
    return root is not None and is_project_file(os.fspath(path), os.fspath(root))


@functools.lru_cache(maxsize=8192)
def is_project_file(path: str, root: str) -> bool:
    """Under `root`, but not in an environment: a `.venv` often lives inside the project."""
    file, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if not file.is_relative_to(top) or {"site-packages", "dist-packages"} & set(file.parts):
        return False
    if any(file.is_relative_to(prefix) for prefix in _environment_prefixes()):
        return False
    folder = top
    for part in file.relative_to(top).parts[:-1]:
        folder = folder / part
        if part == ".venv" or (folder / "pyvenv.cfg").exists() or (folder / "conda-meta").is_dir():
            return False
    return True


@functools.lru_cache(maxsize=1)
def _environment_prefixes() -> tuple[Path, ...]:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return tuple(Path(os.path.realpath(p)) for p in prefixes if p)


def library_name(obj: Any) -> str:
    """`module.qualname` of library code (for builtins, the module they are bound to)."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    owner = getattr(obj, "__self__", None)
    if module is None and isinstance(owner, types.ModuleType):
        module = owner.__name__
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{module}.{qualname}"


@functools.lru_cache(maxsize=8192)
def global_names(code: types.CodeType) -> tuple[str, ...]:
    """Names the code (and the code nested in it) uses as globals, sorted.

    From the instructions, as cloudpickle does, not `co_names`: that also holds attribute
    names, which cloudpickle does not carry along, so a restored function would differ.
    """
    names = {i.argval for i in dis.get_instructions(code) if i.opcode in _GLOBAL_OPS}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(global_names(const))
    return tuple(sorted(names))


def code_parts(code: types.CodeType) -> tuple:
    """What a code object does; not where it was written (file name, line numbers)."""
    return (
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_code,
        code.co_consts,  # nested code objects come back here as code objects
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        getattr(code, "co_exceptiontable", b""),  # try/except targets (3.11+)
    )


def function(w: Any, f: types.FunctionType) -> Children | None:
    if not is_library_code(f, w.root):
        return None if w.seen(f) else _function_body(w, f)
    if "<locals>" in f.__qualname__:  # a library made it at run time: its closure holds data
        return None if w.seen(f) else _library_function_body(w, f)
    w.put_str(b"#G", library_name(f))
    return None


def _function_body(w: Any, f: types.FunctionType) -> Children:
    """Code, defaults, closure, attributes and the globals read (recursively; a function met
    again, as in recursion, is a back-reference)."""
    w.put_str(b"#F", f"{f.__module__}:{f.__qualname__}")
    yield code_parts(f.__code__), ".__code__"
    yield f.__defaults__, ".__defaults__"
    yield f.__kwdefaults__, ".__kwdefaults__"
    yield f.__closure__ or (), ".__closure__"
    scope = f.__globals__
    present = [name for name in global_names(f.__code__) if name in scope]
    w.put(b"g", len(present))
    for name in present:
        w.put_str(b"s", name)
        yield scope[name], f".__globals__[{name!r}]"
    yield from sorted_attrs(w, f.__dict__)


def _library_function_body(w: Any, f: types.FunctionType) -> Children:
    w.put_str(b"#f", library_name(f))
    yield f.__defaults__, ".__defaults__"
    yield f.__kwdefaults__, ".__kwdefaults__"
    yield f.__closure__ or (), ".__closure__"


def klass(w: Any, cls: type) -> Children | None:
    if is_library_code(cls, w.root):
        w.put_str(b"#G", library_name(cls))
        return None
    return None if w.seen(cls) else _class_body(w, cls)


def _class_body(w: Any, cls: type) -> Children:
    """Qualified name, bases, metaclass and every attribute, sorted by name."""
    w.put_str(b"#C", f"{cls.__module__}:{cls.__qualname__}")
    yield cls.__bases__, ".__bases__"
    yield type(cls), ".__class__"
    names = sorted(name for name in cls.__dict__ if not _implied(cls, name))
    w.put(b"a", len(names))
    for name in names:
        w.put_str(b"s", name)
        yield cls.__dict__[name], f".{name}"


def _implied(cls: type, name: str) -> bool:
    """Skipped, or a slot's descriptor (`__slots__` says it; cloudpickle rebuilds the class
    without them)."""
    if name in _SKIP_CLASS_ATTRS:
        return True
    slots = cls.__dict__.get("__slots__", ())
    slots = (slots,) if isinstance(slots, str) else slots
    return type(cls.__dict__[name]) is types.MemberDescriptorType and name in slots


def module(w: Any, m: types.ModuleType) -> Children | None:
    if not module_is_project(m, w.root):
        w.put_str(b"#M", m.__name__)
        return None
    return None if w.seen(m) else _module_body(w, m)


def _module_body(w: Any, m: types.ModuleType) -> Children:
    """Name, and its code (its own, imported, submodules) and simple data, from memory."""
    w.put_str(b"#P", m.__name__)
    scope = vars(m)
    names = [
        name
        for name in sorted(scope)
        if not (name.startswith("__") and name.endswith("__")) and _module_member(scope[name])
    ]
    w.put(b"a", len(names))
    for name in names:
        w.put_str(b"s", name)
        yield scope[name], f".{name}"


def _module_member(value: Any) -> bool:
    code = (types.FunctionType, type, types.ModuleType, types.BuiltinFunctionType)
    return isinstance(value, code) or _is_simple(value, 0)


def _is_simple(value: Any, depth: int) -> bool:
    if value is None or type(value) in (bool, int, float, complex, str, bytes):
        return True
    if depth > 8:
        return False
    if type(value) in (tuple, list, set, frozenset):
        return all(_is_simple(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(_is_simple(k, depth + 1) and _is_simple(v, depth + 1) for k, v in value.items())
    return False


def builtin(w: Any, b: types.BuiltinFunctionType) -> Children | None:
    if b.__self__ is None or isinstance(b.__self__, types.ModuleType):
        w.put_str(b"#G", library_name(b))
        return None
    return bound(w, b)


def bound(w: Any, obj: Any) -> Children:
    """Bound methods and descriptors: what they call and what they are bound to."""
    if isinstance(obj, types.MethodType):
        w.put(b"#m", 0)
        yield obj.__func__, ".__func__"
        yield obj.__self__, ".__self__"
    elif isinstance(obj, DESCRIPTORS):
        w.put_str(b"#e", obj.__name__)
        yield obj.__objclass__, ".__objclass__"
    else:  # a builtin bound to data ([].append), or a method-wrapper ((1).__add__)
        w.put_str(b"#b", getattr(obj, "__qualname__", obj.__name__))
        yield obj.__self__, ".__self__"


def wrapper(w: Any, obj: Any) -> Children:
    """staticmethod, classmethod, property, cached_property: the functions they wrap."""
    w.put_str(b"#W", type(obj).__qualname__)
    if isinstance(obj, property):
        yield (obj.fget, obj.fset, obj.fdel), ""
    elif isinstance(obj, functools.cached_property):
        yield obj.func, ".func"  # not its lock (3.11)
    else:
        yield obj.__func__, ".__func__"


def code_object(w: Any, code: types.CodeType) -> Children:
    w.put(b"#K", 0)
    yield code_parts(code), ""


def cell(w: Any, c: types.CellType) -> Children | None:
    if w.seen(c):  # closures can share a cell
        return None
    try:
        contents = c.cell_contents
    except ValueError:  # not assigned yet
        w.put(b"#c", 0)
        return None
    w.put(b"#c", 1)
    return one(contents, ".cell_contents")


def one(child: Any, label: Any) -> Children:
    yield child, label


def instance(w: Any, obj: Any) -> Children | None:
    if is_kernel_shell(obj):  # `get_ipython()` in a notebook function: the environment
        w.put_str(b"#k", library_name(type(obj)))
        return None
    return None if w.seen(obj) else reduce_body(w, obj)


def is_kernel_shell(obj: Any) -> bool:
    """The IPython shell running the notebook: part of the environment, never a step input."""
    return any(
        cls.__name__ == "InteractiveShell" and cls.__module__.startswith("IPython.")
        for cls in type(obj).__mro__
    )


def _named_global(w: Any, obj: Any, name: str) -> Children:
    """A global pickle names: the environment's by its name; the project's by its content."""
    module_name = getattr(obj, "__module__", None) or type(obj).__module__  # Ellipsis
    w.put_str(b"g", f"{module_name}.{name}")
    module = sys.modules.get(module_name)
    if module is not None and not module_is_project(module, w.root):
        w.put(b"-", 0)
        return
    attrs = getattr(obj, "__dict__", None)  # e.g. lru_cache: its `__wrapped__` counts
    if attrs is None:
        raise Refusal(obj, "the project's code, named but with no content to digest")
    yield from sorted_attrs(w, attrs)


def reduce_body(w: Any, obj: Any) -> Children:
    """Type, then `__reduce_ex__(4)`: callable, args, state (attribute dicts in name order:
    the order attributes were set in, e.g. by set_params, means nothing), items."""
    w.put(b"#O", 0)
    yield type(obj), ".__class__"
    reducer = copyreg.dispatch_table.get(type(obj))
    try:
        rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(4)
    except Exception as exc:
        raise Refusal(obj, f"pickle cannot reduce it ({exc})") from exc
    if isinstance(rv, str):  # a global, pickled by name
        yield from _named_global(w, obj, rv)
        return
    if type(rv) is not tuple or not 2 <= len(rv) <= 6 or not callable(rv[0]):
        raise Refusal(obj, f"its __reduce_ex__ gave nothing usable ({type(rv).__name__})")
    func, args, state, items, pairs, setter = rv + (None,) * (6 - len(rv))
    if state is not None and _discards_state(getattr(type(obj), "__setstate__", None)):
        state = None  # what pickle restores has none of it (sklearn's Bunch)
    w.put_str(b"r", "".join("-+"[x is not None] for x in (state, items, pairs, setter)))
    yield func, ".<reduce>"
    yield args, ".<args>"
    if _is_slot_state(state):  # (__dict__, slot values): where an attribute lives is not content
        state = {**(state[0] or {}), **(state[1] or {})}
    if type(state) is dict:
        w.put(b"D", 0)
        yield from sorted_attrs(w, state)
    elif state is not None:
        w.put(b"v", 0)
        yield state, ".<state>"
    if items is not None:
        items = list(items)
        w.put(b"l", len(items))
        yield from ((item, i) for i, item in enumerate(items))
    if pairs is not None:
        pairs = list(pairs)
        w.put(b"d", len(pairs))
        for key, item in pairs:
            if not w.atom(key):
                yield key, "<key>"
            if not w.atom(item):
                yield item, (key,)
    if setter is not None:
        yield setter, ".<state setter>"


def _is_slot_state(state: Any) -> bool:
    if type(state) is not tuple or len(state) != 2 or type(state[0]) not in _SLOT_STATE:
        return False
    if type(state[1]) not in _SLOT_STATE:
        return False
    first, second = state[0] or {}, state[1] or {}  # the same attribute in both: the same value
    return all(first[key] is second[key] for key in first.keys() & second.keys())


def _discards_state(setstate: Any) -> bool:
    """A Python `__setstate__` whose body does nothing (only `return None`). Not Cython's:
    its functions carry a stand-in `__code__` that looks empty."""
    return isinstance(setstate, types.FunctionType) and _does_nothing(setstate.__code__)


@functools.lru_cache(maxsize=1024)
def _does_nothing(code: types.CodeType) -> bool:
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_CONST", "RETURN_CONST") and instruction.argval is None:
            continue
        if instruction.opname not in ("RESUME", "NOP", "RETURN_VALUE", "CACHE"):
            return False
    return True


def sorted_attrs(w: Any, attrs: dict) -> Children:
    """An attribute dict in name order: the order attributes were set in has no meaning."""
    if not all(type(key) is str for key in attrs):
        w.put(b"d", len(attrs))
        for key, value in list(attrs.items()):
            if not w.atom(key):
                yield key, "<key>"
            if not w.atom(value):
                yield value, (key,)
        return
    w.put(b"A", len(attrs))
    for key in sorted(attrs):
        w.put_str(b"s", key)
        if not w.atom(attrs[key]):
            yield attrs[key], f".{key}"


_HANDLERS: tuple[tuple[Any, Callable[[Any, Any], Children | None]], ...] = (
    (types.FunctionType, function),
    (type, klass),
    (types.ModuleType, module),
    (types.BuiltinFunctionType, builtin),
    ((types.MethodType, types.MethodWrapperType, *DESCRIPTORS), bound),
    ((staticmethod, classmethod, property, functools.cached_property), wrapper),
    (types.CodeType, code_object),
    (types.CellType, cell),
)
