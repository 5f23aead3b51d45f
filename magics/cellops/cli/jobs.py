"""`cellops inspect`, `run`, `sweep` and `reproduce`: notebooks run as Papermill jobs."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import Command, ExitCode, exit_with, table


@click.command(cls=Command, name="inspect")
@click.argument("notebook", type=click.Path(path_type=Path))
def inspect_command(notebook: Path) -> None:
    """The parameters of NOTEBOOK: names, defaults and inferred types."""
    from ..jobs.params import inspect_parameters

    spec = inspect_parameters(notebook)
    if not spec.has_parameters_cell:
        click.echo(
            f"{notebook} has no cell tagged 'parameters': values given with -p go into a new "
            "cell at the top, as papermill does"
        )
        return
    rows = [(p.name, p.type_name, p.default_source, p.help) for p in spec.parameters.values()]
    click.echo(table(("parameter", "type", "default", "help"), rows))


def _parameters(pairs: tuple[tuple[str, str], ...], file: Path | None) -> dict[str, object]:
    from ..jobs.params import load_parameter_file, parameter_pairs

    given = parameter_pairs(pairs)  # a name given twice is refused before the file is read
    values: dict[str, object] = dict(load_parameter_file(file)) if file else {}
    values.update(given)
    return values


@click.command(cls=Command, name="run")
@click.argument("notebook", type=click.Path(path_type=Path), required=False)
@click.option(
    "-p",
    "--parameter",
    "pairs",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A parameter; repeat for more. Values take the type of the default.",
)
@click.option(
    "-f",
    "--parameters-file",
    type=click.Path(path_type=Path),
    help="A YAML file of parameters (-p values win).",
)
@click.option(
    "--resume",
    metavar="RUN",
    help="Re-run job RUN with its parameters; completed steps are restored from the cache.",
)
@click.option("--allow-unknown", is_flag=True, help="Inject parameters the notebook lacks.")
@click.option("-k", "--kernel", help="Kernel name (default: the notebook's).")
@click.option(
    "--cwd",
    type=click.Path(file_okay=False, path_type=Path),
    help="Working directory of the kernel (default: the project root).",
)
@click.option(
    "--retries",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Re-run a job that failed for a transient reason (kernel died, timeout).",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="Seconds between attempts.",
)
@click.option("--retry-on-error", is_flag=True, help="Retry failures in the notebook's code too.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    help="Seconds a cell may run before the attempt fails (transient).",
)
@click.option(
    "--require-promotion",
    is_flag=True,
    help="Exit 1 unless the job promoted a model through its gate (for CI).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run_command(
    notebook: Path | None, pairs, parameters_file, resume, allow_unknown, kernel, cwd,
    retries, retry_delay, retry_on_error, timeout, require_promotion, no_progress,
) -> None:  # fmt: skip
    """Execute NOTEBOOK with Papermill as a tracked job.

    \b
    Examples:
      cellops run notebooks/retrain.ipynb -p n_estimators 200 -p seed 7
      cellops run notebooks/retrain.ipynb -f params.yaml --retries 2
      cellops run --resume 3f2a...            # after a failure: completed steps are skipped
    """
    from ..jobs.run import JobRequest, run_job

    values = _parameters(pairs, parameters_file)
    if resume:
        from ..jobs.resume import resume_request

        notebook, resumed = resume_request(resume, notebook)
        values = {**resumed, **values}
    elif notebook is None:
        raise click.UsageError("give the NOTEBOOK to run, or --resume RUN")
    request = JobRequest(
        notebook, values, allow_unknown or bool(resume), kernel, cwd,
        retries=retries, retry_delay=retry_delay, retry_user_errors=retry_on_error,
        cell_timeout=timeout, progress=not no_progress,
    )  # fmt: skip
    result = run_job(request)
    click.echo(describe_job(result))
    from ..config import load_settings
    from ..registry.job_decisions import job_promotions

    promotions = job_promotions(result.job_id, load_settings(result.notebook.parent))
    if promotions.attempted or require_promotion:
        click.echo("\n".join(promotions.lines()))
    if not result.ok:
        exit_with(ExitCode.FAILED)
    if require_promotion and not promotions.promoted:
        click.echo("--require-promotion: no model was promoted", err=True)
        exit_with(ExitCode.NEGATIVE)


@click.command(
    cls=Command,
    name="sweep",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True},
)
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--workers", type=click.IntRange(1), help="Dask LocalCluster workers (default 2).")
@click.option("--scheduler", metavar="ADDRESS", help="Use this Dask scheduler instead.")
@click.option("--rank-by", metavar="METRIC", help="Rank the points by this metric.")
@click.option("--ascending", is_flag=True, help="Lower is better (a loss).")
@click.option("--local", "sequential", is_flag=True, help="Run the points one after another here.")
@click.option("-k", "--kernel", help="Kernel name (default: the notebook's).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.argument("grid", nargs=-1, type=click.UNPROCESSED)
def sweep_command(
    notebook: Path, workers, scheduler, rank_by, ascending, sequential, kernel, no_progress, grid
) -> None:
    """Run NOTEBOOK over a grid of parameters, as jobs on Dask.

    \b
    Example:
      cellops sweep notebooks/retrain.ipynb -p learning_rate 0.1 0.03 -p max_depth 3 5 \\
          --rank-by f1
    """
    from ..jobs.run import JobRequest
    from ..jobs.sweep import parse_grid, run_sweep

    if workers and scheduler:
        raise click.UsageError("--workers starts a local cluster; drop it with --scheduler")
    options = {} if sequential else {"workers": workers, "scheduler": scheduler}
    result = run_sweep(
        JobRequest(notebook, kernel_name=kernel),
        parse_grid(list(grid)),
        executor="local" if sequential else "dask",
        rank_by=rank_by,
        ascending=ascending,
        progress=not no_progress,
        **options,
    )
    rows = result.rows()
    headers = list(dict.fromkeys(k for row in rows for k in row))
    cells = [tuple("" if row.get(h) is None else row.get(h) for h in headers) for row in rows]
    click.echo(table(tuple(headers), [tuple(map(_cell, r)) for r in cells]))
    notes = {o.kernel.note for o in result.outcomes if getattr(o, "kernel", None)} - {""}
    for note in sorted(notes):
        click.echo(note)
    click.echo(f"sweep run: {result.parent_run_id}")
    if any(row["status"] != "ok" for row in rows):
        exit_with(ExitCode.FAILED)


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command(cls=Command, name="reproduce")
@click.argument("run_id", metavar="RUN")
@click.option("--allow-changes", is_flag=True, help="Run even if code or data changed.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def reproduce_command(run_id: str, allow_changes: bool, no_progress: bool) -> None:
    """Re-execute job RUN with the same parameters, after checking code and data match.

    Every step runs again (the cache is not used), and the original and new metrics are
    printed side by side. Production is left alone: a model the notebook registers is tagged
    as a reproduction of RUN and gets no alias, and its gate runs as a dry run, printed as what
    it would have decided.
    """
    from ..jobs.reproduce import reproduce

    outcome = reproduce(run_id, allow_changes=allow_changes, progress=not no_progress)
    for line in outcome.differences:
        click.echo(f"changed: {line}")
    click.echo(describe_job(outcome.result))
    click.echo("\n".join(_reproduction_lines(outcome.result, run_id)))
    rows = [
        (name, _cell(before), _cell(outcome.result.metrics.get(name, "")))
        for name, before in sorted(outcome.original_metrics.items())
    ]
    click.echo(table(("metric", f"run {run_id[:8]}", "reproduced"), rows))
    if not outcome.result.ok:
        exit_with(ExitCode.FAILED)


def _reproduction_lines(result, run_id: str) -> list[str]:  # a JobResult
    from ..config import load_settings
    from ..registry.reproduction import reproduction_verdicts

    lines = [
        f"reproduction of run {run_id}: model registration and promotion ran as a dry run; "
        "no alias was moved or set"
    ]
    found = reproduction_verdicts(result.job_id, run_id, load_settings(result.notebook.parent))
    return lines + (found or ["the notebook registered no model and ran no gate"])


def describe_job(result) -> str:  # a JobResult
    """The job's summary for the terminal."""
    state = "succeeded" if result.ok else "FAILED"
    lines = [f"job {result.job_id} {state} (run {result.run_id})"]
    if result.kernel is not None and result.kernel.note:
        lines.append(result.kernel.note)
    if len(result.attempts) > 1:
        lines.append(
            "attempts: " + ", ".join(f"#{a.number} {a.status.lower()}" for a in result.attempts)
        )
    if result.skipped_steps:
        lines.append(f"skipped (cached): {', '.join(result.skipped_steps)}")
    ran = [n for n, s in result.steps.items() if s == "executed"]
    if ran:
        lines.append(f"ran: {', '.join(ran)}")
    if result.metrics:
        lines.append("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
    lines.append(f"notebook: {result.attempts[-1].output}")
    from ..config import load_settings
    from ..store.links import run_sentence

    lines.append(f"MLflow: {run_sentence(load_settings(result.notebook.parent), result.run_id)}")
    if result.html:
        lines.append(f"html: {result.html}")
    failure = result.failure
    if failure is not None:  # a notebook that never started says so, not "error in ..."
        said = failure.describe()
        lines.append(said if not failure.started else f"error in {said}")
    return "\n".join(lines)
