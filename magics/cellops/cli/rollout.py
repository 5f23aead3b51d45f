"""`cellops rollout` (canary and shadow of @challenger) and `cellops export docker|kserve`.

Exit codes: 0 done; 1 widening to 100 was refused by the gate (the split stays); 2 a usage
error (no @challenger, --widen below the share or over 100, an unknown rule metric, ...);
4 a conflict (a rollout already runs, or the state changed meanwhile).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import Command, ExitCode, exit_with, relative


@click.command(name="rollout", cls=Command)
@click.argument("model")
@click.option(
    "--canary",
    type=float,
    metavar="PERCENT",
    help="Start a canary: this share of request keys to @challenger.",
)
@click.option(
    "--widen",
    type=float,
    metavar="PERCENT",
    help="Widen the running canary (100 promotes through the gate).",
)
@click.option(
    "--shadow", is_flag=True, help="Start a shadow: @challenger predicts a copy of every request."
)
@click.option("--abort", is_flag=True, help="End the rollout: every request to the champion.")
@click.option("--reason", metavar="TEXT", help="Why (recorded with --abort).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def rollout_command(model: str, canary, widen, shadow, abort, reason, as_json) -> None:  # fmt: skip
    """Roll MODEL's @challenger out to live traffic, or show the rollout.

    A running `cellops serve MODEL` follows the rollout within its poll interval; the split is
    sticky by the X-Request-Key header (or key_field), and the rules in
    [tool.cellops.models.MODEL.rollout] roll it back automatically.

    \b
    Examples:
      cellops rollout fraud --canary 10
      cellops rollout fraud --widen 25
      cellops rollout fraud --widen 100     # the gate, then @champion moves
      cellops rollout fraud --shadow
      cellops rollout fraud --abort --reason "latency"
      cellops rollout fraud                 # the split, per-variant counts, the rules
    """
    from ..errors import RolloutConflictError
    from ..serving import rollout as core

    given = {"--canary": canary is not None, "--widen": widen is not None, "--shadow": shadow,
             "--abort": abort}  # fmt: skip
    chosen = [flag for flag, on in given.items() if on]
    if len(chosen) > 1:
        raise click.UsageError(f"give one of {', '.join(chosen)}, not several")
    try:
        if canary is not None or shadow:
            state = core.start(model, canary=canary, shadow=shadow)
            click.echo(f"{model}: rollout started: {state.describe()}")
            return
        if widen is not None:
            outcome = core.widen(model, widen)
            if outcome.promotion is not None:
                click.echo(str(outcome.promotion))
                if not outcome.promotion.promoted:
                    click.echo(f"the rollout goes on: {outcome.state.describe()}")
                    exit_with(ExitCode.NEGATIVE)
                click.echo(
                    f"{model}: the rollout ended: v{outcome.state.challenger} is the champion"
                )
                return
            click.echo(f"{model}: {outcome.state.describe()}")
            return
        if abort:
            state = core.abort(model, reason=reason)
            click.echo(f"{model}: rollout aborted: every request goes to v{state.champion}")
            return
    except RolloutConflictError as exc:
        click.echo(f"Error: {exc}", err=True)
        exit_with(ExitCode.CONFLICT)
    from ..config import load_settings
    from ..registry.store import RegistryStore, require_model
    from ..serving.status import format_status, rollout_status

    settings = load_settings()
    require_model(RegistryStore(settings), model)
    status = rollout_status(model, settings)
    click.echo(json.dumps(status, indent=1) if as_json else format_status(status))


@click.command(name="docker", cls=Command)
@click.argument("model")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="The build context folder (default deploy/docker/MODEL).",
)
@click.option(
    "--tracking-uri",
    metavar="URI",
    help="The tracking server the container uses (MLFLOW_TRACKING_URI).",
)
def export_docker_command(model: str, out: Path | None, tracking_uri: str | None) -> None:
    """Write a Docker build context serving MODEL with `cellops serve`.

    \b
    Example:
      cellops export docker fraud && docker build -t cellops-fraud deploy/docker/fraud
    """
    from ..config import load_settings
    from ..serving.export import export_docker

    settings = load_settings()
    export = export_docker(settings, model, out.resolve() if out else None, tracking_uri)
    _said(
        export,
        settings.root,
        f"docker build -t cellops-{model.lower()} {relative(export.folder, settings.root)}",
    )


@click.command(name="kserve", cls=Command)
@click.argument("model")
@click.option(
    "--image",
    metavar="IMAGE",
    help="The image built from `cellops export docker` (default cellops-MODEL:VERSION).",
)
@click.option(
    "--canary",
    type=click.IntRange(1, 99),
    metavar="PERCENT",
    help="canaryTrafficPercent: the new revision serves @challenger.",
)
@click.option(
    "--tracking-uri", metavar="URI", help="The tracking server the pods use (MLFLOW_TRACKING_URI)."
)
@click.option(
    "--log-claim",
    metavar="PVC",
    help="The persistent volume claim of the prediction log (default MODEL-predictions).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the manifest (default deploy/kserve).",
)
def export_kserve_command(model, image, canary, tracking_uri, log_claim, out) -> None:  # fmt: skip
    """Write a KServe InferenceService running the cellops image as a custom container.

    \b
    Examples:
      cellops export kserve fraud --image registry.example/cellops-fraud:1 --tracking-uri http://mlflow:5000
      cellops export kserve fraud --canary 10 --tracking-uri http://mlflow:5000
    """
    from ..config import load_settings
    from ..serving.export import export_kserve

    settings = load_settings()
    export = export_kserve(
        settings, model, image=image, canary=canary, out=out.resolve() if out else None,
        tracking_uri=tracking_uri, log_claim=log_claim,
    )  # fmt: skip
    _said(export, settings.root, f"kubectl apply -f {relative(export.files[0], settings.root)}")


def _said(export, root: Path, then: str) -> None:
    for path in export.files:
        click.echo(f"wrote {relative(path, root)}")
    for note in export.notes:
        click.echo(f"note: {note}")
    click.echo(f"next: {then}")
