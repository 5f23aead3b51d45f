"""`cellops dashboard`: the drift dashboard served by Voila on loopback, or exported to HTML.

Serving runs `voila notebooks/drift_dashboard.ipynb` on 127.0.0.1 with the project's store in
the kernels' environment, Voila's pre-heated kernels on by default (a pool kernel has run the
imports and opened the store before a page asks; it then waits for the page's query string,
so `?model=NAME` still works), and a template without Voila's CDN stylesheets. Exporting runs
the same notebook with nbclient and writes a static HTML copy (no code, no widgets) under
`reports/`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from .cli_common import Command
from .config import Settings, load_settings
from .errors import CellopsError, CellopsUsageError

NOTEBOOK = Path("notebooks") / "drift_dashboard.ipynb"
TEMPLATE = "cellops-dashboard"
EXPORT_TEMPLATE = "cellops-export"
TEMPLATE_ROOT = Path(__file__).parent / "monitoring" / "dashboard_template"
DEFAULT_PORT = 8866
DEFAULT_EXPORT = Path("reports") / "drift_dashboard.html"
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
    path = Path(__file__).resolve().parents[2] / NOTEBOOK  # a source checkout of cellops
    return path if path.is_file() else None


def kernel_environment(settings: Settings, model: str | None = None) -> dict[str, str]:
    """What the dashboard's kernels need: the store, the project, the default model."""
    from .monitoring.dashboard_data import MODEL_ENV, PROJECT_ENV

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


def export_dashboard(
    settings: Settings,
    output: Path | None = None,
    model: str | None = None,
    notebook: Path | None = None,
    timeout: float = 300,
) -> Path:
    """Execute the dashboard notebook and write its outputs as one static HTML file."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    from ._fs import atomic_write_text
    from ._process import environment

    path = dashboard_notebook(settings, notebook)
    target = Path(output) if output else settings.root / DEFAULT_EXPORT
    if not target.is_absolute():
        target = settings.root / target
    if target.suffix.lower() not in (".html", ".htm"):
        raise CellopsUsageError(f"the export is an HTML file: -o {target.with_suffix('.html')}")
    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
    try:
        with environment(**kernel_environment(settings, model)):
            client.execute()
    except CellExecutionError as exc:
        raise CellopsError(f"the dashboard notebook failed: {str(exc).splitlines()[-1]}") from None
    exporter = HTMLExporter(
        template_name=EXPORT_TEMPLATE,
        extra_template_basedirs=[str(TEMPLATE_ROOT / "nbconvert" / "templates")],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    atomic_write_text(target, body)
    return target


@click.command(name="dashboard", cls=Command)
@click.option("--model", metavar="NAME", help="The model shown first (also ?model=NAME).")
@click.option("--port", type=int, default=None, help=f"Port on 127.0.0.1 (default {DEFAULT_PORT}).")
@click.option("--no-browser", is_flag=True, help="Print the URL; do not open a browser.")
@click.option(
    "--preheat/--no-preheat",
    default=True,
    help="Keep a pre-heated kernel ready for the next page view (default: on).",
)
@click.option("--pool-size", type=int, default=1, show_default=True, help="Pre-heated kernels.")
@click.option("--export", is_flag=True, help="Write a static HTML copy instead of serving.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help=f"Where --export writes (default {DEFAULT_EXPORT}).",
)  # fmt: skip
@click.option(
    "--notebook", type=click.Path(dir_okay=False, path_type=Path),
    help=f"The dashboard notebook (default {NOTEBOOK}).",
)  # fmt: skip
def dashboard_command(
    model, port, no_browser, preheat, pool_size, export, output, notebook
) -> None:  # fmt: skip
    """Serve the drift dashboard with Voila on 127.0.0.1, or export it to static HTML.

    \b
    Examples:
      cellops dashboard
      cellops dashboard --model fraud --port 8870 --no-browser
      cellops dashboard --export --model fraud -o reports/drift_fraud.html
    """
    settings = load_settings()
    if export:
        target = export_dashboard(settings, output, model, notebook)
        click.echo(f"wrote {_relative(target, settings.root)}")
        return
    if output:
        raise CellopsUsageError("-o/--output goes with --export")
    if pool_size < 1:
        raise CellopsUsageError("--pool-size must be at least 1 (or use --no-preheat)")
    chosen = free_port() if port is None else port
    if port is not None and free_port(port) != port:
        raise CellopsUsageError(
            f"port {port} is in use on 127.0.0.1: choose another with --port, or leave it out"
        )
    process = start_server(
        settings, chosen, model, preheat, pool_size, notebook, browser=not no_browser
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop Voila too, as on Ctrl-C
    try:
        wait_ready(process, chosen)
        click.echo(f"drift dashboard: {dashboard_url(chosen, model)}  (Ctrl-C stops it)")
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
