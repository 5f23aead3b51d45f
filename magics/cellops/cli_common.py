"""What every `cellops` subcommand shares: error handling and plain-text tables.

Feature modules (`cli_*.py`) define their commands with `@click.command(cls=Command)` and
`cli.py` adds them to the group, so each feature's command-line code lives beside no other.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from .errors import CellopsError, CellopsUsageError


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


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with a header rule, columns padded to fit."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
