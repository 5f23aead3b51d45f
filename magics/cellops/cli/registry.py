"""`cellops promote`, `cellops rollback`, `cellops history`, `cellops models`: the registry.

Exit codes of `promote`: 0 promoted (or forced, or already champion), 1 the gate refused,
3 another promotion moved the champion while the gate ran (run it again), 2 a usage error.
"""

from __future__ import annotations

from pathlib import Path

import click

from ._common import Command, ExitCode, exit_with, table


def _store():
    from ..registry.store import open_store

    return open_store()


@click.command(name="promote", cls=Command)
@click.argument("name")
@click.option(
    "--version", "version", metavar="V", help="The version to judge (default: @challenger)."
)
@click.option(
    "--holdout",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Parquet or CSV file both models are scored on (default: holdout in pyproject.toml).",
)
@click.option("--label", metavar="COLUMN", help="The holdout's label column.")
@click.option(
    "--gate",
    "conditions",
    multiple=True,
    metavar="EXPR",
    help="A condition; repeat for more. Replaces the gate in pyproject.toml.",
)
@click.option("--force", is_flag=True, help="Promote even if the gate fails (needs --reason).")
@click.option("--reason", metavar="TEXT", help="Why: recorded with the decision.")
@click.option("--dry-run", is_flag=True, help="Run and record the gate; move nothing.")
def promote_command(
    name: str, version, holdout, label, conditions, force, reason, dry_run
) -> None:  # fmt: skip
    """Run the gate of model NAME and move @champion to the challenger if it passes.

    Both the challenger and the current champion are scored on the same holdout; every
    condition is printed with both sides' values. The first model of a name is judged on the
    conditions that do not mention the champion.

    \b
    Examples:
      cellops promote fraud
      cellops promote fraud --version 7 --holdout data/holdout.parquet --label is_fraud
      cellops promote fraud --gate "f1 >= 0.9" --gate "recall >= champion.recall * 1.02"
      cellops promote fraud --force --reason "hotfix for the new card type; gate data stale"
    """
    from ..registry.promote import CONFLICT, REFUSED, promote

    outcome = promote(
        name, version, gate=list(conditions) or None,
        holdout=holdout.resolve() if holdout else None, label=label, force=force,
        reason=reason, dry_run=dry_run, store=_store(),
    )  # fmt: skip
    click.echo(str(outcome))
    if outcome.decision == REFUSED:
        exit_with(ExitCode.NEGATIVE)
    if outcome.decision == CONFLICT:
        exit_with(ExitCode.CONFLICT)


@click.command(name="rollback", cls=Command)
@click.argument("name")
@click.option("--reason", metavar="TEXT", help="Why: recorded with the rollback.")
def rollback_command(name: str, reason: str | None) -> None:
    """Put back the champion that model NAME's current champion replaced."""
    from ..registry.promote import rollback

    click.echo(rollback(name, reason=reason, store=_store()).headline())


@click.command(name="history", cls=Command)
@click.argument("name")
@click.option("-n", "--limit", type=click.IntRange(1), default=100, show_default=True)
def history_command(name: str, limit: int) -> None:
    """What happened to model NAME: registrations, gate decisions, promotions, rollbacks."""
    from ..registry.audit import format_history, history, history_links

    store = _store()
    click.echo(format_history(name, history(store, name, limit)))
    click.echo("\n".join(history_links(store, name)))


@click.command(name="models", cls=Command)
@click.argument("name", required=False)
def models_command(name: str | None) -> None:
    """The registered models and their aliases; with NAME, that model's versions."""
    from ..registry.catalog import VERSION_HEADERS, list_models, model_info, version_rows

    store = _store()
    if name:
        info = model_info(store, name)
        click.echo(f"{info.name}: champion {_v(info.champion)}, challenger {_v(info.challenger)}")
        click.echo(table(VERSION_HEADERS, version_rows(info)))
        return
    models = list_models(store)
    if not models:
        click.echo("no model is registered yet: cellops.register_model(model, name) registers one")
        return
    rows = [
        (m.name, _v(m.champion), _v(m.challenger), _v(m.previous), _v(m.latest)) for m in models
    ]
    click.echo(table(("model", "champion", "challenger", "previous", "latest"), rows))


def _v(version: str | None) -> str:
    return f"v{version}" if version else "-"
