"""Drift history: each check of a model is one MLflow run in the experiment `cellops-drift/<model>`.

A run holds the decision (tags), the scores (metrics, one per column), the full result and a
profile of the data checked (artifacts), so the dashboard draws a column's reference-vs-current
distribution from stored files alone. The streak (consecutive checks with dataset drift against
the same model version, this one included) is kept as a tag, so the monitor decides from the
previous run alone; a check that triggered a retraining ends its streak.
"""

from __future__ import annotations

import datetime
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._limits import tag_text

if TYPE_CHECKING:
    from .profile import ReferenceProfile
    from .result import DriftResult

EXPERIMENT_PREFIX = "cellops-drift/"
KIND = "drift-check"

TAG_KIND = "cellops.kind"
TAG_MODEL = "cellops.model"
TAG_VERSION = "cellops.model_version"
TAG_DATASET_DRIFT = "cellops.monitoring.dataset_drift"
TAG_DATA_HASH = "cellops.monitoring.data_hash"
TAG_CURRENT = "cellops.monitoring.current"
TAG_STREAK = "cellops.monitoring.streak"
TAG_RETRAIN_RUN = "cellops.monitoring.retrain_run"
TAG_PROMOTION = "cellops.monitoring.promotion"
TAG_TRIGGERED_BY = "cellops.monitoring.triggered_by"  # on the retraining job's run

RESULT_ARTIFACT = "drift/result.json"
PROFILE_ARTIFACT = "drift/current_profile.json"

MAX_KEY = 240  # MLflow refuses metric names longer than 250 characters
_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")


@dataclass
class CheckRecord:
    """One recorded check, as `list_checks` reads it back."""

    run_id: str
    time: datetime.datetime
    share: float
    dataset_drift: bool
    version: str
    streak: int
    retrain_run: str = ""
    promotion: str = ""
    n_drifted: int = 0
    n_columns: int = 0
    current: str = ""
    data_hash: str = ""
    drifted_columns: list[str] = field(default_factory=list)  # as named in `drifted.*` metrics


def drift_experiment_name(model: str) -> str:
    return f"{EXPERIMENT_PREFIX}{model}"


def metric_key(prefix: str, column: str) -> str:
    """`score.<column>` with the characters MLflow refuses in a metric name replaced by `_`."""
    return f"{prefix}.{_METRIC_CHARS.sub('_', str(column))}"[:MAX_KEY]


def column_metrics(result: DriftResult) -> dict[str, float]:
    """Per-column metrics; a name that two columns sanitize to gets a numbered suffix."""
    metrics: dict[str, float] = {}
    for entry in result.columns:
        for prefix, value in (("score", entry.score), ("drifted", float(entry.drifted))):
            key = base = metric_key(prefix, entry.column)
            number = 2
            while key in metrics:
                key, number = f"{base}_{number}", number + 1
            if value is not None and value == value:  # MLflow takes nan, but a chart does not
                metrics[key] = float(value)
    return metrics


def _call(store_or_client: Any, job: Any) -> Any:
    call = getattr(store_or_client, "call", None)
    return call(job) if call is not None else job(store_or_client)


def experiment_id(client: Any, model: str, create: bool = False) -> str | None:
    name = drift_experiment_name(model)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    if not create:
        return None
    from ..store.links import EXPERIMENT_TAGS  # the kind MLflow's UI reads

    try:
        return client.create_experiment(
            name, tags={TAG_KIND: KIND, TAG_MODEL: model, **EXPERIMENT_TAGS}
        )
    except Exception as exc:  # another process created it first
        if "already exists" not in str(exc).lower():
            raise
        return client.get_experiment_by_name(name).experiment_id


def _latest_run(client: Any, experiment: str, where: str = f"tags.`{TAG_KIND}` = '{KIND}'") -> Any:
    runs = client.search_runs(
        [experiment],
        where,
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def next_streak(previous: Any, version: str, dataset_drift: bool) -> int:
    """This check's streak, from the previous check's run (or None)."""
    if not dataset_drift:
        return 0
    if previous is None:
        return 1
    tags = previous.data.tags
    if tags.get(TAG_RETRAIN_RUN) or tags.get(TAG_VERSION) != version:
        return 1  # a retraining ended the streak; a new champion starts its own
    try:
        return int(tags.get(TAG_STREAK, "0")) + 1
    except ValueError:
        return 1


def record_check(
    store: Any,
    model: str,
    version: str,
    result: DriftResult,
    *,
    current: str,
    data_hash: str,
    current_profile: ReferenceProfile | None = None,
    consecutive: int | None = None,
    tags: dict[str, str] | None = None,
) -> CheckRecord:
    """Record one check as a finished run; returns it with its streak.

    `store` is a `RegistryStore` (its lock serializes the streak's read-then-write between
    processes of this machine) or a plain `MlflowClient`.
    """
    from mlflow.entities import Metric, Param

    now = datetime.datetime.now()
    version = str(version)

    def write(client: Any) -> tuple[str, int]:
        experiment = experiment_id(client, model, create=True)
        streak = next_streak(_latest_run(client, experiment), version, result.dataset_drift)
        run_tags = {
            TAG_KIND: KIND,
            TAG_MODEL: model,
            TAG_VERSION: version,
            TAG_DATASET_DRIFT: str(result.dataset_drift).lower(),
            TAG_DATA_HASH: data_hash,
            TAG_CURRENT: tag_text(current),
            TAG_STREAK: str(streak),
            **(tags or {}),
        }
        run = client.create_run(
            experiment, run_name=f"drift {now:%Y-%m-%d %H:%M:%S}", tags=run_tags
        )
        return run.info.run_id, streak

    run_id, streak = _locked_write(store, model, write)

    stamp = int(now.timestamp() * 1000)
    metrics = {
        "drift_share": result.share,
        "n_drifted": float(result.n_drifted),
        "n_columns": float(len(result.columns)),
        "rows_current": float(result.rows_current),
        **column_metrics(result),
    }
    params = {"engine": result.engine, "share_threshold": str(result.share_threshold)}
    if consecutive is not None:
        params["consecutive"] = str(consecutive)

    def details(client: Any) -> None:
        # log_batch takes at most 1000 metrics a call
        items = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
        for start in range(0, max(len(items), 1), 1000):
            client.log_batch(
                run_id,
                metrics=items[start : start + 1000],
                params=[Param(k, v) for k, v in params.items()] if start == 0 else [],
            )
        client.log_text(run_id, json.dumps(result.to_dict(), indent=1), RESULT_ARTIFACT)
        if current_profile is not None:
            client.log_text(run_id, json.dumps(current_profile.to_dict()), PROFILE_ARTIFACT)
        client.set_terminated(run_id, "FINISHED")

    _fill_run(store, run_id, details)
    return CheckRecord(
        run_id, now, result.share, result.dataset_drift, version, streak,
        n_drifted=result.n_drifted, n_columns=len(result.columns), current=current,
        data_hash=data_hash,
    )  # fmt: skip


def _fill_run(store: Any, run_id: str, details: Any) -> None:
    """`details(client)` logs the check's metrics and artifacts and ends the run; a run it
    could not fill is marked FAILED, never left RUNNING."""
    try:
        _call(store, details)
    except BaseException:
        _call(store, lambda client: client.set_terminated(run_id, "FAILED"))
        raise


def _locked_write(store: Any, model: str, write: Any) -> Any:
    """`write(client)` under the model's drift lock when the store has one, so two checks of
    one model never read the same streak."""
    lock = getattr(store, "lock", None)
    if lock is None:
        return _call(store, write)
    with lock(f"drift-{model}"):
        return _call(store, write)


def link_retrain(store: Any, check_run: str, job_run: str, promotion: str) -> None:
    """Link a check and the retraining job it triggered, both ways."""

    def write(client: Any) -> None:
        tags = {TAG_PROMOTION: tag_text(promotion)}
        if job_run:
            tags[TAG_RETRAIN_RUN] = job_run
            client.set_tag(job_run, TAG_TRIGGERED_BY, check_run)
        for key, value in tags.items():
            client.set_tag(check_run, key, value)

    _call(store, write)


def list_checks(client: Any, model: str, limit: int = 100) -> list[CheckRecord]:
    """The model's latest `limit` checks, newest first (reverse it for a chart over time)."""
    return [_record(run) for run in _latest_of_kind(client, model, KIND, limit)]


def _latest_of_kind(store_or_client: Any, model: str, kind: str, limit: int) -> list[Any]:
    """The newest `limit` runs of `kind` in the model's drift experiment, newest first."""

    def read(client: Any) -> list[Any]:
        experiment = experiment_id(client, model)
        if experiment is None:
            return []
        return client.search_runs(
            [experiment],
            f"tags.`{TAG_KIND}` = '{kind}'",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )

    return _call(store_or_client, read)


def _record(run: Any) -> CheckRecord:
    tags, metrics = run.data.tags, run.data.metrics
    try:
        streak = int(tags.get(TAG_STREAK, "0"))
    except ValueError:
        streak = 0
    return CheckRecord(
        run_id=run.info.run_id,
        time=datetime.datetime.fromtimestamp(run.info.start_time / 1000),
        share=float(metrics.get("drift_share", 0.0)),
        dataset_drift=tags.get(TAG_DATASET_DRIFT) == "true",
        version=tags.get(TAG_VERSION, ""),
        streak=streak,
        retrain_run=tags.get(TAG_RETRAIN_RUN, ""),
        promotion=tags.get(TAG_PROMOTION, ""),
        n_drifted=int(metrics.get("n_drifted", 0)),
        n_columns=int(metrics.get("n_columns", 0)),
        current=tags.get(TAG_CURRENT, ""),
        data_hash=tags.get(TAG_DATA_HASH, ""),
        drifted_columns=sorted(
            key.removeprefix("drifted.")
            for key, value in metrics.items()
            if key.startswith("drifted.") and value == 1.0
        ),
    )


def _artifact_json(client: Any, run_id: str, path: str) -> Any:
    from .._process import environment

    def read(client: Any) -> Any:
        with tempfile.TemporaryDirectory(prefix="cellops-drift-") as folder:
            with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                local = client.download_artifacts(run_id, path, folder)
            return json.loads(Path(local).read_text())

    return _call(client, read)


def load_check_result(client: Any, run_id: str) -> DriftResult:
    from .result import DriftResult

    return DriftResult.from_dict(_artifact_json(client, run_id, RESULT_ARTIFACT))


def load_check_profile(client: Any, run_id: str) -> ReferenceProfile:
    from .profile import ReferenceProfile

    return ReferenceProfile.from_dict(_artifact_json(client, run_id, PROFILE_ARTIFACT))


# -- performance checks of served traffic -------------------------------------------------------
# Runs of the same experiment, of kind "performance-check" (so `list_checks` and the drift
# streak never see them). The streak counts consecutive failed verdicts of one version; a
# check without a verdict (too few labels) is recorded but neither breaks nor extends it.

PERFORMANCE_KIND = "performance-check"
TAG_VERDICT = "cellops.monitoring.verdict"  # pass | fail | none
TAG_CONDITIONS = "cellops.monitoring.conditions"
TAG_WINDOW = "cellops.monitoring.window"
TAG_SOURCE = "cellops.monitoring.source"  # "served" for checks of the prediction log
PERFORMANCE_ARTIFACT = "performance/result.json"
_VERDICTS = f"tags.`{TAG_KIND}` = '{PERFORMANCE_KIND}' and tags.`{TAG_VERDICT}` != 'none'"


@dataclass
class PerformanceRecord:
    """One recorded performance check, as `list_performance_checks` reads it back."""

    run_id: str
    time: datetime.datetime
    version: str
    verdict: str  # pass | fail | none (fewer labels than asked for)
    streak: int
    labels: int
    rows: int
    metrics: dict[str, float]
    conditions: str = ""
    window: str = ""
    retrain_run: str = ""
    promotion: str = ""


def record_performance(
    store: Any,
    model: str,
    version: str,
    result: Any,
    *,
    rows: int,
    window: str,
    data_hash: str = "",
    consecutive: int | None = None,
) -> PerformanceRecord:
    """Record a `monitoring.performance.PerformanceResult` as a finished run; returns it with
    its streak of failed verdicts."""
    from mlflow.entities import Metric, Param

    now, version = datetime.datetime.now(), str(version)
    conditions = " and ".join(f"({c})" if " or " in c else c for c in result.conditions)

    def write(client: Any) -> tuple[str, int]:
        experiment = experiment_id(client, model, create=True)
        previous = _latest_run(client, experiment, _VERDICTS)
        if result.passed is None:
            streak = int(previous.data.tags.get(TAG_STREAK, "0")) if previous else 0
        else:
            streak = next_streak(previous, version, not result.passed)
        run_tags = {
            TAG_KIND: PERFORMANCE_KIND, TAG_MODEL: model, TAG_VERSION: version,
            TAG_VERDICT: result.verdict, TAG_CONDITIONS: tag_text(conditions),
            TAG_WINDOW: tag_text(window), TAG_SOURCE: "served", TAG_STREAK: str(streak),
            TAG_DATA_HASH: data_hash,
        }  # fmt: skip
        run = client.create_run(
            experiment, run_name=f"performance {now:%Y-%m-%d %H:%M:%S}", tags=run_tags
        )
        return run.info.run_id, streak

    run_id, streak = _locked_write(store, model, write)
    stamp = int(now.timestamp() * 1000)
    metrics = {"labels": float(result.labels), "rows": float(rows), **result.metrics}
    metrics = {k: v for k, v in metrics.items() if v == v}  # nan: not a point of a chart
    params = {"task": result.task or "unknown"}
    if consecutive is not None:
        params["consecutive"] = str(consecutive)

    def details(client: Any) -> None:
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        client.log_text(run_id, json.dumps(result.to_dict(), indent=1), PERFORMANCE_ARTIFACT)
        client.set_terminated(run_id, "FINISHED")

    _fill_run(store, run_id, details)
    return PerformanceRecord(
        run_id, now, version, result.verdict, streak, result.labels, rows,
        dict(result.metrics), conditions, window,
    )  # fmt: skip


def list_performance_checks(client: Any, model: str, limit: int = 100) -> list[PerformanceRecord]:
    """The model's latest `limit` performance checks of served traffic, newest first: what
    the dashboard draws as the performance over time (`metrics` holds f1, auc, ..., and
    latency_p95_ms; `labels` how many labelled rows each verdict stood on)."""
    runs = _latest_of_kind(client, model, PERFORMANCE_KIND, limit)
    return [_performance_record(run) for run in runs]


def _performance_record(run: Any) -> PerformanceRecord:
    tags, metrics = run.data.tags, dict(run.data.metrics)
    try:
        streak = int(tags.get(TAG_STREAK, "0"))
    except ValueError:
        streak = 0
    labels, rows = int(metrics.pop("labels", 0)), int(metrics.pop("rows", 0))
    return PerformanceRecord(
        run_id=run.info.run_id,
        time=datetime.datetime.fromtimestamp(run.info.start_time / 1000),
        version=tags.get(TAG_VERSION, ""),
        verdict=tags.get(TAG_VERDICT, "none"),
        streak=streak,
        labels=labels,
        rows=rows,
        metrics=metrics,
        conditions=tags.get(TAG_CONDITIONS, ""),
        window=tags.get(TAG_WINDOW, ""),
        retrain_run=tags.get(TAG_RETRAIN_RUN, ""),
        promotion=tags.get(TAG_PROMOTION, ""),
    )
