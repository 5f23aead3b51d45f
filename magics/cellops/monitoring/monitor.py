"""The closed loop: check a model's current data for drift, and retrain once drift persists.

`check_model(CheckRequest(...))` compares a data file with the reference profile stored with a
model version and records the check (`history`). `monitor(MonitorRequest(...))` does that, and
when the check ends a streak of `consecutive` drifted checks it runs the retraining notebook as
a cellops job (the same `run_job` as `cellops run`) on the current data. The notebook
registers its model and calls the gate; the decision is read back from the registry and linked
to the check: the check run gets the job's run id and the decision, the job run the check's run
id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CellopsUsageError
from .reference import DEFAULT_ALIAS, ModelRef

if TYPE_CHECKING:
    from ..jobs.run import JobResult
    from ..registry.job_decisions import PromotionSummary
    from ..registry.store import RegistryStore
    from .history import CheckRecord
    from .result import DriftResult


@dataclass
class CheckRequest:
    """A drift check of a version of `model` (by default the one its caller resolves: the CLI
    asks for @champion)."""

    model: str
    current: Any  # a DataFrame or the path of a Parquet/CSV file
    version: str | int | None = None
    alias: str | None = None
    columns: list[str] | None = None  # default: the profiled columns
    engine: str = "native"
    share_threshold: float = 0.5
    stattest: str | None = None
    reference: Any = None  # raw reference data instead of the stored profile
    record: bool = True  # record the check as a run of the experiment cellops-drift/MODEL
    consecutive: int | None = None  # the monitor's setting, recorded with the check
    label: str | None = None  # what was checked, as recorded (default: the file, or <DataFrame>)
    tags: dict[str, str] | None = None  # more tags of the check's run


@dataclass
class MonitorRequest:
    """One turn of the loop: `check` (recorded), then `retrain` once `consecutive` checks in a
    row found dataset drift, with `parameters` (data_path defaults to the checked file)."""

    check: CheckRequest
    retrain: str | Path
    consecutive: int = 3
    parameters: Mapping[str, Any] = field(default_factory=dict)
    allow_unknown: bool = False  # pass parameters the retraining notebook does not declare


@dataclass
class Check:
    """A drift check of a model version, and its record when it was recorded."""

    model: str
    version: str
    result: DriftResult
    record: CheckRecord | None = None


class RetrainedOutcome:
    """What a monitoring check that may retrain answers: whether it retrained (`job`) and
    whether the retrained model was promoted (`promotion`, the gate's decision)."""

    job: Any
    promotion: str

    @property
    def retrained(self) -> bool:
        return self.job is not None

    @property
    def promoted(self) -> bool:
        return self.promotion.startswith(("promoted", "forced"))


@dataclass
class MonitorOutcome(RetrainedOutcome):
    check: Check
    consecutive: int
    job: JobResult | None = None
    promotions: PromotionSummary | None = None
    promotion: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def streak(self) -> int:
        return self.check.record.streak if self.check.record else 0

    @property
    def ok(self) -> bool:
        """No retraining was needed, or the retrained model was promoted."""
        return not self.retrained or self.promoted


def existing_file(raw: str | Path, what: str, folder_ok: bool = False) -> Path:
    """`raw` as a path, when it is a file (or, with `folder_ok`, a folder of Parquet files
    such as the prediction log of `cellops serve`); else a usage error saying what it is."""
    path = Path(raw)
    if folder_ok and path.is_dir():
        return path
    if not path.is_file():
        hint = "it is a folder" if path.is_dir() else "it does not exist"
        raise CellopsUsageError(
            f"{what} {str(raw)!r} is not a file ({hint}); give the path of a Parquet or CSV file"
            + (" or of a folder of Parquet files" if folder_ok else "")
        )
    return path


def data_hash(data: Any) -> str:
    """xxh3 of a data file's bytes, or of a DataFrame's values."""
    from ..cache.hashing import file_digest, value_digest

    if isinstance(data, (str, Path)):
        return file_digest(data)
    return value_digest(data)


def check_model(request: CheckRequest, store: RegistryStore | None = None) -> Check:
    """Check `request.current` (a DataFrame or a data file) against a version of the model.

    The reference is the profile stored with the version, or `request.reference` (raw data:
    needed by an engine that cannot work from a profile, such as evidently).
    """
    from ..registry.store import check_model_name, open_store
    from .api import drift
    from .engines import get_engine
    from .reference import load_version_profile, resolve

    check_model_name(request.model)
    engine = get_engine(request.engine)
    current, reference = request.current, request.reference
    if isinstance(current, (str, Path)):
        current = existing_file(current, "current data")
    if isinstance(reference, (str, Path)):
        reference = existing_file(reference, "reference data")
    if engine.needs_raw_reference and reference is None:
        raise CellopsUsageError(
            f"--engine {engine.name} needs the raw reference data, and a model version stores "
            "only its profile: add --reference PATH (the training data), or use --engine native"
        )
    store = store or open_store()
    if request.version is not None:
        ref = ModelRef(request.model, str(request.version))
    else:
        ref = ModelRef(request.model, alias=request.alias)
    found = resolve(store, ref)
    columns = request.columns
    if reference is None:
        reference = load_version_profile(store, found)
        if columns is None:  # the current data may hold more (ids, the label): the profiled ones
            columns = list(reference.columns)
    result = drift(
        reference,
        current,
        columns=columns,
        engine=request.engine,
        share_threshold=request.share_threshold,
        stattest=request.stattest,
    )
    check = Check(request.model, str(found.version), result)
    if request.record:
        check.record = _record(store, check, current, request)
    return check


def _record(store: RegistryStore, check: Check, current: Any, request: CheckRequest) -> Any:
    from .history import record_check
    from .profile import build_profile

    checked = [c.column for c in check.result.columns]
    profile = build_profile(current, columns=checked) if checked else None
    label = request.label or (
        _relative(current, store) if isinstance(current, Path) else f"<{type(current).__name__}>"
    )
    return record_check(
        store,
        check.model,
        check.version,
        check.result,
        current=label,
        data_hash=data_hash(current),
        current_profile=profile,
        consecutive=request.consecutive,
        tags=request.tags,
    )


def monitor(
    request: MonitorRequest,
    echo: Callable[[str], Any] = print,
    store: RegistryStore | None = None,
) -> MonitorOutcome:
    """One turn of the loop: check, and retrain when the streak of drifted checks reaches
    `request.consecutive`. Never raises for a failed or refused retraining: the outcome says
    so. Each line of the account goes to `echo` (and `MonitorOutcome.lines`)."""
    from ..registry.store import open_store

    consecutive, model = request.consecutive, request.check.model
    if consecutive < 1:
        raise CellopsUsageError(f"--consecutive must be 1 or more, not {consecutive}")
    store = store or open_store()
    current = existing_file(request.check.current, "current data")
    notebook = existing_file(request.retrain, "retraining notebook")
    allow_unknown = request.allow_unknown
    values = job_parameters(notebook, model, current, request.parameters, store, allow_unknown)
    checked = replace(request.check, current=current, record=True, consecutive=consecutive)
    check = check_model(checked, store)
    outcome = MonitorOutcome(check, consecutive)
    say = Echo(echo, outcome.lines)
    say(f"check of {model} v{check.version} (recorded as run {check.record.run_id}):")
    say(str(check.result))
    streak = check.record.streak
    if streak < consecutive:
        why = "no dataset drift" if not check.result.dataset_drift else "drift has not persisted"
        say(f"streak {streak}/{consecutive}: {why}; no retraining")
        return outcome
    say(f"streak {streak}/{consecutive}: drift persisted; retraining")
    retrained = retrain(store, model, notebook, values, allow_unknown, check.record.run_id, say)
    outcome.job, outcome.promotions, outcome.promotion = retrained
    return outcome


def retrain(
    store: RegistryStore,
    model: str,
    notebook: Path,
    values: dict[str, Any],
    allow_unknown: bool,
    check_run: str,
    say: Callable[[str], Any],
) -> tuple[JobResult, PromotionSummary, str]:
    """Run the retraining notebook as a job (`values` from `job_parameters`), read its gate's
    decision back, and link it with the check run `check_run` that triggered it."""
    from .history import link_retrain

    say("retraining: cellops run " + " ".join([_relative(notebook, store), *_shown(values)]))
    job = _run_retraining(notebook, values, store, allow_unknown)
    status = "succeeded" if job.ok else f"FAILED ({job.failure.describe() if job.failure else ''})"
    say(f"job {job.job_id} {status}; run {job.run_id}; notebook {job.attempts[-1].output}")
    promotions, promotion = _gate_decision(store, model, job)
    link_retrain(store, check_run, job.run_id, promotion)
    say(f"gate: {promotion}")
    return job, promotions, promotion


class Echo:
    """Each line to `echo`, and kept in `lines`."""

    def __init__(self, echo: Callable[[str], Any], lines: list[str]):
        self.echo, self.lines = echo, lines

    def __call__(self, text: str) -> None:
        self.lines.append(text)
        self.echo(text)


def job_parameters(
    notebook: Path,
    model: str,
    current: Path | str,
    given: Mapping[str, Any],
    store: RegistryStore,
    allow_unknown: bool = False,
) -> dict[str, Any]:
    """`data_path` (the current data unless given) and `model_name`, checked like `cellops run`
    checks them, before the check is recorded: a typo is a usage error, not a failed job."""
    from ..jobs.params import check_parameters, inspect_parameters

    spec = inspect_parameters(notebook)
    values = dict(given)
    if "data_path" not in spec.parameters:
        raise CellopsUsageError(
            f"the retraining notebook {notebook} has no parameter data_path: the monitor passes "
            "the data to retrain on as -p data_path PATH; add data_path to its parameters cell"
        )
    if "data_path" not in values:
        values["data_path"] = _relative(Path(current), store)
    if "model_name" in spec.parameters:
        values.setdefault("model_name", model)
    return check_parameters(spec, values, allow_unknown)


def _relative(path: Path, store: RegistryStore) -> str:
    """A project file relative to the project root (the job's working directory)."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(store.settings.root.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def _shown(values: Mapping[str, Any]) -> list[str]:
    shown = []
    for name, value in values.items():
        text = str(value)
        shown += ["-p", name, f"'{text}'" if " " in text or not text else text]
    return shown


def _run_retraining(
    notebook: Path, values: dict[str, Any], store: RegistryStore, allow_unknown: bool
) -> JobResult:
    from ..jobs.run import JobRequest, run_job

    request = JobRequest(notebook, values, allow_unknown, progress=False)
    return run_job(request, store.settings)


def _gate_decision(
    store: RegistryStore, model: str, job: JobResult
) -> tuple[PromotionSummary, str]:
    """What the job's gate decided for `model`, as the text recorded on the check."""
    from ..registry.job_decisions import job_promotions

    summary = job_promotions(job.job_id, store=store)
    mine = [d for d in summary.decisions if d.model == model]
    if mine:
        d = mine[-1]
        text = f"{d.decision} v{d.version}"
        if d.champion_before:
            text += f" (champion was v{d.champion_before})"
        return summary, text + (f": {d.reason}" if d.reason else "")
    if not job.ok:
        reason = job.failure.describe() if job.failure else "the job failed"
        return summary, f"failed: the job failed before the gate ({reason})"
    others = ", ".join(d.model for d in summary.decisions)
    what = f"it judged {others} only" if others else "the notebook did not call cellops.promote"
    return summary, f"none: no gate decision for {model} ({what})"


def check_alias(version: str | None, alias: str | None) -> str | None:
    """`--version` and `--alias` name the same thing: one of them, default @champion."""
    if version is not None and alias is not None:
        raise CellopsUsageError("give --version V or --alias NAME, not both")
    if version is None and alias is None:
        return DEFAULT_ALIAS
    return alias
