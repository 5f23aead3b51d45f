"""`register_model`: log a trained model with its MLflow flavour and make it the challenger.

What MLflow's `log_model` + `register_model` do, minus the pip-requirement inference that takes
most of their time (MLflow reloads the model in a subprocess to see what it imports): the
requirements are pinned from the running environment instead (`requirements.py`). The model is
saved locally, uploaded as an MLflow 3 logged model linked to the run that trained it (the
running step's run, or the session's), and registered as a new version with the alias
`challenger`. Its tags name that run, the job, the notebook, the git commit and the data files
(with their content hashes) the session's steps read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._limits import tag_text
from ..errors import CellopsUsageError
from ..steps.recording import as_metric
from .reproduction import REPRODUCTION_TAG, reproduction_of
from .requirements import model_requirements
from .store import (
    CHALLENGER,
    TAG_FLAVOR,
    TAG_METRICS,
    RegistryStore,
    check_model_name,
    is_missing,
    open_store,
)

SAMPLE_ROWS = 100  # rows the signature is inferred from
EXAMPLE_ROWS = 5  # rows kept as the input example


class Attachment(Protocol):
    """A file stored beside the model in its folder, marked on the version by `tag` = "1"."""

    tag: str

    def write_into(self, model_folder: str) -> None: ...


@dataclass
class RegisteredVersion:
    """A model version cellops registered."""

    name: str
    version: str
    model_id: str
    run_id: str
    flavor: str
    requirements: list[str]
    seconds: float
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        reproducing = self.tags.get(REPRODUCTION_TAG)
        role = f"the {CHALLENGER}"
        if reproducing:
            role = f"a reproduction of run {reproducing} (no alias)"
        return (
            f"registered {self.name} version {self.version} ({self.flavor}) as {role}, "
            f"from run {self.run_id} in {self.seconds:.2f} s"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 - IPython's protocol; it shows the sentence
        printer.text(str(self))


def register_model(
    model: Any,
    name: str,
    X_sample: Any = None,  # the name data scientists use
    metrics: Mapping[str, float] | None = None,
    *,
    data: list[str] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    attachments: Sequence[Attachment] = (),
    store: RegistryStore | None = None,
) -> RegisteredVersion:
    """Register `model` as a new version of `name` with the alias `challenger`.

    `X_sample` (a few rows of the training features) gives the signature and input example;
    `metrics` are recorded on the version; `data` names extra files whose hashes are recorded;
    `attachments` are written into the model's folder and tag the version (monitoring's drift
    reference profile: `cellops.register_model(..., reference=...)` builds it first, so a bad
    reference fails before anything is written).
    """
    started = time.perf_counter()
    check_model_name(name)
    flavor = _flavor(model)
    numbers = _metrics(metrics)
    run = _run_context()  # opens the session first, so the store below is the session's
    store = store or open_store()
    sample, example = _samples(X_sample)
    signature = _signature(model, sample)
    extra = ["pandas"] if _is_frame(sample) else []
    requirements = model_requirements(model, extra=extra)
    version_tags = _version_tags(store, run, flavor, numbers, data, tags)
    for attachment in attachments:
        version_tags[attachment.tag] = "1"
    reproducing = reproduction_of()  # `cellops reproduce`: a version nothing treats as a challenger
    if reproducing:
        version_tags[REPRODUCTION_TAG] = reproducing

    def create(client: Any) -> Any:
        return client.create_logged_model(
            run["experiment_id"],
            name=name,
            source_run_id=run["run_id"],
            tags={TAG_FLAVOR: flavor, "cellops.registered_as": name},
        )

    logged = store.call(create)
    with tempfile.TemporaryDirectory(prefix="cellops-model-") as folder:
        local = os.path.join(folder, "model")
        try:
            _save(model, flavor, local, logged, run["run_id"], signature, example, requirements)
            for attachment in attachments:
                attachment.write_into(local)
        except Exception:
            store.call(lambda client: client.finalize_logged_model(logged.model_id, "FAILED"))
            raise

        def upload(client: Any) -> None:
            client.log_model_artifacts(logged.model_id, local)
            client.finalize_logged_model(logged.model_id, "READY")

        # Separate calls: a call retried after "database is locked" must be safe to repeat,
        # and creating a version is not.
        store.call(upload)
        version = store.call(
            lambda client: _create_version(client, name, logged, run, version_tags, description)
        )
        link = {"mlflow.modelVersions": json.dumps([{"name": name, "version": version.version}])}

        def label(client: Any) -> None:
            if not reproducing:
                client.set_registered_model_alias(name, CHALLENGER, version.version)
            client.set_logged_model_tags(logged.model_id, link)

        store.call(label)
    return RegisteredVersion(
        name, str(version.version), logged.model_id, run["run_id"], flavor, requirements,
        time.perf_counter() - started, version_tags,
    )  # fmt: skip


def _flavor(model: Any) -> str:
    if model is None:
        raise CellopsUsageError("register_model: the model is None; pass the trained model")
    if _is_sklearn(model):
        return "sklearn"
    if callable(getattr(model, "predict", None)):
        return "pyfunc"
    raise CellopsUsageError(
        f"register_model: a {type(model).__name__} has no predict method; cellops registers "
        "scikit-learn estimators and objects with predict(X)"
    )


def _is_sklearn(model: Any) -> bool:
    return any(
        klass.__module__ == "sklearn.base" and klass.__name__ == "BaseEstimator"
        for klass in type(model).__mro__
    )


def _metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    numbers = {}
    for key, value in (metrics or {}).items():
        number = as_metric(value)
        if number is None:
            raise CellopsUsageError(
                f"register_model: metric {key!r} must be a number, not {value!r}"
            )
        numbers[str(key)] = number
    return numbers


def _run_context() -> dict[str, str]:
    """The run the model comes from: the running step's, or the session's."""
    from ..steps.fluent import current_run
    from ..store.session import ensure_session

    session = ensure_session()
    ref = current_run()
    context = {
        "run_id": ref.run_id,
        "experiment_id": ref.experiment_id,
        "kind": ref.kind,
        "session_run": session.run.run_id,
        "notebook": session.notebook_label,
    }
    if ref.kind == "step":
        context["step"] = ref.name
    if session.git:
        context["git_commit"] = session.git["commit"]
    return context


def _samples(X_sample: Any) -> tuple[Any, Any]:
    if X_sample is None:
        return None, None
    if hasattr(X_sample, "iloc"):
        return X_sample.iloc[:SAMPLE_ROWS], X_sample.iloc[:EXAMPLE_ROWS]
    try:
        return X_sample[:SAMPLE_ROWS], X_sample[:EXAMPLE_ROWS]
    except TypeError:
        raise CellopsUsageError(
            f"register_model: X_sample must be a DataFrame or an array, not a "
            f"{type(X_sample).__name__}"
        ) from None


def _is_frame(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns")


def _signature(model: Any, sample: Any) -> Any:
    if sample is None:
        return None
    from mlflow.models import infer_signature

    try:
        output = model.predict(sample)
    except Exception as exc:
        raise CellopsUsageError(
            f"register_model: the model cannot predict X_sample ({type(exc).__name__}: {exc}); "
            "pass rows with the columns the model was trained on"
        ) from None
    with _quiet():
        return infer_signature(sample, output)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's advice to use skops and its integer-column hints: cellops chose cloudpickle
    (every estimator, custom transformers included) and records the signature as inferred."""
    names = ("mlflow.sklearn", "mlflow.pyfunc", "mlflow.models", "mlflow.types")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _save(model, flavor, local, logged, run_id, signature, example, requirements) -> None:
    from mlflow.models import Model

    mlflow_model = Model(
        artifact_path=logged.artifact_location,
        model_uuid=logged.model_id,
        run_id=run_id,
        model_id=logged.model_id,
    )
    common = {
        "mlflow_model": mlflow_model,
        "signature": signature,
        "input_example": example,
        "pip_requirements": requirements,
    }
    with _quiet():
        if flavor == "sklearn":
            import mlflow.sklearn

            mlflow.sklearn.save_model(model, local, serialization_format="cloudpickle", **common)
            return
        import cloudpickle
        import mlflow.pyfunc

        from . import pyfunc_wrapper

        python_model = model
        if not isinstance(model, mlflow.pyfunc.PythonModel):
            python_model = pyfunc_wrapper.PredictWrapper(model)
        cloudpickle.register_pickle_by_value(pyfunc_wrapper)
        try:
            mlflow.pyfunc.save_model(local, python_model=python_model, **common)
        finally:
            cloudpickle.unregister_pickle_by_value(pyfunc_wrapper)


def _create_version(client, name, logged, run, tags, description) -> Any:
    # The source is the logged model's artifact location, not `models:/<model_id>`: MLflow's
    # SQL registry resolves the latter with a client on the *global* tracking URI (MLflow 3.17,
    # sqlalchemy_store.create_model_version), which is not this project's store.
    def create() -> Any:
        return client.create_model_version(
            name, logged.artifact_location, run_id=run["run_id"], tags=tags,
            description=description, model_id=logged.model_id,
        )  # fmt: skip

    try:
        return create()
    except Exception as exc:
        if not is_missing(exc):
            raise
    try:
        client.create_registered_model(
            name, description="Registered by cellops; the gate moves @champion."
        )
    except Exception as exc:  # another process created it between the two calls
        if "already exists" not in str(exc).lower():
            raise
    return create()


def _version_tags(store, run, flavor, metrics, data, extra) -> dict[str, str]:
    from .store import job_context

    context = job_context()
    tags = {
        TAG_FLAVOR: flavor,
        "cellops.user": context["user"],
        "cellops.source_run": run["run_id"],
        "cellops.source_kind": run["kind"],
        "cellops.session_run": run["session_run"],
        "cellops.notebook": run["notebook"],
    }
    if run.get("step"):
        tags["cellops.step"] = run["step"]
    if run.get("git_commit"):
        tags["cellops.git.commit"] = run["git_commit"]
    if context["job"]:
        tags["cellops.job"] = context["job"]
    if metrics:
        tags[TAG_METRICS] = json.dumps(metrics, sort_keys=True)
    versions = _data_versions(store, run, data)
    if versions:
        tags["cellops.data"] = tag_text(json.dumps(versions, sort_keys=True))
    for key, value in (extra or {}).items():
        tags[str(key)] = tag_text(value)
    return tags


def _data_versions(store: RegistryStore, run: dict[str, str], data: list[str] | None) -> dict:
    """Data files and their DVC hashes (what `dvc` and `cellops lineage FILE` show): those
    given, and those the session's steps read (`--files-in`), from each step's latest run."""
    from .._paths import project_label
    from ..data.dvchash import dvc_md5

    versions: dict[str, str] = {}
    for raw in data or []:
        path = Path(raw)
        if not path.exists():
            raise CellopsUsageError(f"register_model: data file {raw!r} does not exist")
        versions[project_label(path.resolve(), store.settings.root.resolve())] = dvc_md5(path)

    def read(client: Any) -> dict[str, str]:
        steps = client.search_runs(
            [run["experiment_id"]],
            f"tags.`mlflow.parentRunId` = '{run['session_run']}' and tags.`cellops.kind` = 'step'",
            order_by=["attributes.start_time DESC"],
            max_results=200,
        )
        latest: dict[str, Any] = {}
        for step in steps:
            latest.setdefault(step.data.tags.get("cellops.step", step.info.run_name), step)
        found: dict[str, str] = {}
        for step in latest.values():
            if step.info.run_id == run["run_id"]:
                continue  # still running: its files are recorded when the cell ends
            try:  # the DVC hashes the data stage recorded on the step's run
                found.update(json.loads(step.data.tags.get("cellops.files_in") or "{}"))
            except ValueError:  # a tag cut at MLflow's length limit
                continue
        return found

    return {**store.call(read), **versions}
