"""Shared by the data tests: the real `dvc` and `git` commands, and `cellops init`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cellops.cli import cli

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
BIN = str(Path(sys.executable).parent)


def env() -> dict[str, str]:
    """The environment of the commands: the venv first on PATH (dvc runs `cellops run`)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_STAGE")}
    clean.pop("CELLOPS_NOTEBOOK", None)
    return {**clean, **GIT_ENV, "PATH": f"{BIN}{os.pathsep}{clean.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1"}  # fmt: skip


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, env=env(), capture_output=True, text=True, check=True
    )
    return done.stdout


def commit_all(root: Path, message: str = "work") -> None:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def cellops_cli(*args: str):
    """`cellops ARGS` in this process (the working directory is the project)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def init(root: Path, remote: Path) -> str:
    result = CliRunner().invoke(cli, ["init", str(root), "--remote", str(remote)])
    assert result.exit_code == 0, result.output
    return result.output


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def dvc_file_md5(pointer: Path) -> str:
    import yaml

    return yaml.safe_load(pointer.read_text())["outs"][0]["md5"]
