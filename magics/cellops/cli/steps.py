"""`cellops steps` and `cellops store`: what the project's steps and store hold."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import Command, relative


@click.command(cls=Command)
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path), required=False)
def steps(notebook: Path | None) -> None:
    """The steps of NOTEBOOK: fresh, cached, stale, failed or never run.

    Without a kernel, a step is stale when its code changed, when a value its parameters cell
    assigns (`NAME = literal`; without a cell tagged `parameters`, the cells before the first
    step) differs from the one it ran with, or when a step upstream of it is.
    Without NOTEBOOK, every notebook of the project that has step records is listed.
    """
    from ..config import load_settings
    from ..steps.report import file_statuses
    from ..steps.state import notebook_labels
    from ..steps.status import format_table
    from ..store.embedded import check_store

    settings = load_settings(notebook.resolve().parent if notebook else None)
    check_store(settings.tracking_uri)  # a damaged store is said, not listed from
    if notebook is not None:
        if not notebook.is_file():
            raise click.UsageError(f"{notebook} does not exist; give the path of a .ipynb file")
        label = relative(notebook.resolve(), settings.root)
        try:
            statuses = file_statuses(settings, label, notebook)
        except ValueError as exc:
            raise click.UsageError(f"{notebook} is not a readable notebook: {exc}") from None
        click.echo(f"{label}\n{format_table(statuses)}")
        return
    labels = notebook_labels(settings)
    if not labels:
        click.echo("no steps recorded yet in this project")
    for label in labels:
        path = settings.root / label
        try:
            statuses = file_statuses(settings, label, path if path.is_file() else None)
        except ValueError:  # a notebook being saved, or broken: its records alone
            statuses = file_statuses(settings, label, None)
        click.echo(f"{label}\n{format_table(statuses)}\n")


@click.command(cls=Command)
def store() -> None:
    """Where this project's runs, artifacts and cache are, and how to open them."""
    from ..config import load_settings
    from ..steps.report import store_summary
    from ..store.embedded import check_store

    settings = load_settings()
    check_store(settings.tracking_uri)
    click.echo(store_summary(settings))
