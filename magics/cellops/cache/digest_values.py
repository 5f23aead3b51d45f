"""The structural value digest: a walker that feeds self-delimiting tokens into one xxh3.

See `hashing` for what the digest promises. Containers in order; sets by sorted element
digests; NumPy and pandas by raw buffers in C order; objects as pickle would rebuild them
(`__reduce_ex__`), with attribute dicts in name order; the project's functions, classes and
modules by their loaded code (`digest_code`). The second meeting with the same mutable object
feeds a back-reference, as pickle preserves sharing; the walker keeps its own stack, so deep
values do not hit the recursion limit.
"""

from __future__ import annotations

import functools
import operator
import struct
import sys
import types
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import compress, repeat
from pathlib import Path
from typing import Any

import xxhash

from . import digest_code as _code

_CHUNK = 1 << 20

_Q = struct.Struct("<q").pack
_D = struct.Struct("<d").pack
_DD = struct.Struct("<dd").pack
_I64 = 1 << 63
_SMALL = 16  # lists, tuples and dicts this long are digested as typed vectors
_STR_CHUNK = 1 << 16  # strings per chunk of a vector
_MAX_DEPTH = 10_000
_VECTOR_CODES = {str: 1, float: 2, int: 3}  # other elements (0) are walked one by one


def _int(h: xxhash.xxh3_128, v: int) -> None:
    if -_I64 <= v < _I64:
        h.update(b"i" + _Q(v))
    else:  # not str(): Python refuses to print ints of more than 4300 digits
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        h.update(b"I" + _Q(len(raw)) + raw)


# Atoms: a tag byte, then fixed-size or length-prefixed content. Not memoized: pickle does not
# keep their identity (interning differs between processes). A float by its bits: -0.0 is not
# 0.0, and a NaN is the NaN pickle restores. Strings with lone surrogates too.
_ATOMS: dict[type, Callable[[xxhash.xxh3_128, Any], Any]] = {
    type(None): lambda h, v: h.update(b"N"),  # noqa: ARG005 - every atom digester takes (hasher, value)
    bool: lambda h, v: h.update(b"T" if v else b"F"),
    int: _int,
    float: lambda h, v: h.update(b"f" + _D(v)),
    complex: lambda h, v: h.update(b"c" + _DD(v.real, v.imag)),
    str: lambda h, v: _put_bytes(h, b"s", v.encode("utf-8", "surrogatepass")),
    bytes: lambda h, v: _put_bytes(h, b"b", v),
}


def _put_bytes(h: xxhash.xxh3_128, tag: bytes, raw: bytes) -> None:
    if len(raw) < 4096:
        h.update(tag + _Q(len(raw)) + raw)
    else:
        h.update(tag + _Q(len(raw)))
        h.update(raw)


class _Sub:
    """Asks the walker to digest `value` apart (a set element) and send back its digest."""

    __slots__ = ("value", "label")

    def __init__(self, value: Any, label: Any):
        self.value, self.label = value, label


class Walker:
    """One digest. Handlers feed tokens and return None, or a generator yielding
    `(child, label)` pairs for `run` to digest in turn (labels build the error path)."""

    def __init__(self, root: Path | None):
        self.h = xxhash.xxh3_128()
        self.root = root
        self.layers: list[dict[int, int]] = [{}]  # id -> visit index; one layer per set element
        self.kept: list[list[Any]] = [[]]  # keeps memoized objects alive: ids are not reused
        self.handlers: dict[type, Callable[[Any], Iterator | None]] = {
            kind: functools.partial(self._atom, encode) for kind, encode in _ATOMS.items()
        }

    def put(self, tag: bytes, n: int) -> None:
        self.h.update(tag + _Q(n))

    def put_str(self, tag: bytes, text: str) -> None:
        raw = text.encode("utf-8", "surrogatepass")
        self.h.update(tag + _Q(len(raw)) + raw)

    def atom(self, x: Any) -> bool:
        """Feeds `x` if it is an atom, or a short list, tuple or dict of atoms, as their
        handlers would: the commonest values make no round trip through `run`."""
        t = type(x)
        if t is str and len(x) < 4096:  # the commonest atoms, inline
            raw = x.encode("utf-8", "surrogatepass")
            self.h.update(b"s" + _Q(len(raw)) + raw)
        elif t is int and -_I64 <= x < _I64:
            self.h.update(b"i" + _Q(x))
        elif t is float:
            self.h.update(b"f" + _D(x))
        elif t in _ATOMS:
            _ATOMS[t](self.h, x)
        elif (t is list or t is tuple or t is dict) and len(x) < _SMALL:
            return self._leaf(x, t)
        else:
            return False
        return True

    def _leaf(self, x: list | tuple | dict, t: type) -> bool:
        for item in x.values() if t is dict else x:
            if type(item) not in _ATOMS:
                return False
        if t is dict and any(type(key) not in _ATOMS for key in x):
            return False
        if t is not tuple and self.seen(x):
            return True
        self.put(b"#d" if t is dict else b"#l" if t is list else b"#t", len(x))
        for item in x.items() if t is dict else ((item,) for item in x):
            for part in item:
                self.atom(part)
        return True

    def _atom(self, encode: Callable[[xxhash.xxh3_128, Any], Any], x: Any) -> None:
        encode(self.h, x)

    def seen(self, obj: Any) -> bool:
        """Feeds a back-reference if `obj` was met before (sharing, cycles); else remembers it."""
        key, layers = id(obj), self.layers
        for up in range(len(layers)):  # mostly one layer: outside any set
            index = layers[-1 - up].get(key)
            if index is not None:
                self.h.update(b"R" + _Q(up) + _Q(index))
                return True
        layer = layers[-1]
        layer[key] = len(layer)
        self.kept[-1].append(obj)
        return False

    def run(self, value: Any, name: str) -> str:
        stack: list[tuple[Iterator, Any, Any]] = []  # generator, its label, its object
        subs: list[tuple[int, xxhash.xxh3_128]] = []  # stack height and outer hash of each _Sub
        handlers, pending, reply = self.handlers, (value, None), None
        child: Any = value
        label: Any = None
        visiting = False
        try:
            while True:
                if pending is not None:
                    if type(pending) is _Sub:
                        subs.append((len(stack), self.h))
                        self.h = xxhash.xxh3_128()
                        self.layers.append({})
                        self.kept.append([])
                        pending = (pending.value, pending.label)
                    child, label = pending
                    pending, visiting = None, True
                    handler = handlers.get(type(child))
                    if handler is None:
                        handler = handlers[type(child)] = self._handler(type(child))
                    gen = handler(child)
                    visiting = False
                    if gen is None:
                        reply = self._close(subs) if subs and subs[-1][0] == len(stack) else None
                    elif len(stack) >= _MAX_DEPTH:
                        raise _code.Refusal(child, f"nested deeper than {_MAX_DEPTH} levels")
                    else:
                        stack.append((gen, label, child))
                        reply = None
                if not stack:
                    return self.h.hexdigest()
                try:
                    pending = stack[-1][0].send(reply)
                except StopIteration:
                    stack.pop()
                    reply = self._close(subs) if subs and subs[-1][0] == len(stack) else None
        except Exception as exc:
            path = [entry[1] for entry in stack] + ([label] if visiting else [])
            if isinstance(exc, _code.Refusal):
                raise _code.undigestable(name, path, exc) from exc.__cause__
            obj = child if visiting or not stack else stack[-1][2]
            failed = _code.Refusal(obj, f"digesting it failed ({type(exc).__name__}: {exc})")
            raise _code.undigestable(name, path, failed) from exc

    def _close(self, subs: list) -> tuple[bytes, list[Any]]:
        _, outer = subs.pop()
        digest, self.h = self.h.digest(), outer
        self.layers.pop()
        return digest, self.kept.pop()

    def _handler(self, t: type) -> Callable[[Any], Iterator | None]:
        """The handler for values of type `t` (found once per digest and type)."""
        exact = {
            tuple: self._tuple,
            list: self._list,
            dict: self._dict,
            set: self._set,
            frozenset: self._set,
            bytearray: self._bytearray,
            types.MappingProxyType: self._mappingproxy,
        }.get(t)
        if exact is not None:
            return exact
        code_handler = _code.handler_for(t)
        if code_handler is not None:
            return functools.partial(code_handler, self)
        np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
        if np is not None:
            if issubclass(t, np.ndarray):
                return self._ndarray
            if issubclass(t, np.generic):
                return self._np_scalar
            if issubclass(t, np.dtype):
                return lambda dt: self.put_str(b"#y", _dtype_token(dt))
        if pd is not None and hasattr(pd, "DataFrame"):
            for kind, handler in (
                (pd.DataFrame, self._frame),
                (pd.Series, self._series),
                (pd.Index, self._index),
                (pd.api.extensions.ExtensionArray, self._extension_array),
            ):
                if issubclass(t, kind):
                    return handler
        return functools.partial(_code.instance, self)

    # Containers: not memoized when immutable (tuple, frozenset), as pickle would not share them.
    def _tuple(self, x: tuple) -> Iterator:
        return self._sequence(x, b"#t", b"#u")

    def _list(self, x: list) -> Iterator | None:
        return None if self.seen(x) else self._sequence(x, b"#l", b"#v")

    def _sequence(self, x: list | tuple, tag: bytes, vector_tag: bytes) -> Iterator:
        if len(x) >= _SMALL:
            self.put(vector_tag, len(x))
            yield from self._vector(x)
            return
        self.put(tag, len(x))
        for i, item in enumerate(x):
            if not self.atom(item):
                yield item, i

    def _dict(self, d: dict) -> Iterator | None:
        return None if self.seen(d) else self._dict_body(d)

    def _dict_body(self, d: dict) -> Iterator:
        if len(d) >= _SMALL:  # in insertion order: it can be observed
            keys = list(d)
            self.put(b"#D", len(keys))
            yield from self._vector(keys, lambda i: "<key>")  # noqa: ARG005 - _vector calls it with each index
            yield from self._vector(list(d.values()), lambda i: (keys[i],))
            return
        self.put(b"#d", len(d))
        for key, item in list(d.items()):
            if not self.atom(key):
                yield key, "<key>"
            if not self.atom(item):
                yield item, (key,)

    def _bytearray(self, x: bytearray) -> None:
        if not self.seen(x):
            self.put(b"#B", len(x))
            self.h.update(x)

    def _mappingproxy(self, x: types.MappingProxyType) -> Iterator:
        self.put(b"#p", 0)
        return self._dict_body(x)  # type: ignore[arg-type]

    def _set(self, s: set | frozenset) -> Iterator | None:
        return None if type(s) is set and self.seen(s) else self._set_body(s)

    def _set_body(self, s: set | frozenset) -> Iterator:
        """Order-free: sorted strings or ints, else the sorted digests of the elements, each
        digested apart. Objects first met inside an element are then remembered in sorted
        order (unless two elements digest alike, when which comes first is arbitrary)."""
        items = list(s)
        self.put(b"#s" if type(s) is set else b"#z", len(items))
        kinds = set(map(type, items))
        if kinds == {str}:
            self.h.update(b"\x01")
            self._strs(sorted(items))
            return
        if kinds == {int}:
            self.h.update(b"\x02")
            for v in sorted(items):
                _int(self.h, v)
            return
        self.h.update(b"\x00")
        results = []
        for item in items:
            results.append((yield _Sub(item, "{…}")))
        digests = [digest for digest, _ in results]
        order = sorted(range(len(items)), key=digests.__getitem__)
        counts = Counter(digests)
        layer, kept = self.layers[-1], self.kept[-1]
        for i in order:
            self.h.update(digests[i])
            for obj in results[i][1] if counts[digests[i]] == 1 else ():
                if id(obj) not in layer:
                    layer[id(obj)] = len(layer)
                    kept.append(obj)

    def _vector(self, items: list | tuple, label: Callable[[int], Any] = int) -> Iterator:
        """Many elements at C speed: a type code per element, then the strings, floats and
        (int64) ints as packed streams; other elements are walked one by one, in order."""
        kinds = list(map(type, items))
        if kinds.count(str) == len(items):
            self.h.update(b"\x01")
            self._strs(items)
            return
        codes = bytes(map(_VECTOR_CODES.get, kinds, repeat(0)))
        ints = None
        if 3 in codes:
            try:
                ints = _packed("q", compress(items, map(operator.eq, codes, repeat(3))))
            except OverflowError:  # beyond int64: walked one by one
                codes = codes.replace(b"\x03", b"\x00")
        self.h.update(b"\x00" + codes)
        if 1 in codes:
            self._strs(list(compress(items, map(operator.eq, codes, repeat(1)))))
        if 2 in codes:
            self.h.update(_packed("d", compress(items, map(operator.eq, codes, repeat(2)))))
        if ints is not None:
            self.h.update(ints)
        for i in compress(range(len(items)), map(operator.not_, codes)):
            if not self.atom(items[i]):
                yield items[i], label(i)

    def _strs(self, strs: list[str] | tuple[str, ...]) -> None:
        """Strings joined by NUL (their count is known), or, if one holds a NUL, by their
        lengths and their concatenation: one pass over the objects, not two."""
        np = _numpy()
        for start in range(0, len(strs), _STR_CHUNK):
            part = strs[start : start + _STR_CHUNK]
            raw = "\0".join(part).encode("utf-8", "surrogatepass")
            if len(raw) - np.count_nonzero(np.frombuffer(raw, np.uint8)) != len(part) - 1:
                self.h.update(b"L" + _packed("q", map(len, part)))
                raw = "".join(part).encode("utf-8", "surrogatepass")
            self.h.update(b"j" + _Q(len(raw)))
            self.h.update(raw)

    # NumPy: dtype, shape and the bytes in C order, so a strided view digests as its copy.
    def _ndarray(self, a: Any) -> Iterator | None:
        return None if self.seen(a) else self._ndarray_body(a, sys.modules["numpy"])

    def _ndarray_body(self, a: Any, np: Any) -> Iterator:
        self.put(b"#A", 0)
        yield type(a), ".__class__"
        if isinstance(a, np.ma.MaskedArray):
            yield from self._array_body(np.ma.getdata(a))
            yield from self._array_body(np.ma.getmaskarray(a))
            fill = a.fill_value  # np.str_ or str for the same array, depending on its history
            yield fill.item() if isinstance(fill, np.generic) else fill, ".fill_value"
        else:
            yield from self._array_body(a)
        plain = isinstance(a, (np.ma.MaskedArray, np.memmap))  # memmap: its file, not data
        yield from _code.sorted_attrs(self, {} if plain else getattr(a, "__dict__", {}))

    def _array_body(
        self, a: Any, label: Callable[[int], Any] = int, digest: bytes | None = None
    ) -> Iterator:
        dtype = a.dtype
        self.put_str(b"n", _dtype_token(dtype))
        self.h.update(_Q(a.ndim) + b"".join(map(_Q, a.shape)))
        if not dtype.hasobject:
            self._raw(a, digest)
        elif dtype.names:
            for field in dtype.names:
                yield from self._array_body(a[field], lambda i, f=field: [(f,), ".flat", i])
        else:
            yield from self._vector(a.ravel().tolist(), label)

    def _raw(self, a: Any, digest: bytes | None = None) -> None:
        """The bytes in C order, hashed apart (so a frame's columns can be hashed together)."""
        self.put(b"x", a.nbytes)
        self.h.update(digest or _raw_digest(a))

    def _np_scalar(self, v: Any) -> Iterator | None:
        if v.dtype.hasobject:
            return _code.instance(self, v)
        raw = v.tobytes()
        self.put_str(b"#X", _dtype_token(v.dtype))
        self.h.update(_Q(len(raw)) + raw)
        return None

    # pandas: labels, dtypes and values; numeric columns by their buffers.
    def _frame(self, df: Any) -> Iterator | None:
        return None if self.seen(df) else self._frame_body(df)

    def _frame_body(self, df: Any) -> Iterator:
        self.put(b"#q", df.shape[1])
        yield type(df), ".__class__"
        yield df.columns, ".columns"
        yield df.index, ".index"
        yield (df.attrs, df.flags.allows_duplicate_labels), ".attrs"
        columns = getattr(df, "_iter_column_arrays", None)
        arrays = columns() if columns else (df.iloc[:, i].array for i in range(df.shape[1]))
        digests = _interleaved_digests(df)
        for i, (name, values) in enumerate(zip(df.columns, arrays, strict=True)):
            yield from self._values(values, lambda i, c=name: [(c,), i], digests.get(i))
        yield from self._pandas_metadata(df)

    def _series(self, s: Any) -> Iterator | None:
        return None if self.seen(s) else self._series_body(s)

    def _series_body(self, s: Any) -> Iterator:
        self.put(b"#Q", len(s))
        yield type(s), ".__class__"
        yield s.name, ".name"
        yield s.index, ".index"
        yield (s.attrs, s.flags.allows_duplicate_labels), ".attrs"
        yield from self._values(s.array, lambda i: [".iloc", i])
        yield from self._pandas_metadata(s)

    def _index(self, idx: Any) -> Iterator:
        """Not memoized: pandas shares and rebuilds Index objects as it likes."""
        pd = sys.modules["pandas"]
        self.put(b"#j", len(idx))
        yield type(idx), ".__class__"
        yield tuple(idx.names), ".names"
        if isinstance(idx, pd.RangeIndex):
            yield (idx.start, idx.stop, idx.step), ""
        elif isinstance(idx, pd.MultiIndex):
            yield tuple(idx.levels), ".levels"
            for codes in idx.codes:
                yield from self._array_body(codes)
        else:
            yield getattr(idx, "freqstr", None), ".freq"
            yield from self._values(idx.array, lambda i: [".array", i])

    def _extension_array(self, values: Any) -> Iterator | None:
        if self.seen(values):
            return None
        self.put_str(b"#E", _code.library_name(type(values)))
        return self._values(values)

    def _values(
        self, values: Any, label: Callable[[int], Any] = int, digest: bytes | None = None
    ) -> Iterator:
        """A column's values. Objects by a typed digest of each element: [1, "a"] is not
        ["1", "a"] (pandas' own hash_pandas_object compares them as strings)."""
        np, pd = sys.modules["numpy"], sys.modules["pandas"]
        plain = getattr(pd.arrays, "NumpyExtensionArray", None) or pd.arrays.PandasArray  # <2.1
        if type(values) is plain or isinstance(values.dtype, np.dtype):
            yield from self._array_body(np.asarray(values), label, digest)  # no copy
            return
        dtype = values.dtype
        self.put_str(b"e", f"{_code.library_name(type(dtype))}:{dtype}:{dtype.na_value!r}")
        self.put_str(b"s", str(getattr(dtype, "storage", "")))
        if isinstance(values, pd.Categorical):
            yield values.categories, [".categories"]
            self.h.update(b"o" if values.ordered else b"u")
            yield from self._array_body(values.codes)
        elif isinstance(values, (pd.arrays.DatetimeArray, pd.arrays.TimedeltaArray)):
            yield from self._array_body(np.asarray(values.asi8))  # the time zone is in dtype
        elif isinstance(values, pd.arrays.PeriodArray):
            yield from self._array_body(np.asarray(values.asi8))
        elif isinstance(values, _masked_arrays(pd)):
            yield from self._array_body(values._data)
            yield from self._array_body(values._mask)
        elif isinstance(values, (pd.arrays.StringArray, pd.arrays.ArrowExtensionArray)):
            yield from self._vector(np.asarray(values, dtype=object).tolist(), label)
        else:  # Sparse, Interval, third-party arrays: as pickle sees them
            yield from _code.reduce_body(self, values)

    def _pandas_metadata(self, obj: Any) -> Iterator:
        """Attributes a subclass (GeoDataFrame, ...) declares in `_metadata`, as pickle keeps."""
        names = [] if type(obj).__module__.startswith("pandas.") else type(obj)._metadata
        self.put(b"m", len(names))
        for name in names:
            yield getattr(obj, name, None), f".{name}"


def _numpy() -> Any:
    import numpy  # late: `import cellops` stays fast

    return numpy


def _raw_digest(a: Any) -> bytes:
    np, h = sys.modules["numpy"], xxhash.xxh3_128()
    if a.size == 0 or a.dtype.itemsize == 0:
        return h.digest()
    if a.flags.c_contiguous:
        h.update(a.reshape(-1).view(np.uint8))
        return h.digest()
    rows = max(1, _CHUNK // max(1, a[0].nbytes))  # copy a chunk at a time, not the array
    for start in range(0, len(a), rows):
        h.update(np.ascontiguousarray(a[start : start + rows]).reshape(-1).view(np.uint8))
    return h.digest()


def _interleaved_digests(df: Any) -> dict[int, bytes]:
    """Raw digests of the columns of numeric blocks stored row by row (a frame made from a 2-D
    array): a band of rows at a time, in one pass, rather than a strided gather per column.
    The same digests `_raw_digest` gives; pandas internals, so any surprise means "none"."""
    np, digests = sys.modules["numpy"], {}
    try:
        for block in df._mgr.blocks:
            values = block.values
            if type(values) is not np.ndarray or values.dtype.hasobject or values.ndim != 2:
                continue
            if values.shape[0] < 2 or not values.T.flags.c_contiguous or values.T.size == 0:
                continue
            hashers = [xxhash.xxh3_128() for _ in range(values.shape[0])]
            rows = max(1, (_CHUNK // 4) // values.T[0].nbytes)  # a band stays in the cache
            for start in range(0, values.shape[1], rows):
                band = np.ascontiguousarray(values[:, start : start + rows])
                for h, column in zip(hashers, band, strict=True):
                    h.update(column.view(np.uint8))
            for loc, h in zip(block.mgr_locs.as_array.tolist(), hashers, strict=True):
                digests[loc] = h.digest()
    except (AttributeError, TypeError, ValueError):
        return {}
    return digests


def _masked_arrays(pd: Any) -> tuple[type, ...]:
    return (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


def _packed(typecode: str, values: Any) -> bytes:
    packed = array(typecode, values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _dtype_token(dtype: Any) -> str:
    """'<f8', '<M8[ns]', '<U5'; a structured dtype by its fields (its `str` is just '|V16')."""
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    return repr(dtype.descr)
