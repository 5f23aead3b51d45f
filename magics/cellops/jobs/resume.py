"""Find what a recorded job ran with, to run it again (`--resume`, `cellops reproduce`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import load_settings
from ..errors import CellopsUsageError
from ..store.client import connect_checked
from .manifest import MANIFEST_ARTIFACT


def recorded_job(run_id: str) -> tuple[Any, dict[str, Any]]:
    """The job run and its manifest; a usage error when RUN is not a cellops job."""
    settings = load_settings()
    client = connect_checked(settings)
    try:
        run = client.get_run(run_id)
    except Exception:
        raise CellopsUsageError(
            f"no run {run_id!r} in {settings.tracking_uri}; copy a job's run id from "
            "`cellops run` output or the MLflow UI"
        ) from None
    if run.data.tags.get("cellops.kind") != "job":
        raise CellopsUsageError(f"run {run_id} is not a cellops job run")
    try:
        path = client.download_artifacts(run_id, MANIFEST_ARTIFACT)
    except Exception:
        raise CellopsUsageError(f"run {run_id} has no {MANIFEST_ARTIFACT}") from None
    return run, json.loads(Path(path).read_text())


def resume_request(run_id: str, notebook: Path | None) -> tuple[Path, dict[str, Any]]:
    """The notebook and parameters job RUN used."""
    _, manifest = recorded_job(run_id)
    root = load_settings().root
    return notebook or root / manifest["notebook"], dict(manifest.get("parameters", {}))
