"""`%cellops register` and `%cellops models`: thin adapters over `cellops.registry`."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .._text import split_names


@magic_arguments()
@argument("var", help="The notebook variable holding the trained model.")
@argument("--name", required=True, help="The registered model's name, e.g. fraud_detector.")
@argument("--sample", help="A variable with a few rows of features: signature, input example.")
@argument(
    "--metrics",
    help="Comma-separated variables holding numbers (f1,auc), or name=variable pairs.",
)
@argument("--data", help="Comma-separated data files whose content hashes are recorded.")
@argument(
    "--reference",
    help="A variable with the training data (or its Parquet/CSV path): its profile is stored "
    "with the version, for drift checks.",
)
def _register_usage() -> None:
    """%cellops register VAR --name NAME [--sample VAR] [--metrics A,B] [--data PATHS]
    [--reference VAR]

    Registers the model held by VAR as a new version of NAME with the alias `challenger`
    (what `cellops.register_model` does). Examples::

        %cellops register model --name fraud --sample X_test --metrics f1,auc
        %cellops register pipeline --name churn --metrics f1=test_f1
        %cellops register model --name fraud --sample X_test --reference train_df
    """


@magic_arguments()
@argument("name", nargs="?", help="The model to show first.")
def _models_usage() -> None:
    """%cellops models [NAME]: the registry panel."""


def _parse(usage: Any, line: str) -> Any:
    try:
        return parse_argstring(usage, line)
    except UsageError as exc:
        raise UsageError(f"{exc}\nusage: {usage.__doc__.splitlines()[0]}") from None


def _lookup(namespace: dict[str, Any], name: str, what: str) -> Any:
    if name not in namespace:
        raise UsageError(
            f"%cellops register: {what} {name!r} is not defined in the notebook; "
            "run the cell that defines it first"
        )
    return namespace[name]


def register(shell: Any, line: str) -> Any:
    from ..monitoring.reference import reference_attachments
    from ..registry.register import register_model

    args = _parse(_register_usage, line)
    namespace = shell.user_ns
    model = _lookup(namespace, args.var, "model variable")
    sample = _lookup(namespace, args.sample, "sample variable") if args.sample else None
    metrics = {}
    for item in split_names(args.metrics):
        key, _, variable = item.partition("=")
        metrics[key.strip()] = _lookup(namespace, (variable or key).strip(), "metric variable")
    data = split_names(args.data) or None
    # a variable, else a file path (register_model says if it is neither)
    reference = namespace.get(args.reference, args.reference) if args.reference else None
    attachments = reference_attachments(reference)
    return register_model(model, args.name, sample, metrics, data=data, attachments=attachments)


def models(shell: Any, line: str) -> Any:  # noqa: ARG001 - every handler gets the shell
    from ..widgets.registry import RegistryPanel

    args = _parse(_models_usage, line)
    return RegistryPanel(args.name)
