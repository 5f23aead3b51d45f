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
    from cellops.hashing import code_digest

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


def test_store_follows_the_environment(project: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    result = CliRunner().invoke(cli, ["store"])
    assert result.exit_code == 0, result.output
    assert "tracking store: http://127.0.0.1:5999" in result.output
    assert "open http://127.0.0.1:5999 in a browser" in result.output


def test_cli_runner_steps_on_a_notebook(project: Path) -> None:
    write_notebook(project / "demo.ipynb")
    result = CliRunner().invoke(cli, ["steps", "demo.ipynb"])
    assert result.exit_code == 0, result.output
    assert result.output.count("never run") == 2


def test_import_cellops_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, cellops, cellops.cli\n"
        "heavy = ('mlflow', 'pandas', 'sklearn', 'pyarrow', 'IPython')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
