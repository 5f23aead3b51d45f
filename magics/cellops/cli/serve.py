"""`cellops serve` and `cellops feedback`: the model server, and labels that arrive later."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import Command, relative


@click.command(name="serve", cls=Command)
@click.argument("model")
@click.option("--alias", default="champion", show_default=True, help="The alias to serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes serving (each loads the model).")  # fmt: skip
def serve_command(model: str, alias: str, host: str, port: int, workers: int) -> None:
    """Serve models:/MODEL@ALIAS over HTTP, reloading when the alias moves.

    POST /invocations (or /predict) takes MLflow's request formats (dataframe_split,
    dataframe_records, instances, inputs; CSV); GET /health, /ready, /version and /metrics
    (Prometheus); POST /feedback takes labels of served requests. Every prediction is logged
    to .cellops/predictions/model=MODEL/ as Parquet. Ctrl-C stops.

    \b
    Examples:
      cellops serve fraud
      cellops serve fraud --alias challenger --port 8001
      cellops serve fraud --host 0.0.0.0 --workers 4
      curl -s localhost:8000/invocations -H 'content-type: application/json' \\
        -d '{"dataframe_records": [{"x0": 0.1, "x1": 2.0}]}'
    """
    from ..serving.server import ServeOptions, quiet_uvicorn, serve

    quiet_uvicorn()
    serve(
        ServeOptions(model, alias, host, port, workers), say=lambda text: click.echo(text, err=True)
    )


@click.command(name="feedback", cls=Command)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model", required=True, metavar="NAME", help="The served model.")
def feedback_command(file: Path, model: str) -> None:
    """Join labels that arrived later to the served predictions of MODEL.

    FILE is a CSV or Parquet file with the columns request_id (as the server answered it),
    label and, for requests of several rows, row. Every label is checked first: an id never
    served, a missing row or a label of another type than the predictions writes nothing.

    \b
    Example:
      cellops feedback labels.csv --model fraud
    """
    from ..config import load_settings
    from ..serving.feedback import record_file

    settings = load_settings()
    count, files = record_file(settings, model, file.resolve())
    shown = ", ".join(relative(path, settings.root) for path in files)
    click.echo(f"recorded {count} label(s) of {model}: {shown}")
