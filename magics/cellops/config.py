"""Where the project is and how it is configured.

The project root is the first folder, walking up from the notebook or working directory, that
holds `pyproject.toml` with `[tool.cellops]`, `cellops.toml`, `.dvc/` or `.git/`. Settings come
from `[tool.cellops]` (or `cellops.toml`), overridden by environment variables, overridden by
the keyword arguments a magic or CLI flag passes in.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STATE_DIR_NAME = ".cellops"


@dataclass(frozen=True)
class Settings:
    root: Path
    tracking_uri: str
    artifact_root: Path
    mlflow_ui_url: str | None = None  # where links to MLflow's UI point (see store/links.py)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def objects_dir(self) -> Path:
        return self.state_dir / "objects"

    @property
    def steps_state_dir(self) -> Path:
        return self.state_dir / "steps"

    @property
    def uses_default_store(self) -> bool:
        return self.tracking_uri == default_tracking_uri(self.root)


def _tool_table(folder: Path) -> dict[str, Any] | None:
    """The cellops settings table declared in `folder`, or None when there is none."""
    standalone = folder / "cellops.toml"
    if standalone.is_file():
        with open(standalone, "rb") as fh:
            data = tomllib.load(fh)
        return data.get("tool", {}).get("cellops", data)
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            with open(pyproject, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError:
            return None
        table = data.get("tool", {}).get("cellops")
        if table is not None:
            return table
    return None


def find_project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The first folder at or above `start` that marks a cellops project; `start` if none."""
    here = Path(start or os.getcwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if _tool_table(folder) is not None:
            return folder
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return folder
    return here


def default_tracking_uri(root: Path) -> str:
    return f"sqlite:///{root / STATE_DIR_NAME / 'mlflow.db'}"


def load_settings(start: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Settings for the project holding `start`: file, then environment, then `overrides`."""
    root = find_project_root(start)
    table = _tool_table(root) or {}
    tracking_uri = (
        overrides.get("tracking_uri")
        or os.environ.get("MLFLOW_TRACKING_URI")
        or table.get("tracking_uri")
        or default_tracking_uri(root)
    )
    artifact_root = Path(
        overrides.get("artifact_root")
        or os.environ.get("CELLOPS_ARTIFACT_ROOT")
        or table.get("artifact_root")
        or root / STATE_DIR_NAME / "artifacts"
    )
    if not artifact_root.is_absolute():
        artifact_root = root / artifact_root
    ui_url = (
        overrides.get("mlflow_ui_url")
        or os.environ.get("CELLOPS_MLFLOW_UI_URL")
        or table.get("mlflow_ui_url")
        or None
    )
    return Settings(
        root=root,
        tracking_uri=str(tracking_uri),
        artifact_root=artifact_root,
        mlflow_ui_url=str(ui_url) if ui_url else None,
    )
