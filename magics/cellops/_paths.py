"""Paths as the project names them: relative to its root, in POSIX form."""

from __future__ import annotations

from pathlib import Path


def project_label(path: Path, root: Path) -> str:
    """`path` relative to the project `root` when it lies inside it, else the path itself."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
