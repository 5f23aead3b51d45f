"""`cellops drift` and `cellops monitor`: drift checks, their history, and the retraining loop.

Exit codes of `drift`: 0 no dataset drift, 1 dataset drift, 2 a usage error, 3 the check could
not run (for example the tracking store is unreachable).
Exit codes of `monitor`: 0 no retraining was needed, or the retrained model was promoted;
1 the gate refused the retrained model (and, without --retrain, dataset drift of the served
traffic or a failed --performance verdict); 2 a usage error; 3 the check could not run, the
retraining job failed, or too few labels for a --performance verdict. The checks of served
traffic are `serving.served_monitor`'s.

Nothing heavy is imported before the command runs: MLflow only when a model is involved,
Evidently only for `--engine evidently`.
"""

from __future__ import annotations

from pathlib import Path

import click

from .._text import split_names
from ..errors import CellopsUsageError
from ._common import Command, ExitCode, exit_with


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = split_names(text)
    if not names:
        raise CellopsUsageError("--columns needs at least one column name, e.g. --columns a,b")
    return names


_DATA = click.Path(dir_okay=True, path_type=Path)


class EngineName(click.ParamType):
    """A drift engine's name, passed on as typed: the core knows which engines exist (the
    built-ins and those registered under the `cellops.drift_engines` entry points) and says so
    when the name is not one of them. The help lists them, read when the help is shown."""

    name = "engine"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:  # noqa: ARG002 - click's signature
        from ..monitoring.engines import engine_names

        return f"[{'|'.join(engine_names())}]"


_check_options = [
    click.option("--columns", metavar="A,B", help="Check only these columns (comma-separated)."),
    click.option(
        "--engine",
        type=EngineName(),
        default="native",
        show_default=True,
        help="native: fast, works from the stored profile; evidently: its HTML report too "
        "(needs raw reference data); or an engine another package registers.",
    ),
    click.option(
        "--share-threshold",
        type=float,
        default=0.5,
        show_default=True,
        help="Dataset drift when at least this share of the columns drifted, in (0, 1].",
    ),
    click.option(
        "--stattest",
        metavar="TEST",
        help="One test for every column: ks, chisquare, z, wasserstein, jensenshannon, psi "
        "(default: Evidently's choice per column).",
    ),
]


def _with(options: list) -> object:
    def decorate(function: object) -> object:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@click.command(name="drift", cls=Command)
@click.argument("files", nargs=-1, type=_DATA, metavar="[REFERENCE CURRENT]")
@click.option("--model", metavar="NAME", help="Compare with the profile stored with this model.")
@click.option("--version", "version", metavar="V", help="The model version (default: @champion).")
@click.option("--alias", metavar="ALIAS", help="The model's alias to use (default: champion).")
@click.option("--current", type=_DATA, metavar="PATH", help="The data to check (Parquet or CSV).")
@click.option(
    "--reference",
    type=_DATA,
    metavar="PATH",
    help="With --model: compare with this raw training data instead of the stored profile.",
)
@_with(_check_options)
@click.option("--no-record", is_flag=True, help="With --model: do not record the check.")
def drift_command(
    files, model, version, alias, current, reference, columns, engine, share_threshold,
    stattest, no_record,
) -> None:  # fmt: skip
    """Is the CURRENT data drifting away from the REFERENCE data, or from a model's training data?

    Prints each column's test, score, threshold and decision, then the share of drifted columns.
    With --model, the reference is the profile stored with the model version when it was
    registered (no raw data needed), and the check is recorded in the experiment
    cellops-drift/NAME. Exit code: 0 no dataset drift, 1 dataset drift, 2 a usage error.

    \b
    Examples:
      cellops drift data/train.parquet data/current.parquet
      cellops drift models:/fraud@champion .cellops/predictions/model=fraud   # what was served
      cellops drift --model fraud --current data/current.parquet
      cellops drift --model fraud --version 3 --current data/current.csv --columns amount,channel
      cellops drift --model fraud --current data/current.parquet --engine evidently \\
          --reference data/transactions.parquet
    """
    chosen = _columns(columns)
    if model is None:
        given = {"--version": version, "--alias": alias, "--current": current,
                 "--reference": reference, "--no-record": no_record or None}  # fmt: skip
        for flag, value in given.items():
            if value is not None:
                raise CellopsUsageError(f"{flag} goes with --model NAME")
        if len(files) != 2:
            raise CellopsUsageError(
                "give two data files (cellops drift REFERENCE CURRENT), or a model and the data "
                "to check (cellops drift --model NAME --current PATH)"
            )
        result = _compare(files[0], files[1], chosen, engine, share_threshold, stattest)
        click.echo(str(result))
        _report(result)
        if result.dataset_drift:
            exit_with(ExitCode.NEGATIVE)
        return
    if files:
        raise CellopsUsageError(
            "with --model, give the data to check as --current PATH, not as an argument"
        )
    if current is None:
        raise CellopsUsageError("--model needs the data to check: --current PATH")
    from ..monitoring.monitor import CheckRequest, check_alias, check_model

    request = CheckRequest(
        model,
        current,
        version=version,
        alias=check_alias(version, alias),
        columns=chosen,
        engine=engine,
        share_threshold=share_threshold,
        stattest=stattest,
        reference=reference,
        record=not no_record,
    )
    check = check_model(request)
    click.echo(f"{model} v{check.version} vs {current}")
    click.echo(str(check.result))
    _report(check.result)
    if check.record is not None:
        click.echo(
            f"recorded as run {check.record.run_id} in experiment cellops-drift/{model} "
            f"(drift streak {check.record.streak})"
        )
    if check.result.dataset_drift:
        exit_with(ExitCode.NEGATIVE)


def _compare(
    reference: Path,
    current: Path,
    columns: list[str] | None,
    engine: str,
    share_threshold: float,
    stattest: str | None,
):
    from ..monitoring.api import drift
    from ..monitoring.monitor import existing_file
    from ..monitoring.reference import is_model_uri, model_reference

    existing_file(current, "current data", folder_ok=True)
    if is_model_uri(str(reference)):  # (click made it a Path: models:/x@y -> models:/x@y)
        reference, columns = model_reference(str(reference), columns)
    else:
        existing_file(reference, "reference data")
    return drift(
        reference,
        current,
        columns=columns,
        engine=engine,
        share_threshold=share_threshold,
        stattest=stattest,
    )


def _report(result: object) -> None:
    path = getattr(result, "report_path", None)
    if path:
        click.echo(f"Evidently report: {path}")


@click.command(name="monitor", cls=Command)
@click.option("--model", required=True, metavar="NAME", help="The registered model to watch.")
@click.option("--current", type=_DATA, metavar="PATH", help="The data to check (a file).")
@click.option("--served", is_flag=True, help="Check the traffic the server logged (cellops serve).")
@click.option(
    "--performance",
    "conditions",
    multiple=True,
    metavar="CONDITION",
    help='Judge the model on its labelled served traffic, e.g. "f1 >= 0.6" (repeat: all hold).',
)
@click.option(
    "--since",
    metavar="WINDOW",
    help="With --served/--performance: the window of served traffic, e.g. 30m, 24h, 7d "
    "[default: 24h].",
)
@click.option(
    "--min-labels",
    type=int,
    metavar="N",
    help="With --performance: no verdict on fewer labelled rows [default: 100].",
)
@click.option("--variant", metavar="NAME", help="The served variant to check [default: champion].")
@click.option(
    "--consecutive",
    type=click.IntRange(1),
    help="Retrain when this many checks in a row found drift (or failed the --performance "
    "conditions) [default: 3; 1 with --performance].",
)
@click.option(
    "--retrain",
    type=_DATA,
    metavar="NOTEBOOK",
    help="The retraining notebook, run as a cellops job (it registers and promotes); "
    "required with --current.",
)
@click.option(
    "-p",
    "--parameter",
    "pairs",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A parameter of the retraining job; repeat for more. data_path defaults to --current, "
    "or to the window's labelled served rows.",
)
@click.option("--allow-unknown", is_flag=True, help="Inject job parameters the notebook lacks.")
@click.option("--version", "version", metavar="V", help="The version to check (default @champion).")
@click.option("--alias", metavar="ALIAS", help="The alias to check (default: champion).")
@click.option("--reference", type=_DATA, metavar="PATH", help="Raw reference data (evidently).")
@_with(_check_options)
def monitor_command(
    model, current, served, conditions, since, min_labels, variant, consecutive, retrain, pairs,
    allow_unknown, version, alias, reference, columns, engine, share_threshold, stattest,
) -> None:  # fmt: skip
    """Check model NAME's data, or the traffic it was served, for drift or a drop in
    performance; retrain when it persists.

    Each check is recorded (experiment cellops-drift/NAME) with the streak of consecutive
    checks that found dataset drift. When the streak reaches --consecutive, the retraining
    notebook runs as a cellops job on the current data (-p data_path PATH unless given); its
    model goes through the gate, and the check, the job and the gate's decision are linked.
    The streak then starts again. Exit code: 0 no retraining needed or the new model was
    promoted, 1 the gate refused its model, 2 a usage error, 3 the retraining job failed.

    With --served, the data is what `cellops serve` answered in the window --since (the
    champion's version, variant champion, read from the prediction log); without --retrain
    it exits 1 on dataset drift. With --performance, the champion is judged on its served
    rows that got labels (POST /feedback, cellops feedback FILE): exit 0 when the conditions
    hold or a retrained model replaced it, 1 when they fail, 3 when fewer than --min-labels
    rows are labelled (no verdict). A retraining job trains on the window's labelled served
    rows unless -p data_path PATH is given.

    \b
    Examples:
      cellops monitor --model fraud --current data/current.parquet --share-threshold 0.3 \\
          --consecutive 3 --retrain notebooks/retrain.ipynb
      cellops monitor --model fraud --current data/week12.csv --consecutive 2 \\
          --retrain notebooks/retrain.ipynb -p model_kind logreg -p data_path data/all.parquet
      cellops monitor --model fraud --served --since 24h --retrain notebooks/retrain.ipynb
      cellops monitor --model fraud --performance "f1 >= 0.6" --min-labels 200 \\
          --since 7d --retrain notebooks/retrain.ipynb
    """
    served_given = served or bool(conditions)
    _check_sources(current, served, conditions, retrain, since, min_labels, variant, reference)
    if served_given:
        _monitor_served(
            model, conditions, since or "24h", min_labels, variant or "champion", consecutive,
            retrain, dict(pairs), allow_unknown, version, alias, columns, engine,
            share_threshold, stattest,
        )  # fmt: skip
        return
    from ..monitoring.monitor import CheckRequest, MonitorRequest, check_alias, monitor

    check = CheckRequest(
        model,
        current,
        version=version,
        alias=check_alias(version, alias),
        columns=_columns(columns),
        engine=engine,
        share_threshold=share_threshold,
        stattest=stattest,
        reference=reference,
    )
    request = MonitorRequest(
        check,
        retrain,
        consecutive=consecutive or 3,
        parameters=dict(pairs),
        allow_unknown=allow_unknown,
    )
    outcome = monitor(request, echo=click.echo)
    _exit_for(outcome)


def _check_sources(current, served, conditions, retrain, since, min_labels, variant, reference):
    """One source of data: --current PATH, --served, or --performance; the flags of each."""
    if served and conditions:
        raise CellopsUsageError(
            "--served checks the served inputs for drift, --performance the labelled served "
            "rows' metrics: give one of them (run the command twice for both)"
        )
    if current is not None and (served or conditions):
        flag = "--served" if served else "--performance"
        raise CellopsUsageError(f"give --current PATH or {flag}, not both")
    if current is None and not (served or conditions):
        raise CellopsUsageError(
            "what should be checked? give --current PATH (a data file), --served (the traffic "
            'the server logged) or --performance "f1 >= 0.6" (its labelled served rows)'
        )
    if current is not None:
        given = {"--since": since, "--min-labels": min_labels, "--variant": variant}
        for flag, value in given.items():
            if value is not None:
                raise CellopsUsageError(f"{flag} goes with --served or --performance")
        if retrain is None:
            raise CellopsUsageError(
                "--current needs the retraining notebook to run when the drift persists: "
                "--retrain NOTEBOOK (or check once with cellops drift --model NAME --current PATH)"
            )
        return
    if min_labels is not None and not conditions:
        raise CellopsUsageError('--min-labels goes with --performance "CONDITION"')
    if reference is not None:
        raise CellopsUsageError("--reference goes with --current: served traffic is checked "
                                "against the profile stored with the version")  # fmt: skip


def _monitor_served(
    model, conditions, since, min_labels, variant, consecutive, retrain, parameters,
    allow_unknown, version, alias, columns, engine, share_threshold, stattest,
) -> None:  # fmt: skip
    from ..serving import served_monitor as core

    common = dict(
        model=model, since=since, version=version, alias=alias, variant=variant,
        retrain=retrain, parameters=parameters, allow_unknown=allow_unknown,
    )  # fmt: skip
    if conditions:
        request = core.PerformanceRequest(
            **common, consecutive=consecutive or 1, conditions=list(conditions),
            min_labels=100 if min_labels is None else min_labels,
        )  # fmt: skip
        outcome = core.check_performance(request, echo=click.echo)
        if outcome.retrained and not outcome.job.ok:
            exit_with(ExitCode.FAILED)
        if not outcome.ok:
            exit_with(ExitCode.NEGATIVE)
        return
    request = core.ServedDriftRequest(
        **common, consecutive=consecutive or 3, columns=_columns(columns), engine=engine,
        share_threshold=share_threshold, stattest=stattest,
    )  # fmt: skip
    outcome = core.check_served(request, echo=click.echo)
    if retrain is None:
        if outcome.check.result.dataset_drift:
            exit_with(ExitCode.NEGATIVE)
        return
    _exit_for(outcome)


def _exit_for(outcome) -> None:
    if outcome.retrained and not outcome.job.ok:
        exit_with(ExitCode.FAILED)  # the retraining job failed
    if not outcome.ok:
        exit_with(ExitCode.NEGATIVE)  # retrained, but the gate kept the champion
