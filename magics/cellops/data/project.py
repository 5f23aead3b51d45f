"""`cellops init`: make a folder a cellops project with git and DVC, and check that it is one.

Idempotent: what is already there is kept and reported; only what is missing is added.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .._fs import atomic_write_text
from ..config import _tool_table
from ..errors import CellopsError, CellopsUsageError
from . import dvc

REMOTE_NAME = "cellops"
GITIGNORE_LINES = ("/.cellops/", "/reports/")  # local state and generated reports
DVCIGNORE_LINES = ("/.cellops/",)  # DVC need not walk the step cache's objects


@dataclass
class InitReport:
    root: Path
    done: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)


def git_toplevel(folder: Path) -> Path | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


def default_remote_folder(root: Path) -> Path:
    """A local folder outside the project: its absolute path is what clones of it use too."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "cellops" / "dvc-remote" / root.name


def init_project(folder: Path, remote: str | None = None) -> InitReport:
    root = folder.resolve()
    root.mkdir(parents=True, exist_ok=True)
    report = InitReport(root)
    _settings_table(root, report)
    top = _git(root, report)
    fresh = _dvc(root, top, report)
    _remote(root, remote, report, fresh)
    _ignore(root / ".gitignore", GITIGNORE_LINES, report)
    _ignore(root / ".dvcignore", DVCIGNORE_LINES, report)
    return report


def _settings_table(root: Path, report: InitReport) -> None:
    if _tool_table(root) is not None:
        where = "cellops.toml" if (root / "cellops.toml").is_file() else "pyproject.toml"
        report.found.append(f"cellops settings in {where}")
        return
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text()
        if "[tool.cellops]" in text:  # present, but the file does not parse: leave it alone
            raise CellopsUsageError(f"{pyproject} is not valid TOML; fix it, then run again")
        separator = "" if not text or text.endswith("\n") else "\n"
        atomic_write_text(pyproject, f"{text}{separator}\n[tool.cellops]\n")
        report.done.append("added [tool.cellops] to pyproject.toml")
    else:
        atomic_write_text(
            root / "cellops.toml",
            "# cellops settings: tracking_uri, artifact_root (see `cellops store`)\n",
        )
        report.done.append("created cellops.toml")


def _git(root: Path, report: InitReport) -> Path:
    top = git_toplevel(root)
    if top is not None:
        report.found.append(f"git repository at {top}")
        return top
    try:
        subprocess.run(["git", "init", "-q"], cwd=root, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CellopsError(f"`git init` failed in {root}: {exc}") from None
    report.done.append("initialized a git repository (git init)")
    return root


def _dvc(root: Path, top: Path, report: InitReport) -> bool:
    if dvc.is_initialized(root):
        report.found.append("DVC (.dvc/)")
        return False
    dvc.run_dvc(root, "init", "--quiet", *(["--subdir"] if top != root else []))
    report.done.append("initialized DVC (dvc init)")
    return True


def _remote(root: Path, remote: str | None, report: InitReport, fresh: bool) -> None:
    name = None if fresh else dvc.default_remote(root)
    if name is not None:
        url = dvc.remote_urls(root).get(name, "?")
        report.found.append(f"default DVC remote '{name}' ({url})")
        if remote and remote not in (url, str(Path(remote).expanduser().resolve())):
            report.found.append(
                f"--remote {remote} not applied: change it with `dvc remote modify {name} url URL`"
            )
        return
    url = remote or str(default_remote_folder(root))
    if "://" not in url:
        path = Path(url).expanduser()
        path = path if path.is_absolute() else (Path.cwd() / path)
        path.mkdir(parents=True, exist_ok=True)
        url = str(path.resolve())
    if not fresh and REMOTE_NAME in dvc.remote_urls(root):
        dvc.run_dvc(root, "remote", "default", REMOTE_NAME)
        report.done.append(f"made DVC remote '{REMOTE_NAME}' the default")
        return
    dvc.run_dvc(root, "remote", "add", "--default", REMOTE_NAME, url)
    report.done.append(f"added the default DVC remote '{REMOTE_NAME}' -> {url}")


def _ignore(path: Path, lines: tuple[str, ...], report: InitReport) -> None:
    text = path.read_text() if path.is_file() else ""
    present = {line.strip() for line in text.splitlines()}
    missing = [line for line in lines if line not in present]
    if not missing:
        report.found.append(f"{path.name} entries {', '.join(lines)}")
        return
    separator = "" if not text or text.endswith("\n") else "\n"
    atomic_write_text(path, text + separator + "".join(f"{line}\n" for line in missing))
    report.done.append(f"{path.name}: added {', '.join(missing)}")


def require_versioning(root: Path) -> None:
    """Raise a usage error naming `cellops init` unless the project has git and DVC."""
    if git_toplevel(root) is None:
        raise CellopsUsageError(
            f"{root} is not in a git repository, and cellops versions data with git and DVC; "
            f"run `cellops init` in {root} first (it sets up git, DVC and a DVC remote)"
        )
    if not dvc.is_initialized(root):
        raise CellopsUsageError(
            f"DVC is not set up in {root}; run `cellops init` there (it keeps what exists "
            "and adds DVC and a local DVC remote)"
        )
