"""The closed loop on what was served: `cellops monitor --served` and `--performance`.

`check_served` checks a version's served traffic of a window (`traffic.read_served`; the
champion by default) against its reference profile with the monitoring core
(`monitoring.monitor.check_model`, recorded with its drift streak). `check_performance` judges
it on its labelled served traffic (`monitoring.performance`), recorded as a performance check
with its streak of failed verdicts. When either streak reaches `consecutive`, the retraining
notebook runs as a job through the gate (`monitoring.monitor.retrain`); a server of the alias
reloads when the gate moves it.

What the job trains on (`-p data_path`) defaults to the window's labelled served rows (their
features and the label), written to `.cellops/served/MODEL/` just before the job starts; pass
`-p data_path PATH` to train on other data (the labelled data of a warehouse, say).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CellopsUsageError, NotEnoughLabelsError
from ..monitoring.monitor import Echo, MonitorOutcome, RetrainedOutcome, existing_file
from .traffic import LABEL, ServedTraffic, read_served

if TYPE_CHECKING:
    from ..monitoring.history import PerformanceRecord
    from ..monitoring.performance import PerformanceResult
    from ..registry.store import RegistryStore

SERVED_FOLDER = "served"  # under .cellops/: the windows exported for retraining jobs
LABELS_HOW = "send labels with POST /feedback or `cellops feedback FILE`"


@dataclass
class ServedRequest:
    """The served traffic of `model` in the window `since` ("24h"), of a version (default:
    the one `alias`, champion, points at) and `variant`; `retrain` once `consecutive` checks
    in a row found it wanting."""

    model: str
    since: str = "24h"
    version: str | int | None = None
    alias: str | None = None
    variant: str | None = "champion"
    retrain: str | Path | None = None
    consecutive: int = 3
    parameters: Mapping[str, Any] = field(default_factory=dict)
    allow_unknown: bool = False


@dataclass
class ServedDriftRequest(ServedRequest):
    columns: list[str] | None = None  # default: the profiled columns that were served
    engine: str = "native"
    share_threshold: float = 0.5
    stattest: str | None = None


@dataclass
class PerformanceRequest(ServedRequest):
    conditions: list[str] = field(default_factory=list)  # the gate's language: "f1 >= 0.6"
    min_labels: int = 100
    consecutive: int = 1


@dataclass
class ServedOutcome(MonitorOutcome):
    traffic: ServedTraffic | None = None
    unchecked: list[str] = field(default_factory=list)  # profiled, but not model inputs


@dataclass
class PerformanceOutcome(RetrainedOutcome):
    result: PerformanceResult
    record: PerformanceRecord
    traffic: ServedTraffic
    consecutive: int
    job: Any = None  # jobs.run.JobResult
    promotions: Any = None
    promotion: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The champion met the conditions, or a retrained model replaced it."""
        return bool(self.result.passed) or self.promoted


# -- drift of the served inputs -------------------------------------------------------------


def check_served(
    request: ServedDriftRequest,
    echo: Callable[[str], Any] = print,
    store: RegistryStore | None = None,
) -> ServedOutcome:
    """Check the served traffic of the window for drift against the version's profile;
    retrain when `request.retrain` is given and the drift persisted."""
    from ..monitoring.engines import get_engine
    from ..monitoring.history import TAG_SOURCE, TAG_WINDOW
    from ..monitoring.monitor import CheckRequest, check_model, retrain
    from ..monitoring.reference import load_version_profile
    from ..registry.store import open_store

    _check_consecutive(request.consecutive)
    if get_engine(request.engine).needs_raw_reference:
        raise CellopsUsageError(
            f"--engine {request.engine} needs raw reference data; --served checks against the "
            "profile stored with the version: use --engine native"
        )
    store = store or open_store()
    found = _version(store, request)
    traffic = _traffic(request, found, store)
    profile = load_version_profile(store, found)
    columns, unchecked = _columns(profile, traffic, request.columns, found)
    plan = _plan(request, traffic, store)
    check = check_model(
        CheckRequest(
            request.model,
            traffic.features,
            version=str(found.version),
            columns=columns,
            engine=request.engine,
            share_threshold=request.share_threshold,
            stattest=request.stattest,
            reference=profile,
            consecutive=request.consecutive if request.retrain else None,
            label=_label(traffic),
            tags={TAG_SOURCE: "served", TAG_WINDOW: _window_tag(traffic)},
        ),
        store,
    )
    outcome = ServedOutcome(check, request.consecutive, traffic=traffic, unchecked=unchecked)
    say = Echo(echo, outcome.lines)
    say(f"served traffic: {traffic.describe()}")
    if unchecked:
        say(f"profiled but not model inputs, so not checked: {', '.join(unchecked)}")
    say(f"check of {request.model} v{check.version} (recorded as run {check.record.run_id}):")
    say(str(check.result))
    streak = check.record.streak
    if plan is None:
        say(f"drift streak {streak}")
        return outcome
    if streak < request.consecutive:
        why = "no dataset drift" if not check.result.dataset_drift else "drift has not persisted"
        say(f"streak {streak}/{request.consecutive}: {why}; no retraining")
        return outcome
    say(f"streak {streak}/{request.consecutive}: drift persisted; retraining")
    notebook, values, export = plan
    _export(traffic, export, store, say)
    retrained = retrain(
        store, request.model, notebook, values, request.allow_unknown, check.record.run_id, say
    )
    outcome.job, outcome.promotions, outcome.promotion = retrained
    return outcome


def _columns(
    profile: Any, traffic: ServedTraffic, asked: list[str] | None, found: Any
) -> tuple[list[str], list[str]]:
    """The columns to check (profiled and served), and the profiled ones that were not."""
    served = [str(c) for c in traffic.features.columns]
    profiled = list(profile.columns)
    if asked is not None:
        missing = [c for c in asked if c not in served]
        if missing:
            raise CellopsUsageError(
                f"--columns {', '.join(missing)}: not an input of the served traffic of "
                f"{found.name} v{found.version}; its inputs: {', '.join(served) or 'none'}"
            )
        return list(asked), []
    columns = [c for c in profiled if c in served]
    if not columns:
        raise CellopsUsageError(
            f"none of the columns profiled with {found.name} v{found.version} "
            f"({', '.join(profiled)}) is an input the server logged ({', '.join(served)}): "
            "register the version with reference= a frame of the model's input columns, so "
            "its served inputs can be compared with its training data"
        )
    return columns, [c for c in profiled if c not in served]


# -- performance on labelled served traffic ---------------------------------------------------


def check_performance(
    request: PerformanceRequest,
    echo: Callable[[str], Any] = print,
    store: RegistryStore | None = None,
) -> PerformanceOutcome:
    """Judge the version on its labelled served rows of the window by `request.conditions`;
    record the verdict; retrain when it failed `consecutive` times in a row.

    Raises NotEnoughLabelsError (after recording the check, without a verdict) when fewer
    than `request.min_labels` rows are labelled."""
    from ..cache.hashing import value_digest
    from ..monitoring.history import record_performance
    from ..monitoring.monitor import retrain
    from ..monitoring.performance import judge, parse_conditions
    from ..registry.store import open_store

    gate = parse_conditions(request.conditions)  # a typo is reported before any work
    _check_consecutive(request.consecutive)
    if request.min_labels < 1:
        raise CellopsUsageError(f"--min-labels must be 1 or more, not {request.min_labels}")
    store = store or open_store()
    found = _version(store, request)
    traffic = _traffic(request, found, store)
    plan = _plan(request, traffic, store)
    labelled = traffic.labelled()
    latency = traffic.log.groupby("request_id")["latency_ms"].max()
    result = judge(
        gate, labelled[LABEL], labelled["prediction"], labelled["probability"], latency,
        request.min_labels,
    )  # fmt: skip
    record = record_performance(
        store, request.model, str(found.version), result, rows=traffic.rows,
        window=_window_tag(traffic), data_hash=value_digest(labelled),
        consecutive=request.consecutive if request.retrain else None,
    )  # fmt: skip
    outcome = PerformanceOutcome(result, record, traffic, request.consecutive)
    say = Echo(echo, outcome.lines)
    say(f"served traffic: {traffic.describe()}")
    if result.passed is None:
        raise NotEnoughLabelsError(
            f"no verdict on {request.model} v{found.version}: {result.labels:,} of the "
            f"{traffic.rows:,} rows served in {traffic.window.describe()} are labelled, fewer "
            f"than --min-labels {request.min_labels}. {LABELS_HOW.capitalize()}, widen the "
            f"window (--since), or lower --min-labels (recorded as run {record.run_id})",
            result.labels,
            request.min_labels,
        )
    say(f"performance of {request.model} v{found.version} (recorded as run {record.run_id}):")
    say(str(result))
    if result.passed:
        return outcome
    if plan is None:
        say(f"failed verdicts in a row: {record.streak}")
        return outcome
    if record.streak < request.consecutive:
        say(f"streak {record.streak}/{request.consecutive}: not yet persistent; no retraining")
        return outcome
    say(f"streak {record.streak}/{request.consecutive}: the champion falls short; retraining")
    notebook, values, export = plan
    _export(traffic, export, store, say)
    retrained = retrain(
        store, request.model, notebook, values, request.allow_unknown, record.run_id, say
    )
    outcome.job, outcome.promotions, outcome.promotion = retrained
    return outcome


# -- shared -------------------------------------------------------------------------------------


def _check_consecutive(consecutive: int) -> None:
    if consecutive < 1:
        raise CellopsUsageError(f"--consecutive must be 1 or more, not {consecutive}")


def _version(store: RegistryStore, request: ServedRequest) -> Any:
    from ..monitoring.monitor import check_alias
    from ..monitoring.reference import ModelRef, resolve

    version = None if request.version is None else str(request.version)
    alias = check_alias(version, request.alias)
    return resolve(store, ModelRef(request.model, version, alias if version is None else None))


def _traffic(request: ServedRequest, found: Any, store: RegistryStore) -> ServedTraffic:
    return read_served(
        request.model,
        request.since,
        version=str(found.version),
        variant=request.variant,
        settings=store.settings,
        store=store,
    )


def _label(traffic: ServedTraffic) -> str:
    return f"served: {traffic.describe()}"


def _window_tag(traffic: ServedTraffic) -> str:
    window = traffic.window
    return f"{window.text}: {window.since.isoformat()} to {window.until.isoformat()}"


def _plan(
    request: ServedRequest, traffic: ServedTraffic, store: RegistryStore
) -> tuple[Path, dict[str, Any], Path | None] | None:
    """The retraining job's notebook, parameters and the file of served rows it trains on
    (None when -p data_path is given), all checked before the check is recorded."""
    from ..monitoring.monitor import job_parameters

    if request.retrain is None:
        return None
    notebook = existing_file(request.retrain, "retraining notebook")
    given = dict(request.parameters)
    export = None
    if "data_path" not in given:
        if traffic.labels == 0:
            raise CellopsUsageError(
                f"nothing to retrain on: none of the {traffic.rows:,} rows served in "
                f"{traffic.window.describe()} is labelled. Pass the data to train on with "
                f"-p data_path PATH, or {LABELS_HOW}"
            )
        stamp = traffic.window.until.strftime("%Y%m%dT%H%M%SZ")
        name = f"{traffic.model}-v{traffic.version}-{stamp}.parquet"
        export = store.settings.state_dir / SERVED_FOLDER / traffic.model / name
    values = job_parameters(
        notebook, request.model, export or "", given, store, request.allow_unknown
    )
    return notebook, values, export


def _export(
    traffic: ServedTraffic, path: Path | None, store: RegistryStore, say: Callable[[str], Any]
) -> None:
    """The window's labelled rows (features and the label) as a Parquet file, complete or
    not at all; the label column is named as the model's settings name it (default label)."""
    from .._fs import temp_path_beside
    from .._paths import project_label

    if path is None:
        return
    frame = traffic.labelled().drop(columns=["prediction", "probability"])
    frame = frame.rename(columns={LABEL: _label_column(store, traffic.model)})
    temp = temp_path_beside(path)
    try:
        frame.to_parquet(temp, index=False)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    shown = project_label(path, store.settings.root)
    say(f"the {len(frame):,} labelled served rows to retrain on: {shown}")


def _label_column(store: RegistryStore, model: str) -> str:
    from ..registry.spec import model_settings

    try:
        return model_settings(store.settings, model).label or LABEL
    except CellopsUsageError:
        return LABEL
