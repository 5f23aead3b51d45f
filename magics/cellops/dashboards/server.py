"""The drift dashboard served by Voila on loopback.

`voila notebooks/drift_dashboard.ipynb` on 127.0.0.1 with the project's store in the kernels'
environment, Voila's pre-heated kernels on by default (a pool kernel has run the imports and
opened the store before a page asks; it then waits for the page's query string, so
`?model=NAME` still works), and a template without Voila's CDN stylesheets.
"""

from __future__ import annotations

import os
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
    notebook: Path, port: int, preheat: bool = True, pool_size: int = 1, browser: bool = False
) -> list[str]:
    """The `voila` command line of the dashboard (tests and the benchmark start the same)."""
    command = [
        sys.executable, "-m", "voila", str(notebook),
        f"--port={port}", "--Voila.ip=127.0.0.1", f"--template={TEMPLATE}",
        f"--MappingKernelManager.cull_idle_timeout={IDLE_KERNEL_SECONDS}",
        "--MappingKernelManager.cull_interval=60",
    ]  # fmt: skip
    if preheat:
        command += ["--preheat_kernel=True", f"--pool_size={pool_size}"]
    if not browser:
        command.append("--no-browser")
    return command


def voila_environment(settings: Settings, model: str | None = None) -> dict[str, str]:
    """This process's environment, plus the kernels' variables and the template's folder."""
    env = {**os.environ, **kernel_environment(settings, model)}
    paths = [str(TEMPLATE_ROOT), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    env["JUPYTER_PATH"] = os.pathsep.join(paths)
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


def dashboard_url(port: int, model: str | None = None) -> str:
    from urllib.parse import quote

    return f"http://127.0.0.1:{port}/" + (f"?model={quote(model)}" if model else "")


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
    browser: bool = False,
    **popen: object,
) -> subprocess.Popen:
    """Start Voila on the dashboard (not waiting for it): the process."""
    path = dashboard_notebook(settings, notebook)
    command = voila_command(path, port, preheat, pool_size, browser)
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, env=voila_environment(settings, model), cwd=str(settings.root), **popen
    )
