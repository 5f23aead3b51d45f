"""What every `cellops` subcommand shares: error handling and plain-text tables.

Each module of `cellops.cli` defines its commands with `@click.command(cls=Command)` and the
package's `__init__` adds them to the group, so each stage's command-line code stands alone.
"""

from __future__ import annotations

import click

from .._paths import project_label as relative  # noqa: F401 - shared by the commands
from .._text import table  # noqa: F401 - shared by the commands
from ..errors import CellopsError, CellopsUsageError


class Command(click.Command):
    """Turns cellops' named errors into click's: a usage error exits 2, others 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CellopsUsageError as exc:
            raise click.UsageError(str(exc), ctx) from None
        except CellopsError as exc:
            raise click.ClickException(str(exc)) from None


class Group(click.Group):
    command_class = Command
