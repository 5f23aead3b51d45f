"""The one reader of the store behind a served dashboard: it keeps the snapshot current.

Every `every` seconds it asks for the store's `fingerprint`; only when that changed (a new
drift check, job, registration, alias move) or the snapshot is older than `MAX_AGE_INTERVALS`
intervals does it read everything and write a new snapshot. `cellops dashboard` runs it
beside Voila as `python -m cellops.dashboards.refresher --snapshot PATH --every S --parent PID`
(it ends when its parent does), and in a thread for `--static`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Settings

MAX_AGE_INTERVALS = 20  # re-read all at least this often, whatever the fingerprint says


class Refresher:
    """Keeps the snapshot at `path` current; `on_new(snapshot)` is called after each write."""

    def __init__(
        self,
        settings: Settings,
        path: Path,
        every: float,
        on_new: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.settings, self.path, self.every, self.on_new = settings, Path(path), every, on_new
        self._store: Any = None
        self._mark = ""
        self._built = 0.0
        self.builds = 0  # how many times everything was read (the tests count them)

    def refresh(self) -> bool:
        """Read the store again when it changed: True when a new snapshot was written."""
        from .data import open_dashboard_store
        from .snapshot import build_snapshot, fingerprint, write_snapshot

        if self._store is None:
            self._store = open_dashboard_store(self.settings)
        try:
            mark = fingerprint(self._store)
            stale = time.monotonic() - self._built > self.every * MAX_AGE_INTERVALS
            if mark == self._mark and not stale and self.builds:
                return False
            snapshot = build_snapshot(self._store, mark=mark)
        except Exception as exc:  # the store is away: keep what was shown, say so if nothing
            print(f"cellops dashboard: could not read the store: {exc}", file=sys.stderr)
            if self.builds:
                return False
            snapshot = _failed(exc)
            mark = ""
        write_snapshot(self.path, snapshot)
        self._mark, self._built = mark, time.monotonic()
        self.builds += 1
        if self.on_new is not None:
            self.on_new(snapshot)
        return True

    def run(self, stop: threading.Event, alive: Callable[[], bool] = lambda: True) -> None:
        """Refresh until `stop` is set or `alive()` turns false."""
        while not stop.is_set() and alive():
            self.refresh()
            deadline = time.monotonic() + self.every
            while not stop.is_set() and alive() and time.monotonic() < deadline:
                stop.wait(min(1.0, deadline - time.monotonic()))


def _failed(exc: BaseException) -> dict[str, Any]:
    from .snapshot import FORMAT

    reason = f"could not read the store: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    return {"format": FORMAT, "built": time.time(), "stamp": "", "models": [], "pages": {},
            "error": reason, "fingerprint": ""}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from ..config import load_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--every", type=float, default=30.0)
    parser.add_argument("--parent", type=int, default=0, help="end when this process ends")
    args = parser.parse_args(argv)
    refresher = Refresher(load_settings(os.environ.get("CELLOPS_DASHBOARD_PROJECT")),
                          args.snapshot, args.every)  # fmt: skip
    parent = args.parent or os.getppid()
    with contextlib.suppress(KeyboardInterrupt):
        refresher.run(threading.Event(), alive=lambda: os.getppid() == parent)


if __name__ == "__main__":
    main()
