"""What a step writes to MLflow: the jobs run on the tracker's thread.

A step run is created when the cell starts (so `current_run()` can name it) and completed in
one `log_batch` plus its artifacts when the cell ends.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._limits import param_text, tag_text
from ..store.client import log_batch
from ..store.reaper import owner_tags
from ..store.session import Session


@dataclass
class StepRecord:
    """Everything a finished (or failed, killed, cached) step writes to its run."""

    status: str  # FINISHED | FAILED | KILLED
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> content
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)
    staged: list[Path] = field(default_factory=list)  # temporary copies to delete afterwards
    end_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def start_step_run(session: Session, name: str, tags: dict[str, str]) -> Future[str]:
    start_ms = int(time.time() * 1000)

    def create(client: Any) -> str:
        parent = session.run_future.result()
        all_tags = {
            **session.base_tags(),
            **tags,
            **owner_tags(),
            "mlflow.parentRunId": parent.run_id,
            "cellops.kind": "step",
            "cellops.step": name,
        }
        run = client.create_run(
            parent.experiment_id, start_time=start_ms, tags=all_tags, run_name=name
        )
        return run.info.run_id

    return session.tracker.submit(create)


def finish_step_run(session: Session, run_future: Future[str], record: StepRecord) -> Future[None]:
    def finish(client: Any) -> None:
        run_id = run_future.result()
        timestamp = record.end_ms
        try:
            log_batch(
                client,
                run_id,
                metrics=[(k, v, timestamp, s) for k, v, s in record.metrics],
                params=[(k, param_text(v)) for k, v in record.params.items()],
                tags=[(k, tag_text(v)) for k, v in record.tags.items()],
            )
            for artifact_file, text in record.texts.items():
                client.log_text(run_id, text, artifact_file)
            for local_path, artifact_path in record.artifacts:
                client.log_artifact(run_id, local_path, artifact_path)
            client.set_terminated(run_id, status=record.status, end_time=timestamp)
        finally:
            for path in record.staged:
                shutil.rmtree(path, ignore_errors=True)

    return session.tracker.submit(finish)


def as_param(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return param_text(text)


def as_metric(value: Any) -> float | None:
    """A float for MLflow, or None when the value is not a number."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if not math.isinf(number) else None


def describe_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, default=str)
