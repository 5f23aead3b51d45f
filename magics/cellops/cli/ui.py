"""`cellops ui`: MLflow's UI on the project's store, opened on the runs, a run or a model."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys

import click

from ._common import Command


@click.command(name="ui", cls=Command)
@click.argument("target", required=False, metavar="[NOTEBOOK | RUN_ID | models:/NAME[/V|@ALIAS]]")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: free).")
@click.option("--no-browser", is_flag=True, help="Print the link; do not open a browser.")
def ui_command(target: str | None, port: int | None, no_browser: bool) -> None:
    """Open what cellops recorded in MLflow's UI: a notebook's runs, a run, or a model.

    Starts `mlflow ui` on this project's store on 127.0.0.1 and prints the link to the page,
    in MLflow's "Model training" view (not its GenAI overview); Ctrl-C stops it. With a
    tracking server (MLFLOW_TRACKING_URI=http...) or `mlflow_ui_url` set, or while another
    `cellops ui` of this project runs, nothing is started: only the link is printed.

    \b
    Examples:
      cellops ui notebooks/quickstart.ipynb       # the notebook's session and step runs
      cellops ui 3f2a9c...                        # one run (ids as `cellops steps` prints)
      cellops ui models:/fraud@champion --no-browser
    """
    from ..errors import UiServerError
    from ..store.links import configured_ui_url, running_ui
    from ..store.ui_server import free_port, resolve_pages, running_ui_server, target_settings

    settings = target_settings(target)
    pages = resolve_pages(settings, target)
    base = configured_ui_url(settings) or (None if port else running_ui(settings))
    if base:  # a UI is there already: the link is all it takes
        _show(pages, base, no_browser)
        return
    chosen = free_port(port)
    click.echo(f"starting mlflow ui on {settings.tracking_uri} ...", err=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the server too, as on Ctrl-C
    try:
        with running_ui_server(settings, chosen) as server:
            _show(pages, server.url, no_browser)
            click.echo(f"mlflow ui serves {settings.tracking_uri} (Ctrl-C stops it)", err=True)
            code = server.process.wait()
            raise UiServerError(
                f"mlflow ui stopped by itself (exit code {code}); its log ({server.log}) ends "
                f"with:\n{server.log_tail()}"
            )
    except KeyboardInterrupt:
        click.echo("stopped mlflow ui", err=True)


def _show(pages: list, base: str, no_browser: bool) -> None:  # UiLinks
    """Print the page's link alone on the first line (for scripts), the others after it, then
    open the first unless told not to."""
    first, *others = (dataclasses.replace(page, base=base) for page in pages)
    click.echo(first.url)
    for page in others:
        click.echo(f"  {page.what}: {page.url}")
    if not no_browser:
        import webbrowser

        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(first.url)
