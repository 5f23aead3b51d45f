"""cellops: tracked, cached, versioned notebook steps on MLflow.

`%load_ext cellops` opens a session run for the notebook and adds `%%step` and `%cellops`.
Heavy libraries (mlflow, pandas, sklearn) are imported only where they are used, so importing
cellops and loading the extension stay fast.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .data.track import track_file
from .errors import CellopsError, CellopsUsageError, StoreUnreachableError
from .fluent import current_run, log_artifact, log_metric, log_param

if TYPE_CHECKING:
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

_loaded: dict = {}


def register_model(
    model: Any,
    name: str,
    X_sample: Any = None,  # noqa: N803
    metrics: dict[str, float] | None = None,
    **options: Any,
) -> "RegisteredVersion":
    """Register `model` as a new version of `name`, with the alias `challenger`.

    Logged with its MLflow flavour (scikit-learn, else pyfunc), a signature and input example
    from `X_sample`, pinned requirements, and links to the running step's run and the data the
    session's steps read. Options: `data=[paths]`, `tags={...}`, `description=...`,
    `reference=training_frame_or_path`: a profile of the training data (the columns to watch
    for drift) stored with the version, which `cellops drift --model NAME` compares with.
    """
    from .registry.register import register_model as register

    return register(model, name, X_sample, metrics, **options)


def promote(name: str, version: str | int | None = None, **options: Any) -> "PromotionOutcome":
    """Run the gate of `name` on `version` (default `@challenger`); move `@champion` if it
    passes. Options: `gate=[...]`, `holdout=path | DataFrame | (X, y)`, `label=`,
    `force=True, reason=...`, `dry_run=True`."""
    from .registry.promote import promote as run_gate

    return run_gate(name, version, **options)


def drift(
    reference: Any, current: Any, columns: list[str] | None = None, **options: Any
) -> "DriftResult":
    """Compare `current` with `reference`, column by column; a `DriftResult`.

    `reference`: a DataFrame, a Parquet/CSV path, a stored profile, or a registered model
    (`"models:/fraud@champion"`, `"models:/fraud/3"`: the profile stored with it).
    `current`: a DataFrame or a path. Options: `engine="native" | "evidently"` (its HTML
    report too; needs raw reference data), `share_threshold=0.5` (dataset drift when at
    least that share of the columns drifted), `stattest="psi"` (one test for every column).
    """
    from .monitoring.api import drift as compare

    return compare(reference, current, columns=columns, **options)


def load_ipython_extension(ipython) -> None:  # noqa: ANN001 - IPython's own signature
    """`%load_ext cellops`: register the magics and open the notebook's session run."""
    from .generators import track_seeding
    from .magics import StepMagics
    from .notebook import detect_notebook
    from .session import start_session

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
    from .session import end_session

    if change["new"]:
        end_session()


def unload_ipython_extension(ipython) -> None:  # noqa: ANN001
    """`%unload_ext cellops`: end the session run after every pending write is stored."""
    from .session import end_session

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
