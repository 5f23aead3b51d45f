"""A request's rows, checked against the served version's signature once, with numpy.

MLflow's scoring server turns every request into a DataFrame and enforces the schema column by
column in Python; on a one-row request that is most of its CPU. Here the JSON body becomes
one numpy array per request when every column is numeric (one `np.asarray` of the rows, its
dtype telling whether anything was not a number), and per column otherwise; the slow, precise
check runs only to word the error of a request that is refused anyway.

The request formats are MLflow's (`mlflow/pyfunc/scoring_server`): a JSON object holding one
of `dataframe_split`, `dataframe_records`, `instances`, `inputs` (and optionally `params`), or
a CSV or Parquet body. Unlike MLflow, an extra column is refused, not dropped unseen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ServeRequestError

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"
CONTENT_TYPES = (JSON, CSV, PARQUET)
NUMERIC = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}
WORDS = {
    "double": "numbers", "float": "numbers", "long": "whole numbers", "integer": "whole numbers",
    "boolean": "true or false", "string": "strings", "datetime": "dates (ISO 8601 strings)",
    "binary": "base64 strings",
}  # fmt: skip


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # MLflow's ColSpec type: double float long integer boolean string datetime binary
    required: bool = True


@dataclass
class InputSchema:
    """The signature's input columns, or a tensor (`tensor_dtype`, `tensor_width`)."""

    columns: list[Column]
    tensor_dtype: str | None = None
    tensor_width: int | None = None
    names: tuple[str, ...] = field(init=False)
    numeric: bool = field(init=False)  # every column a number: one float64 matrix
    whole: list[int] = field(init=False)  # the matrix's columns of whole numbers (long, integer)

    def __post_init__(self) -> None:
        self.names = tuple(c.name for c in self.columns)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._set = frozenset(self.names)
        self.numeric = bool(self.columns) and all(c.type in NUMERIC for c in self.columns)
        self.whole = [i for i, c in enumerate(self.columns) if c.type in ("long", "integer")]

    def describe(self) -> str:
        if self.tensor_dtype:
            return f"a {self.tensor_dtype} array of {self.tensor_width or 'any number of'} columns"
        return ", ".join(f"{c.name} ({c.type})" for c in self.columns)

    @classmethod
    def from_mlmodel(cls, signature: dict[str, Any] | None) -> InputSchema | None:
        """The schema of an MLmodel file's `signature:` (its inputs are a JSON string)."""
        if not signature or not signature.get("inputs"):
            return None
        specs = json.loads(signature["inputs"])
        if specs and specs[0].get("type") == "tensor":
            tensor = specs[0].get("tensor-spec", {})
            shape = tensor.get("shape") or []
            width = shape[1] if len(shape) == 2 and shape[1] > 0 else None
            return cls([], tensor_dtype=tensor.get("dtype", "float64"), tensor_width=width)
        columns = [
            Column(s.get("name") or str(i), s.get("type", "double"), s.get("required", True))
            for i, s in enumerate(specs)
        ]
        return cls(columns)


@dataclass
class Batch:
    """A request's rows: a 2-D `matrix` (numeric signatures, tensors), or `columns`."""

    rows: int
    names: Sequence[str]
    matrix: np.ndarray | None = None
    columns: dict[str, np.ndarray] | None = None

    def column(self, name: str) -> np.ndarray:
        if self.columns is not None:
            return self.columns[name]
        return self.matrix[:, list(self.names).index(name)]

    def arrays(self) -> dict[str, np.ndarray]:
        if self.columns is not None:
            return self.columns
        return {name: self.matrix[:, i] for i, name in enumerate(self.names)}

    def frame(self) -> Any:
        import pandas as pd

        if self.matrix is not None:
            return pd.DataFrame(self.matrix, columns=list(self.names))
        return pd.DataFrame(self.columns, columns=list(self.names))


def refuse(message: str, status: int = 400, **details: Any) -> ServeRequestError:
    return ServeRequestError(message, status, **details)


# -- the body -------------------------------------------------------------------------------------


def parse_body(
    body: bytes, content_type: str, schema: InputSchema | None
) -> tuple[Batch, dict[str, Any]]:
    """The rows of a request body and its `params`, checked against `schema` (None: any)."""
    mime = content_type.split(";", 1)[0].strip().lower() or JSON
    if mime == JSON:
        import orjson

        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            example = '{"dataframe_split": {"columns": [...], "data": [[...]]}}'
            raise refuse(
                f"the body is not JSON ({exc}); send an object such as {example}"
            ) from None
        return parse_json(document, schema)
    if mime == CSV:
        return _from_frame(_read_csv(body), schema), {}
    if mime == PARQUET:
        return _from_frame(_read_parquet(body), schema), {}
    raise refuse(
        f"content type {content_type!r} is not served; send one of {', '.join(CONTENT_TYPES)}",
        status=415,
    )


def parse_json(document: Any, schema: InputSchema | None) -> tuple[Batch, dict[str, Any]]:
    if not isinstance(document, dict):
        raise refuse(
            f"the JSON body is a {type(document).__name__}, not an object: wrap the rows as "
            f"one of {', '.join(FORMATS)}, e.g. " + '{"dataframe_records": [{...}]}'
        )
    found = [key for key in FORMATS if key in document]
    if len(found) != 1:
        got = ", ".join(map(repr, document)) or "no key"
        raise refuse(f"the JSON object must hold exactly one of {', '.join(FORMATS)}; got {got}")
    params = document.get("params") or {}
    if not isinstance(params, dict):
        raise refuse('"params" must be an object, e.g. {"probabilities": true}')
    kind, value = found[0], document[found[0]]
    if kind == "dataframe_split":
        return _split(value, schema), params
    if kind == "dataframe_records":
        if not isinstance(value, list):
            raise refuse("dataframe_records must be a list of objects {column: value}")
        return _records(value, schema), params
    return _tensor_or_rows(kind, value, schema), params


def _split(value: Any, schema: InputSchema | None) -> Batch:
    if not isinstance(value, dict) or "data" not in value:
        raise refuse('dataframe_split must be an object {"columns": [...], "data": [[...]]}')
    extra = set(value) - {"columns", "data", "index"}
    if extra:
        raise refuse(f"dataframe_split takes columns, data and index; not {sorted(extra)}")
    data = value["data"]
    if not isinstance(data, list):
        raise refuse("dataframe_split's data must be a list of rows")
    columns = value.get("columns")
    if columns is None:
        if schema is None or not schema.columns:
            return _matrix(data, schema)
        columns = list(schema.names)
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise refuse("dataframe_split's columns must be a list of column names")
    return _rows(columns, data, schema)


def _records(records: list, schema: InputSchema | None) -> Batch:
    if not records:
        raise refuse("no rows: send at least one")
    if not all(isinstance(r, dict) for r in records):
        raise refuse("dataframe_records must be a list of objects {column: value}")
    names = list(schema.names) if schema is not None and schema.columns else list(records[0])
    wanted = set(names)
    for i, record in enumerate(records):
        if record.keys() != wanted:
            _check_names(list(record), schema, where=f" in row {i}")
    return _rows(names, [[r[n] for n in names] for r in records], schema)


def _tensor_or_rows(kind: str, value: Any, schema: InputSchema | None) -> Batch:
    """`instances` and `inputs`: rows as objects, columns as an object of lists, or a tensor."""
    if isinstance(value, dict):  # {column: [values]}
        names = list(value)
        _check_names(names, schema)
        lists = [v if isinstance(v, list) else [v] for v in value.values()]
        if len({len(v) for v in lists}) > 1:
            raise refuse(f"{kind}: the columns have different numbers of values")
        return _rows(names, [list(r) for r in zip(*lists, strict=True)], schema)
    if not isinstance(value, list) or not value:
        raise refuse(f"{kind} must be a non-empty list of rows or an object of columns")
    if isinstance(value[0], dict):
        return _records(value, schema)
    if schema is not None and len(schema.columns) == 1 and not isinstance(value[0], list):
        return _rows(list(schema.names), [[v] for v in value], schema)
    if schema is not None and schema.columns:
        raise refuse(
            f"{kind} as lists of values: this model takes named columns ({schema.describe()}); "
            f'send {kind} as objects [{{"{schema.names[0]}": ...}}] or use dataframe_split'
        )
    return _matrix(value, schema)


def _check_names(names: list, schema: InputSchema | None, where: str = "") -> None:
    """Refuse a missing, extra or repeated column, naming it."""
    if schema is None or not schema.columns:
        return
    wanted = schema.names
    given = set(names)
    missing = [n for n in wanted if n not in given]
    if missing:
        raise refuse(
            f"column {missing[0]!r} is missing{where}; the model takes {schema.describe()}",
            column=missing[0],
        )
    extra = [n for n in names if n not in schema._set]
    if extra:
        raise refuse(
            f"column {extra[0]!r} is not an input of the model{where}; it takes "
            f"{schema.describe()}",
            column=extra[0],
        )
    if len(given) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise refuse(f"column {twice!r} is given twice{where}", column=twice)


def _rows(names: list[str], data: list, schema: InputSchema | None) -> Batch:
    """Rows of values in the order of `names`, as the signature's typed arrays."""
    if not data:
        raise refuse("no rows: send at least one")
    _check_names(names, schema)
    width = len(names)
    if schema is not None and schema.numeric:
        try:
            matrix = np.asarray(data)
        except ValueError:  # ragged rows
            matrix = None
        fits = matrix is not None and matrix.ndim == 2 and matrix.shape[1] == width
        if fits and matrix.dtype.kind in "fiu":
            if tuple(names) != schema.names:
                matrix = matrix[:, [names.index(n) for n in schema.names]]
            whole = schema.whole
            if not whole or matrix.dtype.kind != "f" or _is_whole(matrix[:, whole]):
                return Batch(len(data), schema.names, matrix=matrix.astype(np.float64))
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise refuse(f"row {i} has {got} values; the columns are {names}")
    by_name = {name: [row[j] for row in data] for j, name in enumerate(names)}
    return columns_batch(by_name, schema)


def _is_whole(values: np.ndarray) -> bool:
    return bool(np.all(values == np.round(values)))


def _matrix(data: list, schema: InputSchema | None) -> Batch:
    """A tensor: a list of equally long lists of numbers."""
    dtype = np.dtype(schema.tensor_dtype) if schema is not None and schema.tensor_dtype else None
    try:
        matrix = np.asarray(data)
    except ValueError:
        raise refuse("the rows have different numbers of values") from None
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1)
    if matrix.dtype.kind not in "fiub" and dtype is not None:
        raise refuse(f"the model takes an array of {dtype} numbers; the rows hold other values")
    width = schema.tensor_width if schema is not None else None
    if width and matrix.shape[1] != width:
        raise refuse(f"the model takes {width} values per row; got {matrix.shape[1]}")
    if dtype is not None:
        matrix = matrix.astype(dtype)
    names = [str(i) for i in range(matrix.shape[1])]
    return Batch(matrix.shape[0], names, matrix=matrix)


# -- per column -----------------------------------------------------------------------------------


def columns_batch(values: dict[str, Any], schema: InputSchema | None) -> Batch:
    """Columns of values (lists or arrays), each typed as its signature column says."""
    names = list(values)
    rows = len(next(iter(values.values()))) if values else 0
    if schema is None or not schema.columns:
        return Batch(rows, names, columns={n: _inferred(values[n]) for n in names})
    _check_names(names, schema)
    typed = {c.name: typed_column(c, values[c.name]) for c in schema.columns}
    return Batch(rows, schema.names, columns=typed)


def _inferred(values: Any) -> np.ndarray:
    array = np.asarray(values)
    return array.astype(object) if array.dtype.kind == "U" else array


def typed_column(column: Column, values: Any) -> np.ndarray:
    """`values` as the numpy array of `column`'s type, or a refusal naming the column and the
    first value that does not fit."""
    array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    kind = column.type
    if array.dtype.kind == "O":
        nulls = [i for i, v in enumerate(array) if v is None or v != v]
        if nulls and column.required:
            raise refuse(
                f"column {column.name!r} has no value in row {nulls[0]}; it takes "
                f"{WORDS.get(kind, kind)}",
                column=column.name,
            )
    if kind in NUMERIC:
        return _numbers(column, array)
    if kind == "boolean":
        bad = _first(array, lambda v: isinstance(v, (bool, np.bool_)))
        if bad is None:
            return array.astype(bool)
    elif kind == "string":
        bad = _first(array, lambda v: isinstance(v, str) or v is None)
        if bad is None:
            return array.astype(object)
    elif kind == "datetime":
        try:
            return np.asarray(array, dtype="datetime64[us]")
        except (ValueError, TypeError):
            bad = _first(array, _is_date)
    elif kind == "binary":
        return _binary(column, array)
    else:
        return array
    raise _wrong(column, bad, array[bad])


def _numbers(column: Column, array: np.ndarray) -> np.ndarray:
    dtype = NUMERIC[column.type]
    whole = column.type in ("long", "integer")
    if array.dtype.kind in "iu" or (array.dtype.kind == "f" and not whole):
        return array.astype(dtype)
    if array.dtype.kind == "O":

        def fits(v: Any) -> bool:
            if isinstance(v, (bool, np.bool_)):
                return False
            if isinstance(v, (int, np.integer)):
                return True
            return isinstance(v, (float, np.floating)) and (not whole or float(v).is_integer())

        optional = not column.required
        bad = _first(array, lambda v: fits(v) or (optional and (v is None or v != v)))
        if bad is None:
            if optional and not whole:
                array = np.where(np.equal(array, None), np.nan, array)
            return array.astype(dtype)
    else:
        bad = 0
        if array.dtype.kind == "f":
            bad = int(np.flatnonzero(array != np.round(array))[0]) if whole else 0
    raise _wrong(column, bad, array[bad])


def _binary(column: Column, array: np.ndarray) -> np.ndarray:
    import base64

    out = np.empty(len(array), dtype=object)
    for i, value in enumerate(array):
        try:
            out[i] = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise _wrong(column, i, value) from None
    return out


def _first(array: np.ndarray, ok: Any) -> int | None:
    for i, value in enumerate(array.tolist() if array.dtype.kind != "O" else array):
        if not ok(value):
            return i
    return None


def _is_date(value: Any) -> bool:
    try:
        np.datetime64(value)
    except (ValueError, TypeError):
        return False
    return isinstance(value, str)


def _wrong(column: Column, row: int, value: Any) -> ServeRequestError:
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool)) else repr(value)
    return refuse(
        f"column {column.name!r} takes {WORDS.get(column.type, column.type)} "
        f"({column.type}); row {row} has {shown}",
        column=column.name,
    )


# -- CSV and Parquet ------------------------------------------------------------------------------


def _read_csv(body: bytes) -> Any:
    import io

    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(body))
    except Exception as exc:
        raise refuse(f"the body is not CSV with a header row ({exc})") from None


def _read_parquet(body: bytes) -> Any:
    import io

    import pandas as pd

    try:
        return pd.read_parquet(io.BytesIO(body))
    except Exception as exc:
        raise refuse(f"the body is not a Parquet file ({exc})") from None


def _from_frame(frame: Any, schema: InputSchema | None) -> Batch:
    if len(frame) == 0:
        raise refuse("no rows: send at least one")
    if schema is not None and schema.tensor_dtype:
        return _matrix(frame.to_numpy().tolist(), schema)
    values = {str(name): frame[name].to_numpy() for name in frame.columns}
    batch = columns_batch(values, schema)
    if schema is not None and schema.numeric:
        matrix = np.column_stack([batch.columns[n] for n in schema.names]).astype(np.float64)
        return Batch(batch.rows, schema.names, matrix=matrix)
    return batch
