"""Runs left RUNNING by a process that died (SIGKILL, a crash) are marked KILLED.

Every run cellops opens carries the host and pid of the process that owns it, and that
process's start time (pids are reused). The next time cellops opens a session or starts a job
on the same host, runs whose owner is gone are ended, so none stays RUNNING forever.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), or None if it is gone.

    A zombie (state Z: dead, not yet reaped, as orphans stay where PID 1 does not reap them)
    counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` still runs and, when its start time `started` is known, is the
    same process (not another one that reused the pid). Without /proc, only whether the pid
    is in use."""
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = process_start_time(pid)  # None when gone, or a zombie
    return now is not None and (not started or now == started)


def owner_tags(pid: int | None = None) -> dict[str, str]:
    pid = pid or os.getpid()
    return {
        "cellops.host": socket.gethostname(),
        "cellops.pid": str(pid),
        "cellops.pid_start": process_start_time(pid) or "",
    }


def _owner_alive(tags: dict[str, str]) -> bool:
    try:
        pid = int(tags.get("cellops.pid", ""))
    except ValueError:
        return True  # not ours to judge
    return process_alive(pid, tags.get("cellops.pid_start"))


VIEW_ALL = 3  # mlflow.entities.ViewType.ALL, without importing mlflow into a job's kernel


def reap_dead_runs(client: Any) -> list[str]:
    """End this host's RUNNING runs whose owning process is gone; return their ids.

    Best effort: a failure here is logged, never raised, since it must not stop a step.
    """
    try:
        return _reap(client)
    except Exception as exc:  # pragma: no cover - depends on the store's state
        logging.getLogger(__name__).warning("cellops could not check for dead runs: %s", exc)
        return []


def _reap(client: Any) -> list[str]:
    host = socket.gethostname().replace("'", "")
    experiments = [e.experiment_id for e in client.search_experiments(view_type=VIEW_ALL)]
    reaped = []
    for start in range(0, len(experiments), 100):
        runs = client.search_runs(
            experiments[start : start + 100],
            f"attributes.status = 'RUNNING' and tags.`cellops.host` = '{host}'",
            max_results=1000,
        )
        for run in runs:
            if _owner_alive(run.data.tags):
                continue
            client.set_tag(run.info.run_id, "cellops.reaped", "owner process died")
            client.set_terminated(run.info.run_id, status="KILLED")
            reaped.append(run.info.run_id)
    return reaped
