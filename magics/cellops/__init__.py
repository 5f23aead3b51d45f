"""cellops: tracked, cached, versioned notebook steps on MLflow.

`%load_ext cellops` opens a session run for the notebook and adds `%%step` and `%cellops`.
Heavy libraries (mlflow, pandas, sklearn) are imported only where they are used, so importing
cellops and loading the extension stay fast.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .data import hooks as _data_hooks
from .data.track import track_file
from .errors import CellopsError, CellopsUsageError, StoreUnreachableError
from .steps.fluent import current_run, log_artifact, log_metric, log_param
from .steps.hooks import add_step_hooks as _add_step_hooks

if TYPE_CHECKING:
    from pathlib import Path

    from .monitoring.result import DriftResult
    from .registry.promote import PromotionOutcome
    from .registry.register import RegisteredVersion

__all__ = [
    "CellopsError",
    "CellopsUsageError",
    "StoreUnreachableError",
    "__version__",
    "current_run",
    "drift",
    "load_ipython_extension",
    "log_artifact",
    "log_metric",
    "log_param",
    "promote",
    "register_model",
    "track_file",
    "unload_ipython_extension",
]

_add_step_hooks(_data_hooks)  # DVC versioning and file lineage around every step

_loaded: dict = {}


def register_model(
    model: Any,
    name: str,
    X_sample: Any = None,  # the name data scientists use
    metrics: dict[str, float] | None = None,
    *,
    data: list[str] | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
    reference: Any = None,
) -> "RegisteredVersion":
    """Register `model` as a new version of `name`, with the alias `challenger`.

    Logged with its MLflow flavour (scikit-learn, else pyfunc), a signature and input example
    from `X_sample`, pinned requirements, and links to the running step's run and the data the
    session's steps read. `data`: extra files whose hashes are recorded; `tags`, `description`:
    on the version; `reference`: the training frame or a Parquet/CSV path, whose profile (the
    columns to watch for drift) is stored with the version for `cellops drift --model NAME`.
    """
    from .monitoring.reference import reference_attachments
    from .registry.register import register_model as register

    attachments = reference_attachments(reference)  # a bad reference fails before any write
    return register(
        model,
        name,
        X_sample,
        metrics,
        data=data,
        tags=tags,
        description=description,
        attachments=attachments,
    )


def promote(
    name: str,
    version: str | int | None = None,
    *,
    gate: list[str] | None = None,
    holdout: Any = None,
    label: str | None = None,
    force: bool = False,
    reason: str | None = None,
    dry_run: bool = False,
    latency_samples: int | None = None,
) -> "PromotionOutcome":
    """Run the gate of `name` on `version` (default `@challenger`); move `@champion` if it
    passes. `gate`: conditions instead of the project's; `holdout`: a path, a DataFrame or
    `(X, y)` to score on, with its `label` column; `force=True` with a `reason` promotes past
    a failing gate and records that; `dry_run=True` records the verdict and moves nothing;
    `latency_samples`: how many single-row predictions time the `latency_ms` metric."""
    from .registry.promote import promote as run_gate

    return run_gate(
        name,
        version,
        gate=gate,
        holdout=holdout,
        label=label,
        force=force,
        reason=reason,
        dry_run=dry_run,
        latency_samples=latency_samples,
    )


def drift(
    reference: Any,
    current: Any,
    columns: list[str] | None = None,
    *,
    engine: str = "native",
    share_threshold: float = 0.5,
    stattest: str | None = None,
    report_dir: "str | Path | None" = None,
) -> "DriftResult":
    """Compare `current` with `reference`, column by column; a `DriftResult`.

    `reference`: a DataFrame, a Parquet/CSV path, a stored profile, or a registered model
    (`"models:/fraud@champion"`, `"models:/fraud/3"`: the profile stored with it).
    `current`: a DataFrame or a path. `engine="native" | "evidently"` (its HTML report too,
    under `report_dir`; needs raw reference data); `share_threshold`: dataset drift when at
    least that share of the columns drifted; `stattest="psi"`: one test for every column.
    """
    from .monitoring.api import drift as compare

    return compare(
        reference,
        current,
        columns=columns,
        engine=engine,
        share_threshold=share_threshold,
        stattest=stattest,
        report_dir=report_dir,
    )


def load_ipython_extension(ipython) -> None:  # IPython's own signature
    """`%load_ext cellops`: register the magics and open the notebook's session run."""
    from .magics import StepMagics
    from .steps.generators import track_seeding
    from .store.notebook_info import detect_notebook
    from .store.session import start_session

    if _loaded.get("shell") is ipython:
        return
    magics = StepMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.configurables.append(magics)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    ipython.events.register("post_run_cell", magics.post_run_cell)
    if ipython.has_trait("exit_now"):
        ipython.observe(_end_session_on_exit, names="exit_now")
    track_seeding(list(ipython.user_ns.get("In", [])))  # what ran before cellops loaded
    start_session(detect_notebook(ipython.user_ns))
    for source in ipython.user_ns.get("In", []):  # papermill's cell may run before this one
        magics.record_parameters(source)
    _loaded.update(shell=ipython, magics=magics)


def _end_session_on_exit(change: dict) -> None:
    """End the session as soon as the kernel is told to shut down (`exit_now`), not at exit:
    a kernel whose children ignore SIGTERM (the resource trackers joblib's `n_jobs=2` leaves)
    spends up to ~15 s terminating them after the request, and jupyter_client SIGTERMs the
    kernel 2.5 s after asking, so `atexit` never runs and the next session's reaper would mark
    a finished notebook's run KILLED."""
    from .store.session import end_session

    if change["new"]:
        end_session()


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext cellops`: end the session run after every pending write is stored."""
    from .store.session import end_session

    magics = _loaded.pop("magics", None)
    _loaded.pop("shell", None)
    if magics is not None:
        ipython.events.unregister("pre_run_cell", magics.pre_run_cell)
        ipython.events.unregister("post_run_cell", magics.post_run_cell)
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
        if ipython.has_trait("exit_now"):
            ipython.unobserve(_end_session_on_exit, names="exit_now")
    end_session()
