"""What one live view (a Voila kernel running `notebooks/drift_dashboard.ipynb`) shows, without
reading the store itself when a server shares a snapshot.

Served by `cellops dashboard`, the kernel finds the snapshot's file in `CELLOPS_DASHBOARD_SNAPSHOT`
and only lays out its fragments: no MLflow, no matplotlib in the kernel, milliseconds a view.
Under plain `voila notebooks/drift_dashboard.ipynb` (no snapshot) it reads the store for the
models it is asked for, as before.
"""

from __future__ import annotations

import os
from typing import Any

from .snapshot import SNAPSHOT_ENV, read_snapshot, wait_for_snapshot

FIRST_SNAPSHOT_WAIT = 120.0  # seconds a view waits for the server's first snapshot


class Pages:
    """The models and each model's fragments (see `render.model_page`)."""

    def __init__(self, path: str | None = None):
        self.path = path if path is not None else os.environ.get(SNAPSHOT_ENV, "")
        self._store: Any = None
        self._read: dict[str, dict[str, Any]] = {}
        self.snapshot = wait_for_snapshot(self.path, FIRST_SNAPSHOT_WAIT) if self.path else None
        if self.snapshot is None:  # plain Voila, or no snapshot came: read the store here
            from .data import model_names

            self.snapshot = {"models": model_names(self.store), "pages": {}}

    @property
    def store(self) -> Any:
        if self._store is None:
            from .data import open_dashboard_store

            self._store = open_dashboard_store()
        return self._store

    @property
    def models(self) -> list[str]:
        return list(self.snapshot.get("models", []))

    @property
    def problem(self) -> str:
        """Why there is nothing to show (the store could not be read), or ''."""
        return self.snapshot.get("error", "")

    def page(self, name: str) -> dict[str, Any]:
        """Model `name`'s fragments: from the newest snapshot, else read here (once)."""
        if self.path:
            self.snapshot = read_snapshot(self.path) or self.snapshot
        found = self.snapshot.get("pages", {}).get(name)
        if found is None:
            if name not in self._read:
                from .render import model_page

                self._read[name] = model_page(self.store, name)
            found = self._read[name]
        return found
