"""What every `cellops` subcommand shares: the exit codes, error handling, plain-text tables.

Each module of `cellops.cli` defines its commands with `@click.command(cls=Command)` and the
package's `__init__` adds them to the group, so each stage's command-line code stands alone.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NoReturn

import click

from .._paths import project_label as relative  # noqa: F401 - shared by the commands
from .._text import table  # noqa: F401 - shared by the commands
from ..errors import CellopsError, CellopsUsageError


class ExitCode(IntEnum):
    """Every command's exit code, so a script or CI can tell a "no" from an outage."""

    OK = 0
    NEGATIVE = 1  # it ran and the answer is no: the gate refused, the data drifted, ...
    USAGE = 2  # the command line or its input is wrong; the message says what to type
    FAILED = 3  # it could not run: the store is unreachable, the notebook failed, ...
    CONFLICT = 4  # someone else changed it meanwhile (the alias moved): look, then retry


def exit_with(code: ExitCode) -> NoReturn:
    """End the command with `code` (after it printed its answer)."""
    raise SystemExit(int(code))


class Command(click.Command):
    """Turns cellops' named errors into the exit codes: a usage error exits 2, others 3, and an
    unexpected exception (a bug) shows its traceback and exits 3, never 1, which means "no"."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CellopsUsageError as exc:
            raise click.UsageError(str(exc), ctx) from None
        except CellopsError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = ExitCode.FAILED
            raise error from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise
        except Exception:
            import traceback

            traceback.print_exc()
            ctx.exit(ExitCode.FAILED)


class Group(click.Group):
    command_class = Command
