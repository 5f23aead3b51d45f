"""The drift dashboard served by Voila on loopback.

`voila notebooks/drift_dashboard.ipynb` on 127.0.0.1 with the project's store in the kernels'
environment, Voila's pre-heated kernels on by default (a pool kernel has run the imports and
opened the store before a page asks; it then waits for the page's query string, so
`?model=NAME` still works), and a template without Voila's CDN stylesheets.

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
from pathlib import Path

from ..config import Settings
from ..errors import CellopsError, CellopsUsageError

NOTEBOOK = Path("notebooks") / "drift_dashboard.ipynb"
TEMPLATE = "cellops-dashboard"
EXPORT_TEMPLATE = "cellops-export"
TEMPLATE_ROOT = Path(__file__).parent / "templates"
DEFAULT_PORT = 8866
READY_TIMEOUT = 60.0
IDLE_KERNEL_SECONDS = 600  # Voila's beforeunload shutdown is refused (voila#1458): cull instead
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


def kernel_environment(settings: Settings, model: str | None = None) -> dict[str, str]:
    """What the dashboard's kernels need: the store, the project, the default model."""
    from .data import MODEL_ENV, PROJECT_ENV

    env = {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        PROJECT_ENV: str(settings.root),
        "PYTHONWARNINGS": "ignore",
    }
    if model:
        env[MODEL_ENV] = model
    return env


def voila_command(
    notebook: Path, port: int, preheat: bool = True, pool_size: int = 1, auth: bool = True
) -> list[str]:
    """The `voila` command line of the dashboard (tests and the benchmark start the same).

    Never the token itself: with `auth`, `--token` makes Voila take it from `JUPYTER_TOKEN`.
    Voila never opens the browser: it would open the page without the token (see
    `open_browser`)."""
    command = [
        sys.executable, "-m", "voila", str(notebook),
        f"--port={port}", "--Voila.ip=127.0.0.1", f"--template={TEMPLATE}",
        f"--MappingKernelManager.cull_idle_timeout={IDLE_KERNEL_SECONDS}",
        "--MappingKernelManager.cull_interval=60",
    ]  # fmt: skip
    if preheat:
        command += ["--preheat_kernel=True", f"--pool_size={pool_size}"]
    if auth:  # and its login page must not offer to write a password into ~/.jupyter
        command += ["--token", "--PasswordIdentityProvider.allow_password_change=False"]
    command.append("--no-browser")
    return command


def voila_environment(
    settings: Settings, model: str | None = None, token: str | None = None
) -> dict[str, str]:
    """This process's environment, plus the kernels' variables, the template's folder and
    the token (none inherited: a `JUPYTER_TOKEN` of the calling shell is not the dashboard's)."""
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_AUTH}
    env.update(kernel_environment(settings, model))
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


def wait_ready(process: subprocess.Popen, port: int, timeout: float = READY_TIMEOUT) -> None:
    """Until Voila answers on `port` (its static files: asking for the page would take a
    kernel), or raise when it exits or the time is up."""
    import urllib.request

    deadline = time.monotonic() + timeout
    probe = f"http://127.0.0.1:{port}/voila/static/voila.js"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CellopsError(f"voila exited with code {process.returncode} before serving")
        try:
            with urllib.request.urlopen(probe, timeout=2):
                return
        except OSError:
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
    **popen: object,
) -> subprocess.Popen:
    """Start Voila on the dashboard (not waiting for it): the process.

    `token` (from `new_token`) is what `?token=` must carry; None serves the page to anyone who
    can reach the port. No default: whoever starts a server says which."""
    if token is not None and not token:
        raise ValueError("an empty token: pass new_token(), or None for no token")
    path = dashboard_notebook(settings, notebook)
    command = voila_command(path, port, preheat, pool_size, auth=token is not None)
    env = voila_environment(settings, model, token)
    return subprocess.Popen(  # our own interpreter and arguments
        command, env=env, cwd=str(settings.root), **popen
    )
