"""The drift dashboard served by Voila on loopback, with a bound on its kernels.

`notebooks/drift_dashboard.ipynb` served by Voila (`python -m cellops.cli.dashboard_voila`:
Voila with a bounded kernel manager, a line in front of the page and one refresher of the
shared data, see that module) on 127.0.0.1 with the project's store in the kernels'
environment, Voila's pre-heated kernels on by default (a pool kernel has run the imports
before a page asks; it then waits for the page's query string, so `?model=NAME` still works),
and a template without Voila's CDN stylesheets. At most `max_kernels` kernels run at once;
a closed view's kernel is culled after `cull_seconds` idle; the store is read by the refresher
(at most once per `refresh_seconds`, and only when something changed), never by a view.

Served with a token by default, as `jupyter lab` is: anyone who can open the page can read the
registry's models, metrics and drift, and can send code to its kernels over their websocket.
The token reaches Voila through `JUPYTER_TOKEN` in its environment (readable by its own user
only, unlike the command line that `ps` shows everyone), with Voila's `--token` flag: standalone
Voila ignores `--IdentityProvider.token` and turns authentication off unless `Voila.token` is
set or `--token` given, then jupyter_server's IdentityProvider reads `JUPYTER_TOKEN`. The first
page asked for with `?token=` sets jupyter_server's login cookie, which the page's widget
websockets then carry.
"""

from __future__ import annotations

import html
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import Settings
from ..errors import CellopsError, CellopsUsageError

NOTEBOOK = Path("notebooks") / "drift_dashboard.ipynb"
TEMPLATE = "cellops-dashboard"
TEMPLATE_ROOT = Path(__file__).parent / "templates"
DEFAULT_PORT = 8866
READY_TIMEOUT = 60.0
IDLE_KERNEL_SECONDS = 600  # plain Voila's cull time (the benchmark's baseline)
APP_MODULE = "cellops.cli.dashboard_voila"  # Voila with the bound (an adapter: it is tornado)
KERNEL_MANAGER = f"{APP_MODULE}.BoundedKernelManager"
TOKEN_ENV = "JUPYTER_TOKEN"  # jupyter_server's IdentityProvider reads its token from here
_INHERITED_AUTH = (TOKEN_ENV, "JUPYTER_TOKEN_FILE")  # a parent's token must not leak in


def new_token() -> str:
    """A fresh token for one dashboard server (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def dashboard_notebook(settings: Settings, notebook: Path | None = None) -> Path:
    """The project's `notebooks/drift_dashboard.ipynb`, else the one beside cellops' source."""
    candidates = [notebook] if notebook else [settings.root / NOTEBOOK, _source_copy()]
    for path in candidates:
        if path is not None and path.is_file():
            return path.resolve()
    raise CellopsUsageError(
        f"no dashboard notebook at {candidates[0]}; pass --notebook PATH to the "
        "drift_dashboard.ipynb to serve"
    )


def _source_copy() -> Path | None:
    path = Path(__file__).resolve().parents[3] / NOTEBOOK  # a source checkout of cellops
    return path if path.is_file() else None


def kernel_environment(
    settings: Settings, model: str | None = None, snapshot: Path | None = None
) -> dict[str, str]:
    """What the dashboard's kernels need: the store, the project, the default model, and the
    shared snapshot they read instead of the store."""
    from .data import MODEL_ENV, PROJECT_ENV
    from .snapshot import SNAPSHOT_ENV

    env = {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        PROJECT_ENV: str(settings.root),
        "PYTHONWARNINGS": "ignore",
    }
    if model:
        env[MODEL_ENV] = model
    if snapshot is not None:
        env[SNAPSHOT_ENV] = str(snapshot)
    return env


@dataclass(frozen=True)
class Limits:
    """The bound on a served dashboard: kernels at once, seconds before a closed view's
    kernel goes, seconds between looks at the store."""

    max_kernels: int
    cull_seconds: float
    refresh_seconds: float

    @classmethod
    def of(cls, settings: Settings, **given: float | None) -> Limits:
        """The settings' limits (`dashboard_*` in [tool.cellops] or the environment), each
        replaced by its value in `given` when not None (the command line's flags)."""
        from ..config import dashboard_kernel_bound

        found = cls(dashboard_kernel_bound(settings), settings.dashboard_cull_seconds,
                    settings.dashboard_refresh_seconds)  # fmt: skip
        for name, value in given.items():
            if value is None:
                continue
            if not value >= 1:  # also NaN
                flag = LIMIT_FLAGS[name]
                raise CellopsUsageError(f"{flag} must be at least 1, e.g. {flag} 2")
            found = replace(found, **{name: value})
        return found


LIMIT_FLAGS = {"max_kernels": "--max-kernels", "cull_seconds": "--cull-after",
               "refresh_seconds": "--refresh"}  # fmt: skip


def voila_command(
    notebook: Path,
    port: int,
    preheat: bool = True,
    pool_size: int = 1,
    auth: bool = True,
    limits: Limits | None = None,
) -> list[str]:
    """The command line of the dashboard's server (tests and the benchmark start the same):
    Voila with the bound of `limits`, or plain Voila as `voila` runs it when `limits` is None.

    Never the token itself: with `auth`, `--token` makes Voila take it from `JUPYTER_TOKEN`.
    Voila never opens the browser: it would open the page without the token (see
    `open_browser`)."""
    if limits is None:
        command = [sys.executable, "-m", "voila", str(notebook)]
        cull, every = IDLE_KERNEL_SECONDS, 60
    else:
        command = [sys.executable, "-m", APP_MODULE, str(notebook),
                   f"--VoilaConfiguration.multi_kernel_manager_class={KERNEL_MANAGER}",
                   f"--BoundedKernelManager.max_kernels={limits.max_kernels}",
                   f"--DashboardVoila.refresh_seconds={limits.refresh_seconds:g}"]  # fmt: skip
        cull = max(1, round(limits.cull_seconds))
        every = max(1, min(60, cull // 4))
        pool_size = min(pool_size, limits.max_kernels)
    command += [
        f"--port={port}", "--Voila.ip=127.0.0.1", f"--template={TEMPLATE}",
        f"--MappingKernelManager.cull_idle_timeout={cull}",
        f"--MappingKernelManager.cull_interval={every}",
    ]  # fmt: skip
    if preheat:
        command += ["--preheat_kernel=True", f"--pool_size={pool_size}"]
    if auth:  # and its login page must not offer to write a password into ~/.jupyter
        command += ["--token", "--PasswordIdentityProvider.allow_password_change=False"]
    command.append("--no-browser")
    return command


def voila_environment(
    settings: Settings,
    model: str | None = None,
    token: str | None = None,
    snapshot: Path | None = None,
) -> dict[str, str]:
    """This process's environment, plus the kernels' variables, the template's folder and
    the token (none inherited: a `JUPYTER_TOKEN` of the calling shell is not the dashboard's)."""
    from .snapshot import SNAPSHOT_ENV

    env = {k: v for k, v in os.environ.items() if k not in (*_INHERITED_AUTH, SNAPSHOT_ENV)}
    env.update(kernel_environment(settings, model, snapshot))
    paths = [str(TEMPLATE_ROOT), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    env["JUPYTER_PATH"] = os.pathsep.join(paths)
    if token:
        env[TOKEN_ENV] = token
    return env


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """`preferred` when nothing listens there, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise CellopsError("no free port on 127.0.0.1")


def dashboard_url(port: int, model: str | None = None, token: str | None = None) -> str:
    """The page's address: `http://127.0.0.1:PORT/?token=T&model=NAME`, each part if given."""
    from urllib.parse import urlencode

    query = urlencode([(k, v) for k, v in (("token", token), ("model", model)) if v])
    return f"http://127.0.0.1:{port}/" + (f"?{query}" if query else "")


def browser_page(url: str) -> Path:
    """A private file (mode 0600) that sends a browser on to `url`: opening the file keeps the
    token off the browser's command line, as `jupyter lab` does. The caller removes it."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="cellops-dashboard-", suffix=".html")
    quoted = html.escape(url, quote=True)
    with os.fdopen(fd, "w", encoding="utf-8") as page:
        page.write(
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={quoted}">'
            "<title>cellops drift dashboard</title></head>\n"
            f'<body><p><a href="{quoted}">Open the drift dashboard</a></p></body></html>\n'
        )
    return Path(name)


def open_browser(url: str) -> Path | None:
    """Open `url` in the default browser through `browser_page`: the page's file, to remove
    when the server stops, or None when no browser was found."""
    import webbrowser

    page = browser_page(url)
    try:
        opened = webbrowser.open(page.as_uri())
    except webbrowser.Error:
        opened = False
    if not opened:
        page.unlink(missing_ok=True)
        return None
    return page


def wait_ready(
    process: subprocess.Popen,
    port: int,
    timeout: float = READY_TIMEOUT,
    snapshot: Path | None = None,
) -> None:
    """Until Voila answers on `port` (its static files: asking for the page would take a
    kernel) and, when given, the first `snapshot` is written; or raise when it exits or the
    time is up."""
    import urllib.request

    deadline = time.monotonic() + timeout
    probe = f"http://127.0.0.1:{port}/voila/static/voila.js"
    answered = False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CellopsError(f"voila exited with code {process.returncode} before serving")
        try:
            if not answered:
                with urllib.request.urlopen(probe, timeout=2):
                    answered = True
            if snapshot is None or snapshot.exists():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise CellopsError(f"voila did not answer on port {port} within {timeout:.0f} s")


def start_server(
    settings: Settings,
    port: int,
    model: str | None = None,
    preheat: bool = True,
    pool_size: int = 1,
    notebook: Path | None = None,
    *,
    token: str | None,
    limits: Limits | None = None,
    bounded: bool = True,
    **popen: object,
) -> subprocess.Popen:
    """Start the dashboard's server (not waiting for it): the process.

    `token` (from `new_token`) is what `?token=` must carry; None serves the page to anyone who
    can reach the port. No default: whoever starts a server says which. `limits` default to
    the settings'; `bounded=False` starts plain Voila (no bound, no shared snapshot: every
    view reads the store itself), as `cellops dashboard` did before the bound."""
    if token is not None and not token:
        raise ValueError("an empty token: pass new_token(), or None for no token")
    path = dashboard_notebook(settings, notebook)
    limits = (limits or Limits.of(settings)) if bounded else None
    snapshot = snapshot_path(settings, port) if bounded else None
    command = voila_command(path, port, preheat, pool_size, token is not None, limits)
    env = voila_environment(settings, model, token, snapshot)
    return subprocess.Popen(  # our own interpreter and arguments
        command, env=env, cwd=str(settings.root), **popen
    )


def snapshot_path(settings: Settings, port: int) -> Path:
    """Where the server on `port` keeps its shared snapshot (removed when it stops)."""
    return settings.state_dir / "dashboard" / f"snapshot-{port}.json"
