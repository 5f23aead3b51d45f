"""The last known state of each step of a notebook, kept under `.cellops/steps/`.

One JSON file per step, written atomically at the end of each step, read by `%cellops status`
and `cellops steps` to say which steps are fresh, cached, stale, failed or never run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .._fs import atomic_write_json, read_json
from ..config import Settings


def notebook_slug(notebook_label: str) -> str:
    """A notebook's project-relative path as one safe file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "__", notebook_label).strip("_") or "interactive"


def _folder(settings: Settings, notebook_label: str) -> Path:
    return settings.steps_state_dir / notebook_slug(notebook_label)


def save_step_state(settings: Settings, notebook_label: str, state: dict[str, Any]) -> None:
    atomic_write_json(_folder(settings, notebook_label) / f"{state['name']}.json", state)


def load_step_states(settings: Settings, notebook_label: str) -> dict[str, dict[str, Any]]:
    folder = _folder(settings, notebook_label)
    states = {}
    for path in sorted(folder.glob("*.json")):
        state = read_json(path)
        if state and "name" in state:
            states[state["name"]] = state
    return states


def notebook_labels(settings: Settings) -> list[str]:
    """The notebooks (project-relative) that have step records."""
    labels = set()
    for path in settings.steps_state_dir.glob("*/*.json"):
        state = read_json(path)
        if state and state.get("notebook"):
            labels.add(state["notebook"])
    return sorted(labels)
