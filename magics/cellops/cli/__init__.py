"""The `cellops` command: parse arguments, call the core, print."""

from __future__ import annotations

import click

from .._version import __version__
from ._common import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cellops")
def cli() -> None:
    """cellops: tracked, cached, versioned notebook steps on MLflow.

    In a notebook: `%load_ext cellops`, then mark cells with `%%step NAME`.
    """


def main() -> None:
    cli()


from .steps import steps, store  # noqa: E402

cli.add_command(steps)
cli.add_command(store)

from .jobs import inspect_command, reproduce_command, run_command, sweep_command  # noqa: E402

cli.add_command(inspect_command)
cli.add_command(run_command)
cli.add_command(sweep_command)
cli.add_command(reproduce_command)

from .data import export_group, init_command, lineage_command, pull_command, push_command  # noqa: E402

cli.add_command(init_command)
cli.add_command(export_group)
cli.add_command(push_command)
cli.add_command(pull_command)
cli.add_command(lineage_command)

from .registry import history_command, models_command, promote_command, rollback_command  # noqa: E402

cli.add_command(promote_command)
cli.add_command(rollback_command)
cli.add_command(history_command)
cli.add_command(models_command)

from .drift import drift_command, monitor_command  # noqa: E402

cli.add_command(drift_command)
cli.add_command(monitor_command)

from .dashboard import dashboard_command  # noqa: E402

cli.add_command(dashboard_command)

from .ui import ui_command  # noqa: E402

cli.add_command(ui_command)

from .serve import feedback_command, serve_command  # noqa: E402

cli.add_command(serve_command)
cli.add_command(feedback_command)

from .rollout import export_docker_command, export_kserve_command, rollout_command  # noqa: E402

cli.add_command(rollout_command)
# `cellops export docker|kserve` beside `export dvc`
export_group.add_command(export_docker_command)
export_group.add_command(export_kserve_command)
