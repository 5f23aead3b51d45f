"""`cellops reproduce RUN`: run a recorded job again, only if its code and data still match.

The job runs with `CELLOPS_REPRODUCTION_OF=RUN` in its kernel's environment, so a notebook
that registers and promotes a model leaves the registry's aliases as they were: its version
is tagged as a reproduction, and its gate runs as a dry run (`registry/reproduction.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import load_settings
from ..errors import CellopsUsageError
from .manifest import build_manifest, compare
from .params import inspect_parameters
from .resume import recorded_job
from .run import JobRequest, JobResult, run_job


@dataclass
class Reproduction:
    result: JobResult
    original_metrics: dict[str, float]
    differences: list[str]


def reproduce(run_id: str, allow_changes: bool = False, progress: bool = True) -> Reproduction:
    run, manifest = recorded_job(run_id)
    root = load_settings().root
    notebook = root / manifest["notebook"]
    if not notebook.exists():
        raise CellopsUsageError(f"the job's notebook {notebook} no longer exists")
    parameters: dict[str, Any] = manifest.get("parameters", {})
    now = build_manifest(
        notebook, root, parameters, Path(root), inspect_parameters(notebook).defaults
    )
    differences = compare(manifest, now)
    if differences and not allow_changes:
        listing = "\n  ".join(differences)
        raise CellopsUsageError(
            f"cannot reproduce run {run_id}: code or data changed since it ran:\n  {listing}\n"
            "Restore them (git checkout, dvc pull), or pass --allow-changes to run anyway."
        )
    request = JobRequest(
        notebook, parameters, allow_unknown=True, progress=progress, use_cache=False,
        reproduction_of=run_id,  # the registry changes nothing: see registry/reproduction.py
    )  # fmt: skip
    result = run_job(request)
    metrics = {k: v for k, v in run.data.metrics.items() if not k.startswith("cellops.")}
    return Reproduction(result, metrics, differences)
