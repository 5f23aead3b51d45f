"""`cellops init`, `export dvc`, `push`, `pull`, `lineage`: data versioning on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import Command, Group


@click.command(cls=Command, name="init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--remote",
    metavar="URL",
    help="Default DVC remote: a folder or any DVC URL "
    "(default: a folder under ~/.cache/cellops/dvc-remote/).",
)
def init_command(folder: Path, remote: str | None) -> None:
    """Make FOLDER (default: here) a cellops project with git, DVC and a DVC remote.

    Safe to run again: it keeps what is there and says what it found.
    """
    from ..data.project import init_project

    report = init_project(folder, remote)
    for line in report.done:
        click.echo(f"done:  {line}")
    for line in report.found:
        click.echo(f"found: {line}")
    if report.done:
        click.echo("next: git add -A && git commit -m 'cellops init'")


@click.group(cls=Group, name="export")
def export_group() -> None:
    """Write the project's steps in another tool's format."""


@export_group.command(name="dvc")
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--params-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the notebook's parameters are kept (default: params.yaml).",
)
def export_dvc_command(notebook: Path, params_file: Path | None) -> None:
    """Write dvc.yaml stages for NOTEBOOK's steps that declare --files-out.

    Afterwards `dvc dag`, `dvc status` and `dvc repro` work on them; each stage re-executes
    the notebook with `cellops run`, where unchanged steps come from the cache.
    """
    from ..config import load_settings
    from ..jobs.dvc_export import export_dvc

    report = export_dvc(notebook, load_settings(notebook.resolve().parent), params_file)
    click.echo(f"wrote {len(report.stages)} stage(s) to {report.dvc_yaml}:")
    for stage, step in report.stages.items():
        state = "current" if stage in report.committed else f"to build ({report.to_build[stage]})"
        click.echo(f"  {stage:<20} step '{step}', {state}")
    if report.params_added:
        click.echo(
            f"parameters added to {report.params_file.name}: {', '.join(report.params_added)}"
        )
    if report.params_skipped:
        click.echo(
            f"not in {report.params_file.name} (not literals): {', '.join(report.params_skipped)}"
        )
    if report.handed_over:
        click.echo(f"now recorded by their stage instead: {', '.join(report.handed_over)}")
    if report.removed:
        click.echo(f"removed stages of steps that are gone: {', '.join(report.removed)}")
    if report.to_build:
        click.echo("next: dvc repro")


@click.command(cls=Command, name="push")
@click.option("-r", "--remote", help="DVC remote name (default: the default remote).")
def push_command(remote: str | None) -> None:
    """Send the project's DVC data and the step cache to the DVC remote."""
    from ..config import load_settings
    from ..data.sync import push

    report = push(load_settings(), remote)
    click.echo(f"dvc: {report.dvc_summary}")
    click.echo(
        f"step cache: {report.objects} object(s) and {report.entries} entr(y/ies) sent "
        f"to remote '{report.remote}'"
    )


@click.command(cls=Command, name="pull")
@click.option("-r", "--remote", help="DVC remote name (default: the default remote).")
@click.option("--force", is_flag=True, help="Replace local changes to DVC-tracked files.")
def pull_command(remote: str | None, force: bool) -> None:
    """Fetch the project's DVC data and the step cache from the DVC remote.

    Refuses when DVC-tracked files have local changes, unless --force.
    """
    from ..config import load_settings
    from ..data.sync import pull

    report = pull(load_settings(), force=force, remote=remote)
    click.echo(f"dvc: {report.dvc_summary}")
    click.echo(
        f"step cache: {report.objects} object(s) and {report.entries} entr(y/ies) received "
        f"from remote '{report.remote}'"
    )


@click.command(cls=Command, name="lineage")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage as JSON, for tools.")
def lineage_command(target: str, as_json: bool) -> None:
    """Which code, params and data produced TARGET, and which runs used it.

    TARGET is a file or folder of the project, a run id, or a model version
    (models:/NAME/VERSION or models:/NAME@ALIAS). A model's lineage answers an audit in one
    place: its data files with DVC's hash, the steps that ran before it was registered with
    their cell sources, every job parameter, who registered it, and every gate decision,
    promotion and rollback since.

    \b
    Examples:
      cellops lineage data/current.parquet
      cellops lineage models:/fraud/4
      cellops lineage models:/fraud@champion --json
    """
    from ..config import load_settings

    if target.startswith("models:/"):
        from ..registry.lineage import model_lineage
        from ..registry.store import open_store

        result = model_lineage(open_store(), target)
    else:
        from ..data.lineage import lineage

        result = lineage(load_settings(), target)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        return
    _echo(result)


def _echo(result) -> None:
    from ..data.lineage import FileLineage, RunLineage

    if isinstance(result, FileLineage):
        _echo_file(result)
    elif isinstance(result, RunLineage):
        _echo_run(result)
    else:  # a model version: it says it all itself
        click.echo(str(result))


def _echo_origin(run, indent: str = "  ") -> None:
    dirty = " with uncommitted changes" if run.dirty == "true" else ""
    click.echo(
        f"{indent}code:   git {run.commit[:12] or '?'}{dirty}; cell {run.code_digest[:12]} "
        "(source: artifact cellops/cell.py of the run)"
    )
    if run.cached_from:
        click.echo(f"{indent}        restored from the cache of run {run.cached_from}")
    params = ", ".join(f"{k}={v}" for k, v in sorted(run.params.items()))
    click.echo(f"{indent}params: {params or '-'}")
    for label, md5 in sorted(run.files_in.items()):
        click.echo(f"{indent}data:   {label} {md5}")


def _echo_file(result) -> None:
    click.echo(f"{result.label}  {result.md5 or '(missing)'}")
    if result.recorded is not None:
        match = (
            "matches the file"
            if result.on_disk in (None, result.recorded.md5)
            else "the file on disk differs: changed since DVC recorded it"
        )
        click.echo(f"DVC: {result.recorded.pointer} records {result.recorded.md5} ({match})")
    else:
        click.echo("DVC: not tracked")
    if not result.produced_by:
        click.echo("produced by: no recorded run wrote this version")
    for run in result.produced_by:
        click.echo(f"produced by {run.describe()}")
        _echo_origin(run)
    if result.restored_by:
        runs = ", ".join(r.run_id for r in result.restored_by)
        click.echo(f"restored from the step cache by: {runs}")
    click.echo("used by:" + ("" if result.used_by else " no recorded run read this version"))
    for run in result.used_by:
        click.echo(f"  {run.describe()}")


def _echo_run(result) -> None:
    click.echo(result.run.describe())
    _echo_origin(result.run)
    for label, producers in result.inputs.items():
        names = ", ".join(f"'{p.name}' {p.run_id}" for p in producers) or "no recorded run"
        click.echo(f"  input {label} written by: {names}")
    for label, users in result.outputs.items():
        names = ", ".join(f"'{u.name}' {u.run_id}" for u in users) or "no recorded run yet"
        click.echo(f"  output {label} {result.run.files_out[label]} read by: {names}")
