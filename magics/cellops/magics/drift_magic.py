"""`%cellops drift REF CUR`: a thin adapter over `cellops.drift`, which checks what it is given
(its named errors become a UsageError in `StepMagics.cellops`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .._text import split_names


@magic_arguments()
@argument("reference", help="A notebook variable (DataFrame), a data file, or models:/NAME@alias.")
@argument("current", help="A notebook variable (DataFrame) or a data file.")
@argument("--columns", help="Comma-separated columns to check (default: all shared).")
@argument(
    "--engine",
    default="native",
    help="native (default), evidently, or an engine another package registers.",
)
@argument(
    "--share-threshold",
    dest="share_threshold",
    type=float,
    default=0.5,
    help="Dataset drift when at least this share of columns drifted, in (0, 1] (default 0.5).",
)
@argument("--stattest", help="One test for every column: ks, chisquare, z, psi, ...")
def _drift_usage() -> None:
    """%cellops drift REF CUR [--columns a,b] [--engine native|evidently] [--share-threshold X]

    Compares CUR with REF column by column and shows the table (what `cellops.drift` does).
    REF and CUR are notebook variables, data files (Parquet or CSV), or for REF a registered
    model's stored profile. Examples::

        %cellops drift train_df new_df --columns amount,country
        %cellops drift models:/fraud@champion data/current.parquet --share-threshold 0.3
        %cellops drift data/transactions.parquet data/current.parquet --engine evidently
    """


def _parse(line: str) -> Any:
    try:
        return parse_argstring(_drift_usage, line)
    except UsageError as exc:
        raise UsageError(f"{exc}\nusage: {_drift_usage.__doc__.splitlines()[0]}") from None


def _resolve(namespace: dict[str, Any], token: str, what: str, models: bool) -> Any:
    if token.isidentifier() and token in namespace:
        return namespace[token]
    if models and token.startswith("models:/"):
        return token
    if Path(token).is_file():
        return token
    shapes = "a notebook variable, a data file" + (" or models:/NAME@ALIAS" if models else "")
    if token.isidentifier():
        reason = f"no variable {token!r} is defined in the notebook and no file has that name"
    else:
        reason = f"{token} is not a file"
    raise UsageError(f"%cellops drift: {what} {token!r}: {reason}; give {shapes}")


def drift(shell: Any, line: str) -> Any:
    from ..monitoring.api import drift as compare
    from ..monitoring.reference import model_reference

    args = _parse(line)  # the engine and the threshold are checked by `cellops.drift`
    namespace = shell.user_ns
    reference = _resolve(namespace, args.reference, "REF", models=True)
    current = _resolve(namespace, args.current, "CUR", models=False)
    columns = split_names(args.columns) or None
    reference, columns = model_reference(reference, columns)
    return compare(
        reference,
        current,
        columns=columns,
        engine=args.engine,
        share_threshold=args.share_threshold,
        stattest=args.stattest,
    )
