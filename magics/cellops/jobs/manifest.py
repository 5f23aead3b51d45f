"""The reproducibility manifest of a job: what it takes to run it again and get the same.

Git commit and the diff of uncommitted changes, Python and installed package versions,
platform, parameters, the seed, and the hash of every input file (each parameter whose value
is a path to an existing file or folder). `compare` lists what differs from now.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ..cache.hashing import path_digest
from ..gitinfo import git_state

MANIFEST_ARTIFACT = "cellops/manifest.json"


def _git_diff(root: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "diff", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def installed_packages() -> dict[str, str]:
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name.lower()] = dist.version
    return dict(sorted(packages.items()))


def input_files(parameters: dict[str, Any], cwd: Path) -> dict[str, str]:
    """Digests of the parameters that name existing files or folders."""
    found = {}
    for name, value in parameters.items():
        if not isinstance(value, str) or not value or len(value) > 4096:
            continue
        path = Path(value) if Path(value).is_absolute() else cwd / value
        if path.exists():
            found[name] = path_digest(path)
    return found


def build_manifest(
    notebook: Path,
    root: Path,
    parameters: dict[str, Any],
    cwd: Path,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`parameters` are the values given (replayed by resume and reproduce); the seed and the
    input files come from the values the job ran with: given, else the notebook's defaults."""
    diff = _git_diff(root)
    effective = {**(defaults or {}), **parameters}
    return {
        "notebook": notebook.resolve().relative_to(root).as_posix()
        if notebook.resolve().is_relative_to(root)
        else str(notebook.resolve()),
        "notebook_digest": path_digest(notebook),
        "git": git_state(root),
        "git_diff": diff,
        "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": installed_packages(),
        "parameters": parameters,
        "defaults": defaults or {},
        "seed": effective.get("seed"),
        "input_files": input_files(effective, cwd),
    }


def compare(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Human-readable differences between a recorded manifest and the present one."""
    differences = []
    before, after = recorded.get("git", {}), now.get("git", {})
    if before.get("commit") != after.get("commit"):
        differences.append(f"git commit: {before.get('commit')} -> {after.get('commit')}")
    if recorded.get("git_diff_sha256") != now.get("git_diff_sha256"):
        differences.append("uncommitted changes differ from the recorded diff")
    if recorded.get("notebook_digest") != now.get("notebook_digest"):
        differences.append(f"notebook {recorded.get('notebook')} changed")
    values = {**recorded.get("defaults", {}), **recorded.get("parameters", {})}
    for name, digest in recorded.get("input_files", {}).items():
        current = now.get("input_files", {}).get(name)
        if current != digest:
            what = "is missing" if current is None else "changed"
            value = values.get(name)
            differences.append(f"input file {value} (parameter {name}) {what}")
    if recorded.get("python") != now.get("python"):
        differences.append(f"python: {recorded.get('python')} -> {now.get('python')}")
    old, new = recorded.get("packages", {}), now.get("packages", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            differences.append(f"package {name}: {old.get(name)} -> {new.get(name)}")
    return differences
