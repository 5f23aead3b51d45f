"""The git state a run was made from (MLflow records none for notebooks: mlflow#13220)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(folder: Path) -> dict[str, str]:
    """Commit, branch and dirty flag of the repository holding `folder`; {} outside git."""
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {}
    status = _git(folder, "status", "--porcelain", "--untracked-files=no") or ""
    state = {"commit": commit, "dirty": str(bool(status)).lower()}
    branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    if branch:
        state["branch"] = branch
    return state
