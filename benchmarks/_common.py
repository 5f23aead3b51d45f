"""Shared by the benchmark scripts: a throw-away cellops project, and how figures are printed."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}
# Variables that would point cellops at another store or notebook than the temporary project.
FOREIGN_ENV = ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER")


def make_project(prefix: str) -> Path:
    """A fresh cellops project (git repository with `[tool.cellops]`) in a temporary folder.

    The benchmark's store, cache and objects go to its `.cellops/`, never the repository's.
    """
    root = Path(tempfile.mkdtemp(prefix=f"cellops-{prefix}-")).resolve()
    (root / "pyproject.toml").write_text('[project]\nname = "bench"\n\n[tool.cellops]\n')
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "bench project"], cwd=root, check=True, env=env)
    return root


def clean_env() -> dict[str, str]:
    """The environment without variables that would redirect cellops elsewhere."""
    return {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}


def isolate_process(root: Path) -> None:
    """Make this process use `root` as its project (cwd) and no outside store."""
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    os.chdir(root)


def remove_project(root: Path) -> None:
    """End this process's cellops session (its writes go to `root`), then delete `root`."""
    session_module = sys.modules.get("cellops.store.session")
    if session_module is not None:
        session_module.end_session()
    shutil.rmtree(root, ignore_errors=True)


def finish_project(root: Path, keep: bool) -> None:
    """Keep the temporary project (and say where) or remove it."""
    if keep:
        print(f"kept {root}")
    else:
        remove_project(root)


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def spread_ms(seconds: list[float]) -> str:
    """Median with the interquartile range, in milliseconds."""
    if len(seconds) < 4:
        return f"{median_ms(seconds):8.1f} ms (n={len(seconds)})"
    q1, _, q3 = statistics.quantiles(seconds, n=4)
    return f"{median_ms(seconds):8.1f} ms  (IQR {q1 * 1000:.1f}-{q3 * 1000:.1f}, n={len(seconds)})"


def verdict(ok: bool) -> str:
    return "MEETS the goal" if ok else "MISSES the goal"


def code_cell(source: str, cell_id: str, tags: tuple[str, ...] = ()) -> dict[str, object]:
    metadata = {"tags": list(tags)} if tags else {}
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": metadata,
            "outputs": [], "source": source}  # fmt: skip


def notebook_of(*cells: dict[str, object]) -> dict[str, object]:
    """An nbformat 4.5 Python 3 notebook of the given cells."""
    return {
        "cells": list(cells),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
