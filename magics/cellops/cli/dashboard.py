"""`cellops dashboard`: serve the drift dashboard with Voila on loopback, or export it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click

from ..config import load_settings
from ..dashboards.export import DEFAULT_EXPORT, export_dashboard
from ..dashboards.server import (
    DEFAULT_PORT,
    NOTEBOOK,
    dashboard_url,
    free_port,
    new_token,
    open_browser,
    start_server,
    wait_ready,
)
from ..errors import CellopsUsageError
from ._common import Command, relative


@click.command(name="dashboard", cls=Command)
@click.option("--model", metavar="NAME", help="The model shown first (also ?model=NAME).")
@click.option("--port", type=int, default=None, help=f"Port on 127.0.0.1 (default {DEFAULT_PORT}).")
@click.option("--no-browser", is_flag=True, help="Print the URL; do not open a browser.")
@click.option(
    "--no-token",
    is_flag=True,
    help="Serve without a token: any user of this machine can open the dashboard.",
)
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
    model, port, no_browser, no_token, preheat, pool_size, export, output, notebook
) -> None:  # fmt: skip
    """Serve the drift dashboard with Voila on 127.0.0.1, or export it to static HTML.

    The server asks for a token, printed in its URL (as `jupyter lab` does): other users of
    the machine can reach 127.0.0.1 too. The static export needs none.

    \b
    Examples:
      cellops dashboard
      cellops dashboard --model fraud --port 8870 --no-browser
      cellops dashboard --export --model fraud -o reports/drift_fraud.html
    """
    settings = load_settings()
    if export:
        target = export_dashboard(settings, output, model, notebook)
        click.echo(f"wrote {relative(target, settings.root)}")
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
    token = None if no_token else new_token()
    process = start_server(settings, chosen, model, preheat, pool_size, notebook, token=token)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop Voila too, as on Ctrl-C
    page = None
    try:
        wait_ready(process, chosen)
        url = dashboard_url(chosen, model, token)
        if no_token:
            click.echo(
                "warning: serving without a token (--no-token): any user of this machine can "
                "open the dashboard (model names, metrics, drift) and run code in its kernels",
                err=True,
            )
        click.echo(f"drift dashboard: {url}  (Ctrl-C stops it)")
        if not no_browser:
            page = open_browser(url)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if page is not None:
            page.unlink(missing_ok=True)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
