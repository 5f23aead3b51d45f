"""`cellops dashboard`: serve the drift dashboard with Voila on loopback (a bounded number of
kernels, views sharing one read of the store), serve it without kernels (`--static`), or
export it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click

from ..config import load_settings, machine_kernel_bound
from ..dashboards.export import DEFAULT_EXPORT, export_dashboard, export_path
from ..dashboards.server import (
    DEFAULT_PORT,
    NOTEBOOK,
    Limits,
    dashboard_url,
    free_port,
    new_token,
    open_browser,
    snapshot_path,
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
    "--max-kernels", type=int, metavar="N",
    help="At most N kernels at once; more views wait in line, seeing the shared data meanwhile "
    f"(default: dashboard_max_kernels in [tool.cellops], else sized to this machine: "
    f"{machine_kernel_bound()} here).",
)  # fmt: skip
@click.option(
    "--refresh", type=float, metavar="SECONDS",
    help="Ask the store for news every SECONDS; everything is read again only when something "
    "changed, once for all views (default: dashboard_refresh_seconds, 30).",
)  # fmt: skip
@click.option(
    "--cull-after", type=float, metavar="SECONDS",
    help="Shut down a closed view's kernel after SECONDS idle (default: "
    "dashboard_cull_seconds, 60).",
)  # fmt: skip
@click.option(
    "--preheat/--no-preheat",
    default=True,
    help="Keep a pre-heated kernel ready for the next page view (default: on).",
)
@click.option("--pool-size", type=int, default=1, show_default=True, help="Pre-heated kernels.")
@click.option(
    "--static", "static", is_flag=True,
    help="Serve a read-only page without kernels (for a crowd): refreshed after each new check, "
    f"also written to {DEFAULT_EXPORT} (or -o).",
)  # fmt: skip
@click.option("--export", is_flag=True, help="Write a static HTML copy instead of serving.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help=f"Where --export and --static write (default {DEFAULT_EXPORT}).",
)  # fmt: skip
@click.option(
    "--notebook", type=click.Path(dir_okay=False, path_type=Path),
    help=f"The dashboard notebook Voila serves (default {NOTEBOOK}).",
)  # fmt: skip
def dashboard_command(
    model, port, no_browser, no_token, max_kernels, refresh, cull_after, preheat, pool_size,
    static, export, output, notebook,
) -> None:  # fmt: skip
    """Serve the drift dashboard with Voila on 127.0.0.1, serve it without kernels, or export
    it to static HTML.

    The Voila server runs at most --max-kernels kernels: further views get the shared data at
    once, with their place in line for a live view. The store is read by one refresher for all
    views, never once per view. Both servers ask for a token, printed in their URL (as
    `jupyter lab` does): other users of the machine can reach 127.0.0.1 too. The export needs
    none.

    \b
    Examples:
      cellops dashboard
      cellops dashboard --model fraud --port 8870 --no-browser
      cellops dashboard --max-kernels 4 --cull-after 30 --refresh 10
      cellops dashboard --static --model fraud
      cellops dashboard --export --model fraud -o reports/drift_fraud.html
    """
    settings = load_settings()
    if export and static:
        raise CellopsUsageError("--export writes a file, --static serves one: choose one")
    if notebook and (export or static):
        raise CellopsUsageError("--notebook goes with the Voila server: --export and --static "
                                "draw the page without a notebook")  # fmt: skip
    if export:
        target = export_dashboard(settings, output, model)
        click.echo(f"wrote {relative(target, settings.root)}")
        return
    if output and not static:
        raise CellopsUsageError("-o/--output goes with --export or --static")
    if pool_size < 1:
        raise CellopsUsageError("--pool-size must be at least 1 (or use --no-preheat)")
    limits = Limits.of(settings, max_kernels=max_kernels, cull_seconds=cull_after,
                       refresh_seconds=refresh)  # fmt: skip
    chosen = free_port() if port is None else port
    if port is not None and free_port(port) != port:
        raise CellopsUsageError(
            f"port {port} is in use on 127.0.0.1: choose another with --port, or leave it out"
        )
    token = None if no_token else new_token()
    if no_token:
        click.echo(
            "warning: serving without a token (--no-token): any user of this machine can open "
            "the dashboard (model names, metrics, drift)"
            + ("" if static else " and run code in its kernels"),
            err=True,
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the server too, as on Ctrl-C
    if static:
        _serve_static(settings, chosen, token, model, limits, export_path(settings, output),
                      not no_browser)  # fmt: skip
        return
    process = start_server(settings, chosen, model, preheat, pool_size, notebook, token=token,
                           limits=limits)  # fmt: skip
    page = None
    try:
        wait_ready(process, chosen, snapshot=snapshot_path(settings, chosen))
        url = dashboard_url(chosen, model, token)
        click.echo(f"drift dashboard: {url}  (at most {limits.max_kernels} kernels; Ctrl-C "
                   "stops it)")  # fmt: skip
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


def _serve_static(settings, port, token, model, limits, export, browser) -> None:  # fmt: skip
    from ..dashboards.static_server import serve_static

    pages = []

    def ready(port: int) -> None:
        url = dashboard_url(port, model, token)
        click.echo(f"drift dashboard (static, no kernels): {url}  (Ctrl-C stops it)")
        click.echo(f"  refreshed from the store every {limits.refresh_seconds:g} s when it "
                   f"changed; also written to {relative(export, settings.root)}")  # fmt: skip
        if browser:
            pages.append(open_browser(url))

    try:
        serve_static(settings, port, token, model, limits.refresh_seconds, export, ready)
    except KeyboardInterrupt:
        pass
    finally:
        for page in pages:
            if page is not None:
                page.unlink(missing_ok=True)
