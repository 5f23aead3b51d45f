"""The `cellops` command, called as a user calls it, and the fast-import rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from click.testing import CliRunner

from cellops.cli import cli

CELLOPS = Path(sys.executable).parent / "cellops"


def cellops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [str(CELLOPS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Demo"),
        nbformat.v4.new_code_cell("%load_ext cellops\nn_rows = 100"),
        nbformat.v4.new_code_cell("%%step load\ndf = list(range(n_rows))"),
        nbformat.v4.new_code_cell("print('plain cell')"),
        nbformat.v4.new_code_cell("%%step train --metrics total\ntotal = sum(df)"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_console_script_help_lists_the_commands(project: Path) -> None:
    result = cellops("--help", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "Usage: cellops" in result.stdout
    commands = result.stdout.split("Commands:")[1].split()
    assert "steps" in commands and "store" in commands


def test_console_script_version(project: Path) -> None:
    from cellops import __version__

    result = cellops("--version", cwd=project)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_steps_on_a_missing_notebook_is_a_usage_error(project: Path) -> None:
    result = cellops("steps", "nope.ipynb", cwd=project)
    assert result.returncode == 2
    assert "nope.ipynb does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_steps_on_an_unreadable_notebook_is_a_usage_error(project: Path) -> None:
    (project / "broken.ipynb").write_text("{not json")
    result = cellops("steps", "broken.ipynb", cwd=project)
    assert result.returncode == 2
    assert "not a readable notebook" in result.stderr
    assert "Traceback" not in result.stderr


def test_steps_lists_the_notebook_steps_as_never_run(project: Path) -> None:
    write_notebook(project / "notebooks" / "demo.ipynb")
    result = cellops("steps", "notebooks/demo.ipynb", cwd=project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "notebooks/demo.ipynb"
    rows = [line.split() for line in lines[3:]]
    assert rows == [["load", "never", "run"], ["train", "never", "run"]]


def test_steps_with_a_recorded_step_from_a_nested_folder(project: Path) -> None:
    notebook = write_notebook(project / "notebooks" / "demo.ipynb")
    folder = project / ".cellops" / "steps" / "notebooks__demo.ipynb"
    folder.mkdir(parents=True)
    source = "df = list(range(n_rows))"
    from cellops.cache.hashing import code_digest

    state = {
        "name": "load",
        "notebook": "notebooks/demo.ipynb",
        "state": "fresh",
        "key": "k",
        "code_digest": code_digest(source),
        "upstream": {},
        "duration_s": 0.5,
        "metrics": {},
        "run_id": "abc123",
        "finished_at": 1.0,
    }
    (folder / "load.json").write_text(json.dumps(state))
    result = cellops("steps", "demo.ipynb", cwd=notebook.parent)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[3:]]
    assert rows[0][:3] == ["load", "fresh", "0.50"] and "abc123" in rows[0]
    assert rows[1] == ["train", "never", "run"]

    # without a notebook argument, every notebook with records is listed
    result = cellops("steps", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "notebooks/demo.ipynb"
    assert "abc123" in result.stdout


def test_steps_without_records(project: Path) -> None:
    result = CliRunner().invoke(cli, ["steps"])
    assert result.exit_code == 0, result.output
    assert "no steps recorded yet" in result.output


def test_store_prints_the_uri_and_how_to_open_it(project: Path) -> None:
    result = cellops("store", cwd=project)
    assert result.returncode == 0, result.stderr
    uri = f"sqlite:///{project.resolve()}/.cellops/mlflow.db"
    assert f"tracking store: {uri}" in result.stdout
    assert f"mlflow ui --backend-store-uri {uri}" in result.stdout


def test_store_follows_the_environment(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    result = CliRunner().invoke(cli, ["store"])
    assert result.exit_code == 0, result.output
    assert "tracking store: http://127.0.0.1:5999" in result.output
    assert "MLflow's UI for this store: http://127.0.0.1:5999" in result.output


def test_cli_runner_steps_on_a_notebook(project: Path) -> None:
    write_notebook(project / "demo.ipynb")
    result = CliRunner().invoke(cli, ["steps", "demo.ipynb"])
    assert result.exit_code == 0, result.output
    assert result.output.count("never run") == 2


def test_import_cellops_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, cellops, cellops.cli\n"
        "heavy = ('mlflow', 'pandas', 'sklearn', 'pyarrow', 'IPython', 'dvc', 'evidently',"
        " 'dask', 'ipywidgets', 'numpy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# -- `cellops steps` after a real run: the parameters cell, read without a kernel ----------------


def _execute(project: Path, notebook: Path) -> None:
    """Run `notebook` in a fresh kernel with nbclient, as Jupyter would (it names the notebook)."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(project)}}
    )
    client.execute(env={**os.environ, "JPY_SESSION_NAME": str(notebook)})


def _with_cell(notebook: Path, index: int, source: str, tags: list[str] | None = None) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[index].source = source
    if tags is not None:
        nb.cells[index].metadata["tags"] = tags
    nbformat.write(nb, notebook)


def _rows(output: str) -> dict[str, str]:
    """step -> its row in the table `cellops steps` printed."""
    return {line.split()[0]: line for line in output.splitlines()[3:] if line.strip()}


def test_steps_sees_an_edited_parameters_cell_as_the_kernel_would(project: Path) -> None:
    notebook = project / "notebooks" / "params.ipynb"
    notebook.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext cellops"),
        nbformat.v4.new_code_cell("n_rows = 100\nlabel = 'demo'\ncolumns = ['a', 'b']"),
        nbformat.v4.new_code_cell("%%step load\ndf = [(i, label) for i in range(n_rows)]"),
        nbformat.v4.new_code_cell("%%step train --metrics total\ntotal = len(df) * len(columns)"),
        nbformat.v4.new_code_cell("%%step report\nsummary = f'{label}: {total}'"),
    ]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(nb, notebook)
    _execute(project, notebook)
    parameters = "n_rows = 100\nlabel = 'demo'\ncolumns = ['a', 'b']"

    result = CliRunner().invoke(cli, ["steps", "notebooks/params.ipynb"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert list(rows) == ["load", "train", "report"]
    assert all(row.split()[1] == "fresh" for row in rows.values()), result.output

    # a changed default: the steps that read it are stale, and everything downstream of them
    _with_cell(notebook, 1, parameters.replace("100", "200"))
    result = cellops("steps", "notebooks/params.ipynb", cwd=project)
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    assert rows["load"].split()[1] == "stale" and "input changed: n_rows" in rows["load"]
    assert "stale" in rows["train"] and "upstream 'load' is stale" in rows["train"]
    assert "stale" in rows["report"] and "upstream 'train' is stale" in rows["report"]

    # two steps read `label` directly: both name it
    _with_cell(notebook, 1, parameters.replace("'demo'", "'other'"))
    rows = _rows(CliRunner().invoke(cli, ["steps", "notebooks/params.ipynb"]).output)
    assert "input changed: label" in rows["load"] and "input changed: label" in rows["report"]

    # a list default, compared by content; the cell back as it was is fresh again
    _with_cell(notebook, 1, parameters.replace("'b']", "'b', 'c']"))
    rows = _rows(CliRunner().invoke(cli, ["steps", "notebooks/params.ipynb"]).output)
    assert rows["load"].split()[1] == "fresh"
    assert "input changed: columns" in rows["train"]
    _with_cell(notebook, 1, parameters + "  # the same values")
    rows = _rows(CliRunner().invoke(cli, ["steps", "notebooks/params.ipynb"]).output)
    assert all(row.split()[1] == "fresh" for row in rows.values())

    # without the tag, the plain cells before the first step are the parameters
    _with_cell(notebook, 1, parameters.replace("100", "300"), tags=[])
    rows = _rows(CliRunner().invoke(cli, ["steps", "notebooks/params.ipynb"]).output)
    assert "input changed: n_rows" in rows["load"]

    # a value bound again after the parameters cell is not known without a kernel: not judged
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell("n_rows = n_rows // 3"))
    nbformat.write(nb, notebook)
    rows = _rows(CliRunner().invoke(cli, ["steps", "notebooks/params.ipynb"]).output)
    assert rows["load"].split()[1] == "fresh"

    # the project-wide listing judges the same way
    _with_cell(notebook, 1, parameters.replace("'demo'", "'again'"), tags=["parameters"])
    result = CliRunner().invoke(cli, ["steps"])
    assert result.exit_code == 0, result.output
    assert "input changed: label" in result.output
