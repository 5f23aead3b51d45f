"""What the drift dashboard shows, read from the store alone: the drift history and profiles of
each check, the registry's versions and aliases, and recent jobs. Never raw data.

`notebooks/drift_dashboard.ipynb` calls these and only draws; each function is one query (or a
few) against MLflow, so a page view costs milliseconds once the kernel has MLflow imported.
"""

from __future__ import annotations

import datetime
import math
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..monitoring.result import COLUMN_HEADERS  # noqa: F401 - the dashboard notebook reads it from here
from ..registry.store import RegistryStore
from ..store.links import UiLink, UiLinks

JOB_KIND = "job"
NO_CHECKS = "no drift checks yet: run cellops drift --model {name} --current PATH"
NO_MODELS = (
    "no model is registered yet: register one with cellops.register_model(model, NAME, "
    "X_sample, reference=training_frame), then run cellops drift --model NAME --current PATH"
)


PROJECT_ENV = "CELLOPS_DASHBOARD_PROJECT"  # set by `cellops dashboard` for the kernels
MODEL_ENV = "CELLOPS_DASHBOARD_MODEL"  # the model shown when the URL names none


def open_dashboard_store(settings: Any = None) -> RegistryStore:
    """The project's store: `cellops dashboard` names the project (and MLFLOW_TRACKING_URI),
    else the kernel's working folder decides."""
    import os

    from ..config import load_settings

    return RegistryStore(settings or load_settings(os.environ.get(PROJECT_ENV) or None))


def warm_up(store: RegistryStore) -> None:
    """Import MLflow and open the store's connection: what a pre-heated kernel does ahead."""
    store.call(lambda client: client.search_experiments(max_results=1))


# -- models -------------------------------------------------------------------------------------


def model_names(store: RegistryStore) -> list[str]:
    """Registered models, and models with a drift history but no registration (sorted)."""
    from ..monitoring.history import EXPERIMENT_PREFIX

    def read(client: Any) -> list[str]:
        names = {m.name for m in client.search_registered_models(max_results=1000)}
        for experiment in client.search_experiments(
            filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'", max_results=1000
        ):
            names.add(experiment.name.removeprefix(EXPERIMENT_PREFIX))
        return sorted(names)

    return store.call(read)


def model_from_query(query: str | None) -> str | None:
    """The `model` parameter of a URL query string (`model=fraud&x=1`), or None."""
    values = urllib.parse.parse_qs((query or "").lstrip("?")).get("model")
    return (values[0].strip() or None) if values else None


def choose_model(models: list[str], wanted: str | None) -> tuple[str | None, str]:
    """The model to show first, and a note when `wanted` is not one of `models`."""
    if wanted and wanted in models:
        return wanted, ""
    first = models[0] if models else None
    if not wanted:
        return first, ""
    known = ", ".join(models) if models else "none"
    return first, f"there is no model named {wanted!r} (models: {known})"


# -- drift history ------------------------------------------------------------------------------


@dataclass
class SharePoint:
    when: datetime.datetime
    share: float
    dataset_drift: bool
    version: str
    run_id: str
    n_drifted: int
    n_columns: int


def share_series(store: RegistryStore, model: str, limit: int = 200) -> list[SharePoint]:
    """The drift share of the model's last `limit` checks, oldest first."""
    from ..monitoring.history import list_checks

    checks = list_checks(store, model, limit)
    return [
        SharePoint(c.time, c.share, c.dataset_drift, c.version, c.run_id, c.n_drifted, c.n_columns)
        for c in reversed(checks)
    ]


@dataclass
class LatestCheck:
    run_id: str
    when: datetime.datetime
    version: str
    streak: int
    result: Any = None  # a DriftResult, None when its artifact could not be read
    problem: str = ""
    retrain_run: str = ""
    promotion: str = ""

    @property
    def headline(self) -> str:
        stamp = f"{self.when:%Y-%m-%d %H:%M:%S}"
        if self.result is None:
            return f"latest check {stamp} (model v{self.version}): {self.problem}"
        text = f"latest check {stamp} (model v{self.version}): {self.result.summary()}"
        if self.streak:
            text += f"; {self.streak} drifted check(s) in a row"
        return text


def latest_check(store: RegistryStore, model: str) -> LatestCheck | None:
    """The model's newest check with its full result, or None when it has none."""
    from ..monitoring.history import list_checks, load_check_result

    checks = list_checks(store, model, 1)
    if not checks:
        return None
    record = checks[0]
    latest = LatestCheck(
        record.run_id, record.time, record.version, record.streak,
        retrain_run=record.retrain_run, promotion=record.promotion,
    )  # fmt: skip
    try:
        latest.result = load_check_result(store, record.run_id)
    except Exception as exc:  # a failed check: its result was never written
        latest.problem = f"its result could not be read ({type(exc).__name__}: {exc})"
    return latest


def column_rows(result: Any) -> list[tuple[str, ...]]:
    """The per-column table of a DriftResult: drifted columns first, then by name."""
    return result.table_rows(drifted_first=True)


# -- distributions from the two profiles --------------------------------------------------------


@dataclass
class Distribution:
    """A column's reference and current shares per bin (numeric) or per category."""

    column: str
    kind: str  # numeric | categorical | none
    labels: list[str] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)  # numeric: len(labels) + 1
    reference: list[float] = field(default_factory=list)  # shares of non-missing rows
    current: list[float] = field(default_factory=list)
    missing_reference: float = 0.0  # share of rows missing
    missing_current: float = 0.0
    note: str = ""


def load_profiles(store: RegistryStore, model: str, latest: LatestCheck) -> tuple[Any, Any, str]:
    """(reference profile of the checked version, current profile of the check, note)."""
    from ..monitoring.history import load_check_profile
    from ..monitoring.reference import load_reference_profile

    notes, reference, current = [], None, None
    try:
        reference = load_reference_profile(store, model, latest.version)
    except Exception as exc:
        notes.append(f"no reference profile for v{latest.version}: {_short(exc)}")
    try:
        current = load_check_profile(store, latest.run_id)
    except Exception as exc:
        notes.append(f"no profile of the checked data: {_short(exc)}")
    return reference, current, "; ".join(notes)


def _short(exc: BaseException) -> str:
    return str(exc).split("\n")[0][:300]


def distribution(
    column: str, reference: Any, current: Any, bins: int = 30, top: int = 15
) -> Distribution:
    """Reference vs current of `column` from two ReferenceProfiles (either may be None)."""
    ref = reference.columns.get(column) if reference is not None else None
    cur = current.columns.get(column) if current is not None else None
    if ref is None and cur is None:
        return Distribution(column, "none", note=f"no profile holds column {column!r}")
    notes = [f"not in the {side} profile" for side, p in (("reference", ref), ("current", cur))
             if p is None]  # fmt: skip
    notes += [
        f"all values missing in {side}"
        for side, p in (("reference", ref), ("current", cur))
        if p is not None and not p.count
    ]
    mode = _mode(ref) or _mode(cur)
    if mode is None:
        found = Distribution(column, "none")
    else:
        sides = []
        for side, p in (("reference", ref), ("current", cur)):
            if p is not None and p.count and _mode(p) != mode and not _can_draw(p, mode):
                notes.append(f"type changed in {side}: {p.kind} ({p.dtype})")
                p = None
            sides.append(p)
        found = (_numeric if mode == "numeric" else _categorical)(column, *sides, bins, top)
    found.missing_reference = _missing_share(ref)
    found.missing_current = _missing_share(cur)
    found.note = "; ".join(notes)
    return found


def _mode(profile: Any) -> str | None:
    """How a column profile is drawn: a histogram, bars per category, or not at all."""
    if profile is None or not profile.count:
        return None
    if profile.kind != "categorical" and profile.hist_edges:
        return "numeric"
    return "categorical" if profile.counts else None


def _can_draw(profile: Any, mode: str) -> bool:
    return bool(profile.hist_edges) if mode == "numeric" else bool(profile.counts)


def _missing_share(profile: Any) -> float:
    if profile is None:
        return 0.0
    total = profile.count + profile.missing
    return profile.missing / total if total else 0.0


def _numeric(column: str, ref: Any, cur: Any, bins: int, top: int) -> Distribution:  # noqa: ARG001 - called as _categorical is
    import numpy as np

    sides = [_fine_histogram(p) for p in (ref, cur)]
    present = [s for s in sides if s is not None]
    if not present:
        return Distribution(column, "numeric")
    # the range both sides mostly cover (0.5% to 99.5% quantiles), so that one outlier does
    # not squash the picture; values beyond it are counted in the end bins
    ranges = [_central_range(p, side) for p, side in zip((ref, cur), sides, strict=True) if side]
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if not (math.isfinite(low) and math.isfinite(high)):
        return Distribution(column, "numeric", note="no finite values")
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    shares = []
    for side in sides:
        if side is None:
            shares.append([0.0] * bins)
            continue
        fine_edges, counts = side
        centers = np.clip((fine_edges[:-1] + fine_edges[1:]) / 2, edges[0], edges[-1])
        coarse, _ = np.histogram(centers, bins=edges, weights=counts)
        total = coarse.sum()
        shares.append((coarse / total if total else coarse).tolist())
    labels = [f"{a:.4g}" for a in edges[:-1]]
    return Distribution(column, "numeric", labels, edges.tolist(), shares[0], shares[1])


def _central_range(profile: Any, histogram: tuple[Any, Any]) -> tuple[float, float]:
    quantiles = profile.quantiles or []
    if len(quantiles) >= 201:
        tail = len(quantiles) // 200  # 0.5% of the sketch's points
        return float(quantiles[tail]), float(quantiles[-1 - tail])
    edges = histogram[0]
    return float(edges[0]), float(edges[-1])


def _fine_histogram(profile: Any) -> tuple[Any, Any] | None:
    import numpy as np

    if profile is None or not profile.count:
        return None
    edges = np.asarray(profile.hist_edges, dtype=float)
    counts = np.asarray(profile.hist_counts, dtype=float)
    if len(edges) != len(counts) + 1 or not len(counts):
        return None
    return edges, counts


def _categorical(column: str, ref: Any, cur: Any, bins: int, top: int) -> Distribution:  # noqa: ARG001 - called as _numeric is
    counts = [_category_counts(p) for p in (ref, cur)]
    totals = [sum(c.values()) + (_other(p)) for c, p in zip(counts, (ref, cur), strict=True)]
    weight: dict[str, float] = {}
    for side, total in zip(counts, totals, strict=True):
        for value, n in side.items():
            weight[value] = weight.get(value, 0.0) + (n / total if total else 0.0)
    chosen = sorted(weight, key=lambda v: (-weight[v], v))[:top]
    shares = []
    for side, total in zip(counts, totals, strict=True):
        row = [side.get(v, 0) / total if total else 0.0 for v in chosen]
        rest = 1.0 - sum(row) if total else 0.0
        shares.append([*row, max(rest, 0.0)])
    return Distribution(column, "categorical", [*chosen, "(other)"], [], shares[0], shares[1])


def _category_counts(profile: Any) -> dict[str, int]:
    if profile is None:
        return {}
    return {str(k): int(v) for k, v in (profile.counts or {}).items()}


def _other(profile: Any) -> int:
    return int(getattr(profile, "other_count", 0) or 0) if profile is not None else 0


# -- registry -----------------------------------------------------------------------------------


VERSION_HEADERS = ("version", "aliases", "created", "by", "metrics", "last gate")


@dataclass
class RegistryView:
    registered: bool
    versions: list[tuple[str, ...]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    last_promotion: str = ""
    last_event: str = ""
    links: list[UiLink] = field(default_factory=list)  # each version's page in MLflow's UI


def registry_view(store: RegistryStore, model: str) -> RegistryView:
    """Versions with their aliases, the last change of champion, and the last gate event."""
    from ..errors import CellopsUsageError
    from ..registry.audit import history
    from ..registry.catalog import model_info

    try:
        info = model_info(store, model)
    except CellopsUsageError:
        return RegistryView(False)
    rows = []
    for v in info.versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
        rows.append((v.version, ", ".join(v.aliases), v.created, v.user, metrics, v.gate_text()))
    links = UiLinks(store.settings)
    aliases = {
        alias: version
        for alias, version in (
            ("champion", info.champion),
            ("challenger", info.challenger),
            ("previous_champion", info.previous),
        )
        if version
    }
    view = RegistryView(True, rows, aliases)
    view.links = [links.model_version(model, v.version) for v in info.versions]
    events = [e for e in history(store, model, limit=200) if e.kind != "register"]
    moves = [e for e in events if e.kind in ("promote", "rollback") and e.champion_after]
    moves = [e for e in moves if e.champion_after != e.champion_before]
    if moves:
        view.last_promotion = _event_text(moves[-1])
    if events and (not moves or events[-1] is not moves[-1]):
        view.last_event = _event_text(events[-1])
    return view


def _event_text(event: Any) -> str:
    text = f"{event.when}: {event.kind} v{event.version} {event.decision}"
    if event.kind in ("promote", "rollback") and event.champion_after:
        before = f"v{event.champion_before}" if event.champion_before else "none"
        text += f" (champion {before} -> v{event.champion_after})"
    if event.user:
        text += f" by {event.user}"
    if event.reason:
        text += f": {event.reason}"
    return text


# -- recent jobs --------------------------------------------------------------------------------


JOB_HEADERS = ("job", "notebook", "started", "status", "duration", "this model")


@dataclass
class JobRow:
    job: str
    notebook: str
    started: str
    status: str
    duration: str
    link: str
    mlflow: UiLink | None = None  # the job run's page in MLflow's UI

    def cells(self) -> tuple[str, ...]:
        return (self.job, self.notebook, self.started, self.status, self.duration, self.link)


def recent_jobs(store: RegistryStore, model: str | None = None, limit: int = 10) -> list[JobRow]:
    """The project's latest job runs (`cellops run`), newest first, with their outcome, and
    how each relates to `model`: it registered a version, or a drift check triggered it."""

    from ..monitoring.history import list_checks

    def read(client: Any) -> tuple[list[Any], dict[str, str]]:
        experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
        runs = []
        for start in range(0, len(experiments), 100):  # search_runs takes 100 experiments
            runs += client.search_runs(
                experiments[start : start + 100],
                f"tags.`cellops.kind` = '{JOB_KIND}'",
                order_by=["attributes.start_time DESC"],
                max_results=limit,
            )
        registered: dict[str, str] = {}
        if model:
            for mv in client.search_model_versions(f"name = '{model}'"):
                job = (mv.tags or {}).get("cellops.job")
                if job:
                    registered[job] = f"registered v{mv.version}"
        return runs, registered

    runs, registered = store.call(read)
    checks = {c.run_id for c in list_checks(store, model, 200)} if model else set()
    runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
    links = UiLinks(store.settings)
    rows = []
    for run in runs[:limit]:
        tags = run.data.tags
        job = tags.get("cellops.job", "")
        related = [registered[job]] if job in registered else []
        trigger = tags.get("cellops.monitoring.triggered_by", "")
        if trigger and trigger in checks:
            related.append(f"retraining after drift check {trigger[:8]}")
        rows.append(
            JobRow(
                job or run.info.run_id[:8],
                tags.get("cellops.notebook", run.info.run_name or ""),
                _stamp(run.info.start_time),
                _job_status(run),
                _duration(run.info.start_time, run.info.end_time),
                "; ".join(related),
                links.run(run.info.run_id, run.info.experiment_id, f"job {job}"),
            )
        )
    return rows


def _job_status(run: Any) -> str:
    outcome = run.data.tags.get("cellops.job.status")
    if outcome:
        error = run.data.tags.get("cellops.job.error", "")
        return f"{outcome}: {error[:120]}" if outcome == "failed" and error else outcome
    return {"RUNNING": "running", "FINISHED": "succeeded", "FAILED": "failed"}.get(
        run.info.status, run.info.status.lower()
    )


def _stamp(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def _duration(start: int | None, end: int | None) -> str:
    if not start or not end:
        return ""
    seconds = max(end - start, 0) / 1000
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def link_html(link: UiLink | None) -> str:
    """A page of MLflow's UI as the dashboard shows it: a link when a UI is known (opening in
    a new tab), else the `cellops ui` command that opens it."""
    import html

    if link is None:
        return ""
    if link.url:
        url = html.escape(link.url, quote=True)
        return f'<a class="cellops-mlflow" href="{url}" target="_blank" rel="noopener">open</a>'
    return f'<code class="cellops-mlflow">{html.escape(link.command)}</code>'
