"""The `cellops` command: parse arguments, call the core, print."""

from __future__ import annotations

from pathlib import Path

import click

from ._version import __version__
from .errors import CellopsError, CellopsUsageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cellops")
def cli() -> None:
    """cellops: tracked, cached, versioned notebook steps on MLflow.

    In a notebook: `%load_ext cellops`, then mark cells with `%%step NAME`.
    """


@cli.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path), required=False)
def steps(notebook: Path | None) -> None:
    """The steps of NOTEBOOK: fresh, cached, stale, failed or never run.

    Without NOTEBOOK, every notebook of the project that has step records is listed.
    """
    from .config import load_settings
    from .notebook import read_step_cells
    from .status import format_table, step_statuses
    from .stepstate import load_step_states, notebook_labels

    settings = load_settings(notebook.resolve().parent if notebook else None)
    if notebook is not None:
        if not notebook.is_file():
            raise click.UsageError(f"{notebook} does not exist; give the path of a .ipynb file")
        try:
            cells = read_step_cells(notebook)
        except ValueError as exc:
            raise click.UsageError(f"{notebook} is not a readable notebook: {exc}") from None
        label = _relative(notebook.resolve(), settings.root)
        statuses = step_statuses(load_step_states(settings, label), cells)
        click.echo(f"{label}\n{format_table(statuses)}")
        return
    labels = notebook_labels(settings)
    if not labels:
        click.echo("no steps recorded yet in this project")
    for label in labels:
        path = settings.root / label
        cells = read_step_cells(path) if path.is_file() else None
        statuses = step_statuses(load_step_states(settings, label), cells)
        click.echo(f"{label}\n{format_table(statuses)}\n")


@cli.command()
def store() -> None:
    """Where this project's runs, artifacts and cache are, and how to open them."""
    from .config import load_settings
    from .views import store_summary

    click.echo(store_summary(load_settings()))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except CellopsUsageError as exc:
        raise SystemExit(click.UsageError(str(exc)).show() or 2) from None
    except CellopsError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
