"""The dashboard's shared data: one snapshot of every model's page, read from the store once
and shared by every view.

A refresher (`refresher.py`) asks the store a cheap question every refresh interval (what
changed: the registered models, their aliases, the newest runs of any experiment, so a new
drift check, job or gate event) and only when the answer differs reads everything again and
writes a new snapshot, atomically (temp file, then rename), so a reader never sees half of
one. Views (a Voila kernel, the static page, the queue page) read the file and lay it out: a
hundred people looking cost one read of the store, not a hundred.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from pathlib import Path
from typing import Any

FORMAT = 1
SNAPSHOT_ENV = "CELLOPS_DASHBOARD_SNAPSHOT"  # the file a served dashboard's kernels read


def fingerprint(store: Any) -> str:
    """A digest of what, when it changes, changes the dashboard: the registered models with
    their aliases and update times, and the newest runs of every experiment (drift checks,
    jobs, gate events) with their status and tags, and the newest day folder of each model's
    prediction log. A few cheap queries."""

    def read(client: Any) -> list[Any]:
        models = [
            (m.name, m.last_updated_timestamp, sorted((m.aliases or {}).items()))
            for m in client.search_registered_models(max_results=1000)
        ]
        experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
        runs = []
        for start in range(0, len(experiments), 100):  # search_runs takes 100 experiments
            runs += client.search_runs(
                experiments[start : start + 100],
                order_by=["attributes.start_time DESC"],
                max_results=20,
            )
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id), reverse=True)
        newest = [
            (r.info.run_id, r.info.status, r.info.end_time, sorted(r.data.tags.items()))
            for r in runs[:20]
        ]
        return [sorted(models, key=str), sorted(experiments), newest]

    from .serving import log_stamp

    found = [*store.call(read), log_stamp(store.settings)]
    return hashlib.sha256(json.dumps(found, default=str).encode()).hexdigest()


def build_snapshot(store: Any, names: list[str] | None = None, mark: str = "") -> dict[str, Any]:
    """Every model's page (or those in `names`), with the list of models and when it was read.
    `mark` is the `fingerprint` it was read at."""
    from . import data as dd
    from .render import model_page

    started = time.time()
    models = dd.model_names(store)
    chosen = models if names is None else [n for n in names if n in models]
    pages = {name: model_page(store, name) for name in chosen}
    return {
        "format": FORMAT,
        "built": started,
        "stamp": datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.time() - started, 3),
        "fingerprint": mark,
        "models": models,
        "pages": pages,
    }


def write_snapshot(path: Path, snapshot: dict[str, Any]) -> None:
    """Write `snapshot` to `path` atomically (readers see the old one or the new one)."""
    from .._fs import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(snapshot, separators=(",", ":")).encode())


def read_snapshot(path: Path | str | None) -> dict[str, Any] | None:
    """The snapshot at `path`, or None when there is none (yet) or it is not one."""
    if not path:
        return None
    try:
        found = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        return None
    return found


def wait_for_snapshot(path: Path | str, timeout: float) -> dict[str, Any] | None:
    """The snapshot at `path`, waiting up to `timeout` seconds for the first one."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_snapshot(path)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
