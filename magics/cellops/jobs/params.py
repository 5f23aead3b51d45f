"""A notebook's parameters: read with Papermill's inspection, checked before a kernel starts.

Values from the command line arrive as strings; each is coerced to the type of the
parameter's default (`-p depth 5` is an int when `depth = 3`), with a clear error when it
cannot be. An unknown name is refused with a "did you mean", unless unknown names are allowed.
"""

from __future__ import annotations

import ast
import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CellopsUsageError, DuplicateParameterError


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any
    default_source: str
    type_name: str
    help: str = ""


@dataclass(frozen=True)
class NotebookParameters:
    path: Path
    has_parameters_cell: bool
    parameters: dict[str, Parameter]
    kernel_name: str | None = None  # the notebook's kernelspec, when it names one
    language: str | None = None  # its language_info (or kernelspec) language

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters.values()}


def read_notebook(path: Path) -> Any:
    """The notebook at `path`, or a usage error that names the file and what is wrong."""
    import nbformat

    if not path.exists():
        raise CellopsUsageError(f"{path} does not exist; give the path of a .ipynb notebook")
    if path.is_dir() or path.suffix != ".ipynb":
        raise CellopsUsageError(f"{path} is not a notebook (.ipynb file)")
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several types for broken JSON
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CellopsUsageError(f"{path} is not a valid notebook: {first[:200]}") from None


def inspect_parameters(path: Path, kernel_name: str | None = None) -> NotebookParameters:
    """The notebook's parameters (Papermill's inspection of the `parameters` cell)."""
    notebook = read_notebook(path)
    own_kernel, language = notebook_kernel(notebook)
    kernel_name = kernel_name or own_kernel or "python3"
    has_cell = any(
        "parameters" in cell.get("metadata", {}).get("tags", []) for cell in notebook.cells
    )
    found: dict[str, Parameter] = {}
    if has_cell:
        # papermill's public inspect_notebook re-reads the file and needs a kernel name in it
        from papermill.inspection import _infer_parameters
        from papermill.iorw import load_notebook_node

        normalized = load_notebook_node(str(path))  # gives every cell the `tags` it expects
        for param in _infer_parameters(normalized, name=kernel_name, language="python"):
            default = _literal(param.default)
            type_name = param.inferred_type_name
            if type_name in ("None", "", None):
                type_name = type(default).__name__ if default is not None else "None"
            found[param.name] = Parameter(
                param.name, default, param.default, type_name, param.help or ""
            )
    return NotebookParameters(path, has_cell, found, own_kernel, language)


def notebook_kernel(notebook: Any) -> tuple[str | None, str | None]:
    """The kernel name and language the notebook's metadata names, each None when absent
    (as in what `nbformat.v4.new_notebook()`, jupytext and many generators write)."""
    metadata = notebook.get("metadata", {})
    kernelspec = metadata.get("kernelspec") or {}
    name = kernelspec.get("name") or None
    language = (metadata.get("language_info") or {}).get("name") or kernelspec.get("language")
    return name, language or None


def parameter_pairs(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """`-p NAME VALUE` pairs as a mapping; a name given twice is refused, naming both values
    (the last silently winning would run the job with a value the user may not have meant)."""
    values: dict[str, Any] = {}
    for name, value in pairs:
        if name in values:
            raise DuplicateParameterError(
                f"parameter {name!r} is given twice: -p {name} {values[name]} and "
                f"-p {name} {value}; give it once"
            )
        values[name] = value
    return values


def _literal(source: str) -> Any:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source


def check_parameters(
    spec: NotebookParameters, given: dict[str, Any], allow_unknown: bool = False
) -> dict[str, Any]:
    """`given`, with each value coerced to its parameter's type; unknown names refused."""
    checked: dict[str, Any] = {}
    for name, value in given.items():
        parameter = spec.parameters.get(name)
        if parameter is None:
            # without a parameters cell nothing is declared: take every value, as papermill does
            if spec.has_parameters_cell and not allow_unknown:
                raise CellopsUsageError(_unknown_message(spec, name))
            checked[name] = _parse_free(value)
            continue
        checked[name] = coerce(parameter, value)
    return checked


def _unknown_message(spec: NotebookParameters, name: str) -> str:
    known = sorted(spec.parameters)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none"
    return (
        f"{spec.path.name} has no parameter {name!r}.{hint} Its parameters: {listing}. "
        "Pass --allow-unknown to inject it anyway."
    )


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def coerce(parameter: Parameter, value: Any) -> Any:
    """`value` as the type of the parameter's default."""
    if not isinstance(value, str):
        return value
    target = type(parameter.default)
    try:
        if target is bool:
            lowered = value.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError(value)
        if target is int:
            return int(value)
        if target is float:
            return float(value)
        if target is str:
            return value
        if target in (list, dict, tuple):
            parsed = _parse_free(value)
            if not isinstance(parsed, (list, dict, tuple)):
                raise ValueError(value)
            return target(parsed)
    except ValueError:
        raise CellopsUsageError(
            f"parameter {parameter.name!r} takes {_article(target.__name__)} {target.__name__} "
            f"(its default is {parameter.default_source}); cannot use {value!r}"
        ) from None
    return _parse_free(value)


def _parse_free(value: Any) -> Any:
    """A string from the command line read as JSON or a Python literal when it is one."""
    if not isinstance(value, str):
        return value
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(value)
        except (ValueError, SyntaxError):
            continue
    return value


def load_parameter_file(path: Path) -> dict[str, Any]:
    """Parameters from a YAML (or JSON) file: a mapping of names to values."""
    import yaml

    if not path.is_file():
        raise CellopsUsageError(f"parameters file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CellopsUsageError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CellopsUsageError(f"{path} must map parameter names to values")
    return data


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
