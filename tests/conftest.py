"""Shared fixtures: an isolated cellops project per test, and a real IPython shell in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
REPO = TESTS.parent


def fixture_path(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cellops project (a git repository with `[tool.cellops]`), as the cwd."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.cellops]\n')
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    monkeypatch.chdir(root)
    for name in ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def ip(project: Path):
    """A real IPython shell with cellops loaded; `ip.run_cell` re-raises the cell's error."""
    from IPython.core.interactiveshell import InteractiveShell

    from cellops import session as session_module

    shell = InteractiveShell.instance()
    shell.reset(new_session=True)
    shell.run_line_magic("load_ext", "cellops")
    yield shell
    shell.run_line_magic("unload_ext", "cellops")
    session_module.end_session()


def run(shell, code: str):
    """Run a cell; raise its exception, as a test wants."""
    result = shell.run_cell(code)
    result.raise_error()
    return result


def python() -> str:
    return sys.executable
