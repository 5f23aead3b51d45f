"""What the dashboard shows of a served model: the traffic of the last day per hour
(requests, errors, latency) from the prediction log, the performance checks of its labelled
traffic (`cellops monitor --performance`) over time, and its rollout (`cellops rollout`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAFFIC_HEADERS = ("hour (UTC)", "requests", "rows", "errors", "latency p50 ms", "latency p95 ms")
PERFORMANCE_HEADERS = ("checked", "version", "verdict", "labels", "metrics")
TRAFFIC_WINDOW = "24h"


@dataclass(frozen=True)
class ServingView:
    traffic: list[tuple[str, ...]]  # newest hour first
    performance: list[tuple[str, ...]]  # newest check first
    rollout: str = ""  # the rollout as `cellops rollout MODEL` prints it; "" when none ever ran

    @property
    def empty(self) -> bool:
        return not self.traffic and not self.performance and not self.rollout


def serving_view(store: Any, model: str, since: str = TRAFFIC_WINDOW) -> ServingView:
    """The model's served traffic per hour of the window, and its latest performance checks."""
    from ..monitoring.history import list_performance_checks
    from ..serving.traffic import traffic_over_time

    frame = traffic_over_time(model, since=since, every="1h", settings=store.settings)
    traffic = [
        (
            f"{when:%Y-%m-%d %H:00}",
            f"{int(row.requests):,}",
            f"{int(row.rows):,}",
            f"{int(row.errors):,}",
            f"{row.latency_p50_ms:.1f}",
            f"{row.latency_p95_ms:.1f}",
        )
        for when, row in frame.sort_index(ascending=False).iterrows()
    ]
    performance = [
        (
            f"{check.time:%Y-%m-%d %H:%M}",
            check.version,
            check.verdict,
            f"{check.labels:,}",
            ", ".join(f"{k} {v:.3g}" for k, v in sorted(check.metrics.items())),
        )
        for check in list_performance_checks(store, model, limit=20)
    ]
    return ServingView(traffic, performance, rollout_text(store, model))


def rollout_text(store: Any, model: str) -> str:
    """The model's rollout: split, per-variant counts, the rules on the current window and
    the last (automatic) decision; "" when no rollout was ever started."""
    from ..serving.status import format_status, rollout_status

    status = rollout_status(model, store.settings, store)
    return format_status(status) if status["rollout"] is not None else ""


def log_stamp(settings: Any) -> list[tuple[str, float]]:
    """The newest change in each model's prediction log (its newest date folder's mtime) and
    in each rollout's counts: part of the dashboard's fingerprint, so newly served traffic
    refreshes the page."""
    from ..serving.layout import predictions_root

    root = Path(predictions_root(settings))
    stamps = []
    for folder in sorted(root.glob("model=*")) if root.is_dir() else []:
        days = sorted(folder.glob("date=*"))
        if days:
            stamps.append((folder.name, days[-1].stat().st_mtime))
    rollouts = Path(settings.state_dir) / "rollouts"
    for counts in sorted(p for p in rollouts.glob("*/*") if p.is_dir()):
        newest = max((f.stat().st_mtime for f in counts.iterdir()), default=0.0)
        stamps.append((f"rollout {counts.parent.name}/{counts.name}", newest))
    return stamps
