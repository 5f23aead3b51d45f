"""The DVC adapter: the real `dvc` command line, and what DVC recorded (`.dvc`, `dvc.lock`).

Commands run as `python -m dvc` with this interpreter, so they use the DVC installed beside
cellops. `DVC_NO_ANALYTICS` is set for them: cellops does not send usage reports on the user's
behalf. While `dvc repro` runs a stage (it sets `DVC_STAGE` for the command) the repository is
locked and DVC records the stage's outputs itself, so cellops runs no DVC command then.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CellopsError


class DvcCommandError(CellopsError):
    """A `dvc` command failed; the message holds DVC's own explanation."""


def run_dvc(
    root: Path, *args: str, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_IGNORE_ISATTY": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise DvcCommandError(f"`dvc {' '.join(args)}` failed: {_reason(done)}")
    return done


def _reason(done: subprocess.CompletedProcess[str]) -> str:
    """DVC's error and the hint lines after it."""
    lines = [
        " ".join(line.split())
        for line in (done.stderr + "\n" + done.stdout).splitlines()
        if line.strip() and not line.startswith(("Having any troubles?", "+--", "|"))
    ]
    first = next((i for i, line in enumerate(lines) if line.startswith("ERROR")), None)
    chosen = lines[first : first + 5] if first is not None else lines[-3:]
    return " ".join(chosen)[:1000] or f"exit status {done.returncode}"


def is_initialized(root: Path) -> bool:
    return (root / ".dvc").is_dir()


def in_dvc_stage() -> bool:
    """True inside a command that `dvc repro` runs (DVC sets DVC_STAGE for it)."""
    return bool(os.environ.get("DVC_STAGE"))


def add(root: Path, labels: list[str]) -> None:
    run_dvc(root, "add", *labels)


def commit(root: Path, stages: list[str]) -> None:
    run_dvc(root, "commit", "--force", "--quiet", *stages)


def stop_tracking(root: Path, pointers: list[str]) -> None:
    """`dvc remove` on `.dvc` files: DVC forgets them; the data stays in place and in cache."""
    run_dvc(root, "remove", *pointers)


def default_remote(root: Path) -> str | None:
    done = run_dvc(root, "remote", "default", check=False)
    name = done.stdout.strip()
    return name if done.returncode == 0 and name else None


def remote_urls(root: Path) -> dict[str, str]:
    done = run_dvc(root, "remote", "list")
    urls = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            urls[parts[0]] = parts[1]
    return urls


# -- what DVC recorded ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """An output DVC knows: its path, the hash DVC last recorded, and where it is declared."""

    label: str  # path relative to the project root
    md5: str | None  # None: a stage that has not been run or committed yet
    pointer: str  # the `.dvc` file, or "dvc.yaml"
    stage: str | None = None  # the stage's name, for an output of a dvc.yaml stage


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _outs_of_pointer(root: Path, pointer: Path) -> list[Recorded]:
    data = _load_yaml(pointer)
    if not isinstance(data, dict):
        return []
    found = []
    folder = pointer.parent
    for out in data.get("outs") or []:
        if isinstance(out, dict) and out.get("path"):
            label = _label(root, folder / out["path"])
            found.append(Recorded(label, out.get("md5"), _label(root, pointer)))
    return found


def _stage_outs(root: Path) -> list[Recorded]:
    """Outputs of the stages in the project's dvc.yaml, with their hashes from dvc.lock."""
    stages = (_load_yaml(root / "dvc.yaml") or {}).get("stages") or {}
    locked = (_load_yaml(root / "dvc.lock") or {}).get("stages") or {}
    found = []
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            continue
        wdir = root / str(stage.get("wdir") or ".")
        lock_outs = {
            out.get("path"): out.get("md5")
            for out in (locked.get(name) or {}).get("outs") or []
            if isinstance(out, dict)
        }
        for out in stage.get("outs") or []:
            path = next(iter(out)) if isinstance(out, dict) else str(out)
            found.append(Recorded(_label(root, wdir / path), lock_outs.get(path), "dvc.yaml", name))
    return found


def _label(root: Path, path: Path) -> str:
    return Path(os.path.normpath(path)).relative_to(root).as_posix()


def recorded_output(root: Path, label: str) -> Recorded | None:
    """What DVC recorded for the output at `label` (its own `.dvc` file, or a stage)."""
    pointer = root / f"{label}.dvc"
    if pointer.is_file():
        for recorded in _outs_of_pointer(root, pointer):
            if recorded.label == label:
                return recorded
    if (root / "dvc.yaml").is_file():
        for recorded in _stage_outs(root):
            if recorded.label == label:
                return recorded
    return None


def recorded_outputs(root: Path) -> list[Recorded]:
    """Every output of the project's `.dvc` files (found through git) and dvc.yaml stages."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.dvc"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    found = []
    for name in sorted(set(filter(None, done.stdout.split("\0")))):
        found.extend(_outs_of_pointer(root, root / name))
    return found + _stage_outs(root)
