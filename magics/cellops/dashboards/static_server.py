"""`cellops dashboard --static`: the dashboard for a crowd, with no kernel at all.

One process: a refresher thread keeps the snapshot current (the store read once per refresh
interval, and only when something changed) and, after each new one, rewrites the static page
and its copy under `reports/` (atomically); a small threaded HTTP server on 127.0.0.1 hands
every viewer that same page (a model and a column chooser in plain HTML/JS; the page reloads
itself when a newer snapshot exists). Read-only: nothing a viewer sends runs anywhere.

The same token as the Voila server: `?token=T` (which sets a cookie for the page's own
requests), the cookie, or `Authorization: token T`; without it, 403.
"""

from __future__ import annotations

import hmac
import http.server
import json
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from ..config import Settings
from .page import static_page

STAMP_PATH = "/cellops/stamp"
_FORBIDDEN = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>cellops drift dashboard</title>"
    "</head><body><p>This dashboard asks for its token: open the address "
    "<code>cellops dashboard --static</code> printed (it ends in <code>?token=...</code>)."
    "</p></body></html>"
)


class StaticDashboard:
    """The page every viewer gets, rebuilt once per new snapshot."""

    def __init__(self, refresh_seconds: float, model: str | None = None,
                 export: Path | None = None):  # fmt: skip
        self.refresh_seconds, self.model, self.export = refresh_seconds, model, export
        self.snapshot: dict[str, Any] | None = None
        self._pages: dict[str | None, bytes] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()

    def update(self, snapshot: dict[str, Any]) -> None:
        """A new snapshot: forget the pages drawn from the old one; rewrite the export."""
        with self._lock:
            self.snapshot, self._pages = snapshot, {}
        if self.export is not None:
            from .._fs import atomic_write_text

            self.export.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.export, static_page(snapshot, self.model))
        self.ready.set()

    def page(self, model: str | None) -> bytes:
        with self._lock:
            found = self._pages.get(model)
            if found is None:
                every = min(self.refresh_seconds, 10.0)
                text = static_page(self.snapshot or {}, model or self.model,
                                   stamp_url=STAMP_PATH, stamp_every=every)  # fmt: skip
                found = self._pages.setdefault(model, text.encode())
                if len(self._pages) > 64:  # models asked for that do not exist
                    self._pages = {model: found}
            return found

    def stamp(self) -> bytes:
        built = (self.snapshot or {}).get("built", "")
        return json.dumps({"built": built}).encode()


def make_server(dashboard: StaticDashboard, port: int, token: str | None) -> http.server.HTTPServer:
    """The HTTP server on 127.0.0.1:`port` (not started)."""
    cookie = f"cellops-dashboard-{port}"

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "cellops-dashboard"

        def do_GET(self) -> None:  # http.server's name
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            given = (query.get("token") or [""])[0]
            if token is not None and not self._allowed(given):
                return self._send(403, _FORBIDDEN.encode(), "text/html")
            extra = {}
            if token is not None and given:  # the page's own requests carry the cookie
                extra["Set-Cookie"] = f"{cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
            if url.path == "/":
                model = (query.get("model") or [""])[0].strip() or None
                return self._send(200, dashboard.page(model), "text/html", extra)
            if url.path == STAMP_PATH:
                return self._send(200, dashboard.stamp(), "application/json", extra)
            return self._send(404, b"not found", "text/plain")

        def _allowed(self, given: str) -> bool:
            header = self.headers.get("Authorization", "")
            candidates = [given, header[6:] if header.lower().startswith("token ") else ""]
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == cookie:
                    candidates.append(value)
            return any(c and hmac.compare_digest(c.encode(), token.encode()) for c in candidates)

        def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the token stays here
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a crowd's page views are not worth a line each

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def serve_static(
    settings: Settings,
    port: int,
    token: str | None,
    model: str | None = None,
    refresh_seconds: float = 30.0,
    export: Path | None = None,
    ready: Any = None,
) -> None:
    """Serve until interrupted. `ready(url_port)` is called once the first snapshot is in
    and the server listens."""
    from .refresher import Refresher
    from .server import snapshot_path

    dashboard = StaticDashboard(refresh_seconds, model, export)
    refresher = Refresher(settings, snapshot_path(settings, port), refresh_seconds,
                          on_new=dashboard.update)  # fmt: skip
    stop = threading.Event()
    server = make_server(dashboard, port, token)
    thread = threading.Thread(target=refresher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        dashboard.ready.wait()
        if ready is not None:
            ready(port)
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        server.server_close()
        refresher.path.unlink(missing_ok=True)
