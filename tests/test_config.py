"""Project root discovery and settings precedence: file < environment < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellops.config import find_project_root, load_settings


@pytest.fixture
def nested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(root, a folder three levels below it); no marker anywhere yet."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CELLOPS_ARTIFACT_ROOT", raising=False)
    root = tmp_path / "repo"
    deep = root / "notebooks" / "team" / "exp"
    deep.mkdir(parents=True)
    return root, deep


def test_finds_pyproject_with_tool_cellops(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.cellops]\n")
    assert find_project_root(deep) == root.resolve()


def test_pyproject_without_tool_cellops_is_not_a_marker(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / "pyproject.toml").write_text("[tool.cellops]\n")
    (deep.parent / "pyproject.toml").write_text("[project]\nname = 'inner'\n")
    assert find_project_root(deep) == root.resolve()


def test_broken_pyproject_is_skipped(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / "cellops.toml").write_text("")
    (deep / "pyproject.toml").write_text("[tool.cellops\n")
    assert find_project_root(deep) == root.resolve()


def test_finds_cellops_toml(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / "cellops.toml").write_text('tracking_uri = "sqlite:///x.db"\n')
    assert find_project_root(deep) == root.resolve()


def test_finds_git_folder(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / ".git").mkdir()
    assert find_project_root(deep) == root.resolve()


def test_finds_git_file_of_a_worktree(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / ".git").write_text("gitdir: /elsewhere/.git/worktrees/repo\n")
    assert find_project_root(deep) == root.resolve()


def test_finds_dvc_folder(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / ".dvc").mkdir()
    assert find_project_root(deep) == root.resolve()


def test_nearest_marker_wins(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / ".git").mkdir()
    (deep.parent / "cellops.toml").write_text("")
    assert find_project_root(deep) == deep.parent.resolve()


def test_start_may_be_a_file(nested: tuple[Path, Path]) -> None:
    root, deep = nested
    (root / ".git").mkdir()
    notebook = deep / "analysis.ipynb"
    notebook.write_text("{}")
    assert find_project_root(notebook) == root.resolve()


def test_default_is_the_working_directory(project: Path) -> None:
    (project / "sub").mkdir()
    assert find_project_root() == project.resolve()


def test_default_store_lives_under_dot_cellops(project: Path) -> None:
    settings = load_settings()
    root = project.resolve()
    assert settings.root == root
    assert settings.tracking_uri == f"sqlite:///{root}/.cellops/mlflow.db"
    assert settings.uses_default_store
    assert settings.artifact_root == root / ".cellops" / "artifacts"
    assert settings.state_dir == root / ".cellops"
    assert settings.cache_dir == root / ".cellops" / "cache"
    assert settings.objects_dir == root / ".cellops" / "objects"
    assert settings.steps_state_dir == root / ".cellops" / "steps"


def test_settings_from_nested_folder_use_the_project_root(project: Path) -> None:
    deep = project / "notebooks" / "x"
    deep.mkdir(parents=True)
    assert load_settings(deep).root == project.resolve()


def write_tool_table(project: Path, body: str) -> None:
    (project / "pyproject.toml").write_text(f'[project]\nname = "demo"\n\n[tool.cellops]\n{body}')


def test_file_setting_is_used(project: Path) -> None:
    write_tool_table(project, 'tracking_uri = "http://127.0.0.1:5999"\nartifact_root = "arts"\n')
    settings = load_settings()
    assert settings.tracking_uri == "http://127.0.0.1:5999"
    assert not settings.uses_default_store
    assert settings.artifact_root == project.resolve() / "arts"  # relative to the root


def test_cellops_toml_with_tool_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "cellops.toml").write_text('[tool.cellops]\ntracking_uri = "sqlite:///t.db"\n')
    assert load_settings(tmp_path).tracking_uri == "sqlite:///t.db"


def test_environment_overrides_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tool_table(project, 'tracking_uri = "http://127.0.0.1:5999"\n')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6000")
    assert load_settings().tracking_uri == "http://127.0.0.1:6000"


def test_overrides_beat_environment_and_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tool_table(project, 'tracking_uri = "http://127.0.0.1:5999"\nartifact_root = "a"\n')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6000")
    monkeypatch.setenv("CELLOPS_ARTIFACT_ROOT", "/env/artifacts")
    settings = load_settings(tracking_uri="http://127.0.0.1:6001", artifact_root="/flag/arts")
    assert settings.tracking_uri == "http://127.0.0.1:6001"
    assert settings.artifact_root == Path("/flag/arts")


def test_environment_overrides_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/m.db")
    settings = load_settings()
    assert settings.tracking_uri == "sqlite:////elsewhere/m.db"
    assert not settings.uses_default_store
