"""Voila, bounded: the server `cellops dashboard` runs (`python -m cellops.cli.dashboard_voila`).

Plain Voila starts a kernel for every page view and caps nothing (voila#617, #1195): a crowd
opening the dashboard after an alert starts a crowd of kernels on one machine. Here:

- `BoundedKernelManager` (Voila's `multi_kernel_manager_class`, so its pre-heated pool is built
  on it) never has more than `max_kernels` kernels alive or starting: a start beyond that waits,
  first come first served, until one is shut down. The pool's refill waits the same way, so the
  pool refills itself as soon as a closed view's kernel is culled (jupyter_server's culler,
  `cull_idle_timeout`: a kernel with no page connected, idle that long, is shut down).
- `BoundedVoilaHandler`, in front of Voila's page handler, lets a view through only when a
  kernel is ready for it (`admission.Admission`); any other view is answered at once with the
  shared data (the snapshot every view reads, see `cellops.dashboards.snapshot`) and a banner
  giving its place in line; that page asks for its turn and moves to the live view when a
  kernel frees up.
- `DashboardVoila` runs the one refresher that reads the store for everybody.

Every route is `@tornado.web.authenticated`, with Voila's token and loopback as before.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import url_path_join
from traitlets import Float, Integer, Unicode, default
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

from ..dashboards.admission import LIVE, Admission
from ..dashboards.page import static_page
from ..dashboards.snapshot import SNAPSHOT_ENV, read_snapshot

WAIT_STEP = 0.2  # seconds between looks at a full bound


class DashboardStopping(RuntimeError):
    """A kernel start still waiting for room when the server stops."""


class BoundedKernelManager(AsyncMappingKernelManager):
    """A kernel manager that never has more than `max_kernels` kernels alive or starting."""

    max_kernels = Integer(2, config=True, help="The most kernels alive or starting at once.")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._starting = 0
        self._line = asyncio.Lock()  # first come first served among waiting starts
        self._closing = False
        self.peak = 0  # the most kernels alive or starting at once, so far

    def in_use(self) -> int:
        """Kernels alive or starting."""
        return len(self._kernels) + self._starting

    async def start_kernel(self, *, kernel_id: str | None = None, **kwargs: Any) -> str:
        if kernel_id is not None and kernel_id in self:  # an existing kernel: no new process
            return await super().start_kernel(kernel_id=kernel_id, **kwargs)
        async with self._line:
            while self.in_use() >= self.max_kernels:
                if self._closing:
                    raise DashboardStopping("the dashboard server is stopping")
                await asyncio.sleep(WAIT_STEP)
            self._starting += 1
            self.peak = max(self.peak, self.in_use())
        try:
            return await super().start_kernel(kernel_id=kernel_id, **kwargs)
        finally:
            self._starting -= 1

    async def shutdown_all(self, now: bool = False) -> None:
        self._closing = True  # starts still waiting give up, so the pool's shutdown ends
        await super().shutdown_all(now=now)


class _DashboardHandler(APIHandler):
    @property
    def dashboard(self) -> DashboardVoila:
        return self.settings["cellops_dashboard"]


class QueueHandler(_DashboardHandler):
    """A waiting page asks for its turn: `{"state": "wait", "place": 3}`, or `"go"` with the
    URL that takes the kernel kept for it."""

    @tornado.web.authenticated
    def get(self) -> None:
        ticket = self.get_argument("ticket", "")
        state, place = self.dashboard.admission.poll(ticket)
        url = url_path_join(self.base_url, f"?ticket={ticket}")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"state": state, "place": place, "url": url}))


class StatusHandler(_DashboardHandler):
    """What the bound looks like now: kernels alive and starting, the peak, the line."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.dashboard.status()))


class KernelListHandler(_DashboardHandler):
    """`GET /api/kernels`, as jupyter_server answers it (Voila serves only single kernels);
    no POST: kernels start for page views only."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.finish(json.dumps(self.kernel_manager.list_kernels(), default=str))


class BoundedVoilaHandler(TornadoVoilaHandler):
    """Voila's page, for views the line lets through; the shared data and a place in line for
    the others."""

    @tornado.web.authenticated
    async def get(self, path: str | None = None) -> None:
        dashboard: DashboardVoila = self.settings["cellops_dashboard"]
        state, ticket = dashboard.admission.enter(self.get_argument("ticket", None))
        if state != LIVE:
            self.set_header("Cache-Control", "no-cache, no-store, must-revalidate")
            self.finish(dashboard.waiting_page(ticket.id, self.get_argument("model", None)))
            return
        dashboard.inflight += 1  # until its kernel is counted (without pre-heating)
        try:
            await super().get(path)
        finally:
            dashboard.inflight -= 1


class DashboardVoila(Voila):
    """Voila with the bound, the line and the refresher (see the module's docstring)."""

    snapshot = Unicode(config=True, help="The snapshot file every view reads.")
    refresh_seconds = Float(30.0, config=True, help="How often the store is asked what changed.")
    claim_seconds = Float(30.0, config=True, help="How long a turn is kept for its page.")

    @default("snapshot")
    def _default_snapshot(self) -> str:
        return os.environ.get(SNAPSHOT_ENV, "")

    def init_settings(self) -> dict[str, Any]:
        settings = super().init_settings()
        settings["cellops_dashboard"] = self
        self.inflight = 0
        self.admission = Admission(self.free, claim_seconds=self.claim_seconds)
        self._shown: tuple[float, dict[str, Any] | None] = (-1.0, None)
        return settings

    def init_handlers(self) -> list:
        handlers = []
        for route in super().init_handlers():
            if len(route) > 1 and route[1] is TornadoVoilaHandler:
                route = (route[0], BoundedVoilaHandler, *route[2:])
            handlers.append(route)
        ours = [(r"/cellops/queue", QueueHandler), (r"/cellops/status", StatusHandler),
                (r"/api/kernels", KernelListHandler)]  # fmt: skip
        return [(url_path_join(self.server_url, path), h) for path, h in ours] + handlers

    # -- the bound, as the line sees it -----------------------------------------------------

    def free(self) -> int:
        """Views that can start now: ready pre-heated kernels (Voila takes the first of its
        pool), else room under the bound."""
        manager = self.kernel_manager
        pools = getattr(manager, "_pools", None)
        if self.voila_configuration.preheat_kernel and pools is not None:
            ready = 0
            for task in pools.get(manager.notebook_path, []):
                if not task.done() or task.cancelled() or task.exception() is not None:
                    break
                ready += 1
            return ready
        return manager.max_kernels - manager.in_use() - self.inflight

    def status(self) -> dict[str, Any]:
        manager = self.kernel_manager
        snapshot = self._snapshot()
        self.admission.tidy()
        return {
            "bound": manager.max_kernels, "kernels": len(manager.list_kernel_ids()),
            "starting": manager._starting, "peak": manager.peak, "free": self.free(),
            "waiting": self.admission.waiting, "admitted": self.admission.admitted,
            "snapshot_built": snapshot.get("built") if snapshot else None,
        }  # fmt: skip

    # -- the shared data ----------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any] | None:
        """The refresher's latest snapshot, parsed once per new file."""
        try:
            mtime = os.stat(self.snapshot).st_mtime if self.snapshot else -1.0
        except OSError:
            mtime = -1.0
        if mtime != self._shown[0]:
            self._shown = (mtime, read_snapshot(self.snapshot))
        return self._shown[1]

    def waiting_page(self, ticket: str, model: str | None) -> str:
        snapshot = self._snapshot() or {
            "models": [], "pages": {}, "built": "",
            "error": "the dashboard is reading the store for the first time: your live view "
            "follows in a moment",
        }  # fmt: skip
        queue = {
            "url": url_path_join(self.base_url, f"cellops/queue?ticket={ticket}"),
            "place": self.admission.place(ticket),
            "bound": self.kernel_manager.max_kernels,
        }
        return static_page(snapshot, model, queue=queue)

    # -- the refresher ----------------------------------------------------------------------

    def start(self) -> None:
        refresher = None
        if self.snapshot:
            Path(self.snapshot).parent.mkdir(parents=True, exist_ok=True)
            refresher = subprocess.Popen(  # our own interpreter and module
                [sys.executable, "-m", "cellops.dashboards.refresher", "--snapshot",
                 self.snapshot, "--every", str(self.refresh_seconds), "--parent",
                 str(os.getpid())],
            )  # fmt: skip
        try:
            super().start()
        finally:
            if refresher is not None:
                refresher.terminate()
                try:
                    refresher.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    refresher.kill()
                Path(self.snapshot).unlink(missing_ok=True)


main = DashboardVoila.launch_instance

if __name__ == "__main__":
    main()
