"""Run notebooks somebody else wrote, plainly and with cellops, and compare what each cell shows.

The notebooks under `tests/fixtures/gallery/` are public examples (scikit-learn's tutorials and
user guide, pandas' cookbook, the `random` module's docs) adopted for cellops the way a user
would: a first code cell `%load_ext cellops` (with a lint directive: the code is not
ours to lint), and a first line `%%step NAME` on the cells that become steps.

The *plain* version of a notebook is the same notebook with those two kinds of lines removed: it
is the reference. Every execution happens in a fresh kernel started by nbclient (kernel
"python3": this virtualenv's interpreter, since jupyter_client launches `python` as
`sys.executable`), with a time limit per cell, and yields what each code cell showed: its
stdout and stderr text, the `text/plain` of its results and displays, whether a display held a
PNG image, and its error. cellops's own lines are dropped before comparing (stdout lines that
start with "cached: restored", stderr lines that start with "cellops:"), and object addresses and
IPython's per-kernel cell file names are normalized; nothing else is.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .conftest import fixture_path

CELL_TIMEOUT = 60
"""Seconds a cell may take. Every cell of these notebooks runs in a few seconds; a cell that
takes a minute is hung (as cellops hung on warnings), and a hung kernel can grow without bound."""

LOAD_EXT = "%load_ext cellops"
LOAD_EXT_CELL = f"{LOAD_EXT}\n# ruff: noqa"
"""The adopted notebooks' first code cell. The lint directive keeps ruff off code that is not
ours (and that ruff cannot follow: it skips the `%%step` cells, so names look undefined)."""
STEP_LINE = re.compile(r"^%%step\s+([A-Za-z_][A-Za-z0-9_.-]*)")
CACHED_LINE = re.compile(r"^cached: restored .* from run \S+")

_NORMALIZE = [
    # IPython names each cell's code after the kernel's pid and the code's hash
    (re.compile(r"\S*ipykernel_\d+[/\\]\d+\.py"), "<cell>"),
    (re.compile(r" at 0x[0-9a-fA-F]+"), " at 0x..."),
]


# -- the examples ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """Change early cells: replace each `old` (found exactly once in the notebook) by its `new`.
    `reruns` are the steps whose results depend on the change: they must run again, while every
    other step stays cached."""

    changes: tuple[tuple[str, str], ...]  # (old, new)
    reruns: frozenset[str]

    def __str__(self) -> str:
        return "; ".join(f"{old!r} -> {new!r}" for old, new in self.changes)


@dataclass(frozen=True)
class Example:
    name: str  # tests/fixtures/gallery/<name>.ipynb
    edits: tuple[Edit, ...]

    @property
    def path(self) -> Path:
        return fixture_path("gallery", f"{self.name}.ipynb")


def load(example: Example, edits: int = 0) -> NotebookNode:
    """The adopted notebook, with its first `edits` edits applied."""
    nb = nbformat.read(example.path, as_version=4)
    for edit in example.edits[:edits]:
        apply_edit(nb, edit)
    return nb


def apply_edit(nb: NotebookNode, edit: Edit) -> None:
    for old, new in edit.changes:
        hits = [cell for cell in nb.cells if old in cell.source]
        count = sum(cell.source.count(old) for cell in hits)
        assert count == 1, f"edit: {old!r} occurs {count} times in the notebook, not once"
        hits[0].source = hits[0].source.replace(old, new)


def code_cells(nb: NotebookNode) -> list[NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def is_load_ext(cell: NotebookNode) -> bool:
    return cell.source.partition("\n")[0].strip() == LOAD_EXT


def step_name(cell: NotebookNode) -> str | None:
    match = STEP_LINE.match(cell.source)
    return match.group(1) if match else None


def steps(nb: NotebookNode) -> list[str]:
    """The notebook's steps, in order; its first code cell must be `%load_ext cellops`."""
    cells = code_cells(nb)
    assert cells and is_load_ext(cells[0]), "the first code cell loads cellops"
    return [name for cell in cells if (name := step_name(cell))]


def plain_version(nb: NotebookNode) -> NotebookNode:
    """The notebook as its authors wrote it: no `%load_ext cellops` cell, no `%%step` lines."""
    plain = nbformat.from_dict(json.loads(json.dumps(nb)))
    plain.cells = [c for c in plain.cells if not (c.cell_type == "code" and is_load_ext(c))]
    for cell in code_cells(plain):
        if step_name(cell):
            cell.source = cell.source.partition("\n")[2]
    return plain


def labels(nb: NotebookNode) -> list[str]:
    """How a report names each code cell of the adopted notebook after `%load_ext cellops`."""
    named = []
    for i, cell in enumerate(code_cells(nb)[1:], 1):
        name = step_name(cell)
        body = cell.source.partition("\n")[2] if name else cell.source
        first = next((line for line in body.splitlines() if line.strip()), "")
        what = f"step {name!r}" if name else "plain cell"
        named.append(f"cell {i} ({what}: {first.strip()[:60]})")
    return named


# -- executing a notebook -------------------------------------------------------------------------


@dataclass
class Shown:
    """What one code cell showed. Text is as the kernel sent it; `normalized` compares it."""

    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)  # "kind: text/plain [+ image/png]"
    error: str | None = None

    def normalized(self) -> dict[str, str]:
        stdout = [
            ln for ln in self.stdout.splitlines(True) if not ln.startswith("cached: restored")
        ]
        stderr = [ln for ln in self.stderr.splitlines(True) if not ln.startswith("cellops:")]
        return {
            "printed text (stdout)": _normalize("".join(stdout)),
            "warnings and other stderr text": _normalize("".join(stderr)),
            "results and displays": _normalize("\n".join(self.results)),
            "error": _normalize(self.error or ""),
        }

    @property
    def cached_line(self) -> bool:
        """Whether the cell's output begins with cellops's "cached: restored ... from run" line."""
        return bool(CACHED_LINE.match(self.stdout))


def _normalize(text: str) -> str:
    for pattern, replacement in _NORMALIZE:
        text = pattern.sub(replacement, text)
    return text


@dataclass
class Execution:
    cells: list[Shown]  # one per code cell
    crashed: str | None = None  # a cell timed out or the kernel died...
    stopped_at: int | None = None  # ...at this code cell: the cells after it did not run


def _shown(cell: NotebookNode) -> Shown:
    shown = Shown()
    for out in cell.get("outputs", []):
        kind = out.output_type
        if kind == "stream":
            if out.name == "stdout":
                shown.stdout += out.text
            else:
                shown.stderr += out.text
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            text = data.get("text/plain", "")
            image = " [+ image/png]" if "image/png" in data else ""
            shown.results.append(f"{kind}: {text}{image}")
        elif kind == "error":
            shown.error = f"{out.ename}: {out.evalue}"
    return shown


def kernel_env(**extra: str) -> dict[str, str]:
    """The environment a kernel starts with: ours, plus `extra`, with matplotlib left to pick its
    default in a kernel (matplotlib_inline's inline backend) and one BLAS thread: on a busy
    2-core machine, BLAS threads fighting over the cores make a 0.3 s fit take 10 s. Plain and
    cellops runs get the same environment, so their numbers are comparable."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**env, **threads, **extra}


def execute(nb: NotebookNode, cwd: Path, env: dict[str, str]) -> Execution:
    """Run `nb` (a copy) top to bottom in a fresh kernel started in `cwd`; errors do not stop it."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in code_cells(nb):
        cell.outputs = []
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    crashed = None
    try:
        client.execute(env=env)
    except CellTimeoutError:
        crashed = f"it ran longer than {CELL_TIMEOUT} s (hung?), so the kernel was stopped"
    except DeadKernelError as exc:
        crashed = f"the kernel died ({exc})"
    cells = code_cells(nb)
    stopped_at = None
    if crashed:  # the cell that never finished is the first without an execution count
        unfinished = (i for i, cell in enumerate(cells) if cell.get("execution_count") is None)
        stopped_at = next(unfinished, len(cells) - 1)
        crashed = f"code cell {stopped_at}: {crashed}"
    return Execution([_shown(cell) for cell in cells], crashed, stopped_at)


def run_plain(example: Example, edits: int, cwd: Path) -> Execution:
    nb = plain_version(load(example, edits))
    return execute(nb, cwd, kernel_env())


def run_cellops(project: Path, notebook: Path) -> Execution:
    """Run the project's copy of a notebook as Jupyter would: a kernel in the notebook's folder
    that knows the notebook's path (`JPY_SESSION_NAME`)."""
    nb = nbformat.read(notebook, as_version=4)
    return execute(nb, notebook.parent, kernel_env(JPY_SESSION_NAME=str(notebook)))


def add_notebook(project: Path, example: Example) -> Path:
    """Copy the example into the project and commit it, as a user's notebook would be."""
    target = project / f"{example.name}.ipynb"
    target.write_text(example.path.read_text())
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", f"add {target.name}")
    return target


def edit_notebook(notebook: Path, edit: Edit) -> None:
    nb = nbformat.read(notebook, as_version=4)
    apply_edit(nb, edit)
    nbformat.write(nb, notebook)


def _git(project: Path, *args: str) -> None:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    subprocess.run(command, cwd=project, check=True, capture_output=True)


def step_states(project: Path, notebook: Path) -> dict[str, str | None]:
    """Each step's last state as cellops recorded it in `.cellops/steps/<notebook>/<step>.json`."""
    from cellops.steps.state import notebook_slug

    folder = (
        project / ".cellops" / "steps" / notebook_slug(notebook.relative_to(project).as_posix())
    )
    states: dict[str, str | None] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        states[record.get("name", path.stem)] = record.get("state")
    return states


# -- comparing ------------------------------------------------------------------------------------


def plain_problems(execution: Execution, cell_labels: list[str]) -> list[str]:
    """The reference run must itself be clean, or the comparison means nothing."""
    problems = [f"plain run stopped: {execution.crashed}"] if execution.crashed else []
    for label, shown in zip(cell_labels, execution.cells, strict=True):
        if shown.error:
            problems.append(f"{label} raised {shown.error} in the plain run")
    return problems


@dataclass
class Report:
    """Every problem found in the cellops runs of one notebook, each saying where and why."""

    notebook: str
    problems: list[str] = field(default_factory=list)

    def add(self, phase: str, text: str) -> None:
        self.problems.append(f"[{phase}] {text}")

    def text(self) -> str:
        head = f"{self.notebook}: {len(self.problems)} problem(s)"
        return "\n\n".join([head, *self.problems])

    def check_run(
        self,
        phase: str,
        nb: NotebookNode,
        run: Execution,
        plain: Execution,
        states: dict[str, str | None],
        fresh: set[str],
    ) -> bool:
        """Compare `run` (the adopted notebook, cellops loaded) with `plain`, cell by cell, and
        check that exactly the steps in `fresh` ran while every other step was restored.
        False when the run stopped early."""
        if run.crashed:
            self.add(phase, f"the run stopped: {run.crashed}")
        if run.cells[0].error:
            self.add(phase, f"`{LOAD_EXT}` failed: {run.cells[0].error}")
            return False
        adopted = code_cells(nb)[1:]
        last = len(adopted) if run.stopped_at is None else run.stopped_at
        cells = zip(labels(nb), adopted, run.cells[1:], plain.cells, strict=True)
        for label, cell, ours, theirs in list(cells)[:last]:  # the cells that ran
            name = step_name(cell)
            if name is not None:
                problem = _state_problem(ours, states.get(name), should_run=name in fresh)
                if problem:
                    self.add(phase, f"{label}: {problem}")
            mine = ours.normalized()
            for what, reference in theirs.normalized().items():
                if mine[what] != reference:
                    diff = _diff(reference, mine[what])
                    self.add(phase, f"{label}: {what} differs from the plain run\n{diff}")
        return not run.crashed


def _state_problem(shown: Shown, state: str | None, should_run: bool) -> str | None:
    """Why a step's two records (its "cached:" line, its state file) contradict what it should
    have done, with the lines cellops printed about it; None when they agree."""
    line = "its output begins with a 'cached: restored' line"
    if not shown.cached_line:
        first = shown.stdout.splitlines()[0] if shown.stdout.strip() else ""
        line = f"its output begins with {first!r}" if first else "it printed nothing"
    said = [ln for ln in shown.stderr.splitlines() if ln.startswith("cellops:")]
    said_text = "".join(f"\n    {ln}" for ln in said)
    if should_run and (shown.cached_line or state != "fresh"):
        return f"should have run again, but {line} and its state file says {state!r}{said_text}"
    if not should_run and (not shown.cached_line or state != "cached"):
        return (
            f"should have been restored from the cache, but {line} and its state file says "
            f"{state!r}{said_text}"
        )
    return None


def _diff(reference: str, mine: str) -> str:
    lines = difflib.unified_diff(
        reference.splitlines(),
        mine.splitlines(),
        "plain run",
        "cellops run",
        lineterm="",
        n=2,
    )
    text = "\n".join(f"    {line}" for line in lines)
    if not text.strip():  # differs only in trailing newlines
        text = f"    plain run:   {reference!r}\n    cellops run: {mine!r}"
    limit = 60
    shown = text.splitlines()
    if len(shown) > limit:
        text = "\n".join([*shown[:limit], f"    ... ({len(shown) - limit} more lines)"])
    return text
