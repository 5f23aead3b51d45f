"""Which notebook this kernel runs.

Each front end tells the kernel differently: Jupyter sets `JPY_SESSION_NAME` (and IPython's
`__session__`), VS Code sets `__vsc_ipynb_file__`, and Papermill sets nothing, so for
Papermill we take `PAPERMILL_INPUT_PATH` (injected by `papermill --inject-paths`), or
`CELLOPS_NOTEBOOK` (set by `cellops run`), or read the input path off the command line of the
papermill process that started this kernel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# papermill options that take values, so their values are not taken for the input path
_PAPERMILL_VALUE_OPTIONS = {
    "-p": 2, "--parameters": 2, "-r": 2, "--parameters_raw": 2,
    "-f": 1, "--parameters_file": 1, "-y": 1, "--parameters_yaml": 1,
    "-b": 1, "--parameters_base64": 1, "-k": 1, "--kernel": 1, "-l": 1, "--language": 1,
    "--cwd": 1, "--engine": 1, "--execution-timeout": 1, "--start-timeout": 1,
    "--start_timeout": 1, "--autosave-cell-every": 1, "--log-level": 1,
}  # fmt: skip


@dataclass(frozen=True)
class NotebookInfo:
    path: Path | None
    runner: str  # jupyter | vscode | papermill | ipython


def detect_notebook(user_ns: dict[str, Any], environ: dict[str, str] | None = None) -> NotebookInfo:
    env = os.environ if environ is None else environ
    if env.get("CELLOPS_NOTEBOOK"):
        return NotebookInfo(Path(env["CELLOPS_NOTEBOOK"]).resolve(), "papermill")
    if user_ns.get("__vsc_ipynb_file__"):
        return NotebookInfo(Path(user_ns["__vsc_ipynb_file__"]).resolve(), "vscode")
    if user_ns.get("PAPERMILL_INPUT_PATH"):
        return NotebookInfo(Path(user_ns["PAPERMILL_INPUT_PATH"]).resolve(), "papermill")
    launched_by = _papermill_input_of_parent()
    if launched_by is not None:
        return NotebookInfo(launched_by, "papermill")
    session = env.get("JPY_SESSION_NAME") or user_ns.get("__session__")
    if session and str(session).endswith(".ipynb"):
        return NotebookInfo(Path(session).resolve(), "jupyter")
    return NotebookInfo(None, "ipython")


def _papermill_input_of_parent() -> Path | None:
    proc = Path(f"/proc/{os.getppid()}")
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(proc / "cwd"))
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in argv if a]
    where = next((i for i, a in enumerate(args) if Path(a).name == "papermill"), None)
    if where is None:
        return None
    rest, i = args[where + 1 :], 0
    while i < len(rest):
        arg = rest[i]
        if arg in _PAPERMILL_VALUE_OPTIONS:
            i += _PAPERMILL_VALUE_OPTIONS[arg] + 1
            continue
        if not arg.startswith("-"):
            return (cwd / arg).resolve()
        i += 1
    return None
