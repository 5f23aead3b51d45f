"""What a rollout looks like now: the split, per-variant counts of every worker, the rules on
the current window, the last decision. `rollout_status` is the one core function the CLI
(`cellops rollout MODEL`), the dashboard and the JupyterLab panel read; its answer is JSON.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..config import Settings, load_settings
from .rollout import SHADOW, read_state
from .rules import BASE_METRICS, Rules, rollout_spec
from .stats import read_counts, stats_folder


def _clean(metrics: dict[str, float]) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {}
    for key, value in metrics.items():
        if value != value or math.isinf(value):
            out[key] = None
        elif key in ("requests", "errors", "dropped"):
            out[key] = int(value)
        else:
            out[key] = round(float(value), 6)
    return out


def rollout_status(
    name: str, settings: Settings | None = None, store: Any = None
) -> dict[str, Any]:
    """The rollout of model `name`:

    {"model": str, "active": bool,
     "rollout": {"id", "mode": "canary"|"shadow", "status": "running"|"promoted"|"aborted"|
                 "rolled back", "share": float, "champion": str, "challenger": str,
                 "started": iso, "by": str, "revision": int} | None,
     "split": {"champion": float, "canary": float} | {"champion": 100.0, "shadow": "copy"} | None,
     "variants": {"champion"|"canary"|"shadow": {"requests", "errors", "error_rate",
                  "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"[, "agreement", "dropped"]}},
                 (since the rollout started, every worker; null where there is no value)
     "window": {"index": int, "seconds": float, "variants": {...as above}},
     "rules": [{"condition", "status": "pass"|"FAIL"|"waiting"|"skipped", "sides"}],
     "min_requests": int, "schedule": [int], "last_decision": {...} | None}
    """
    from .router import DEFAULT_RULES

    settings = settings or load_settings()
    state = read_state(settings, name, store)
    spec = rollout_spec(settings, name)
    answer: dict[str, Any] = {
        "model": name, "active": bool(state and state.running), "rollout": None, "split": None,
        "variants": {}, "window": None, "rules": [], "min_requests": spec.min_requests,
        "schedule": list(spec.schedule), "last_decision": None,
    }  # fmt: skip
    if state is None:
        return answer
    answer["rollout"] = {
        "id": state.id, "mode": state.mode, "status": state.status, "share": state.share,
        "champion": state.champion, "challenger": state.challenger, "started": state.started,
        "by": state.by, "revision": state.revision,
    }  # fmt: skip
    answer["last_decision"] = state.last
    if state.running:
        if state.mode == SHADOW:
            answer["split"] = {"champion": 100.0, "shadow": "copy"}
        else:
            answer["split"] = {"champion": 100.0 - state.share, "canary": state.share}
    index = max(0, int((time.time() - state.since) // spec.window_seconds))
    per, total = read_counts(
        stats_folder(settings.state_dir, name, state.id), state.revision, (index,)
    )
    answer["variants"] = {v: _clean(c.metrics()) for v, c in sorted(total.items())}
    window = {v: c.metrics() for v, c in per[index].items()}
    answer["window"] = {
        "index": index, "seconds": spec.window_seconds,
        "variants": {v: _clean(m) for v, m in sorted(window.items())},
    }  # fmt: skip
    if state.running:
        verdict = Rules(spec.rules or DEFAULT_RULES).judge(window, state.mode, spec.min_requests)
        answer["rules"] = [
            {"condition": r.text, "status": r.status, "sides": r.sides} for r in verdict.results
        ]
    return answer


def format_status(status: dict[str, Any]) -> str:
    """The status as `cellops rollout MODEL` prints it."""
    name, rollout = status["model"], status["rollout"]
    if rollout is None:
        return f"{name}: no rollout yet; start one with `cellops rollout {name} --canary 10`"
    mode, share = rollout["mode"], rollout["share"]
    if not status["active"]:
        head = f"{name}: the last rollout ({mode} of v{rollout['challenger']}) {rollout['status']}"
    elif mode == SHADOW:
        head = (
            f"{name}: shadow rollout: v{rollout['champion']} answers every request, "
            f"v{rollout['challenger']} predicts a copy"
        )
    else:
        head = (
            f"{name}: canary {share:g}% -> v{rollout['challenger']}, "
            f"{100 - share:g}% -> v{rollout['champion']} (champion)"
        )
    lines = [head, f"  started {rollout['started']} by {rollout['by'] or '?'}"]
    columns = ("variant", *BASE_METRICS, "agreement", "dropped")
    rows = [
        (variant, *(_cell(m.get(c)) for c in columns[1:]))
        for variant, m in status["variants"].items()
    ]
    if rows:
        from .._text import table

        lines.append("  since the rollout started (every worker):")
        lines += ["    " + line for line in table(columns, rows).splitlines()]
    window = status["window"]
    if status["rules"]:
        lines.append(f"  rules on the current window ({window['seconds']:g} s, at least "
                     f"{status['min_requests']} requests a variant):")  # fmt: skip
        lines += [f"    {r['status']:<8} {r['condition']}  {r['sides']}" for r in status["rules"]]
    last = status["last_decision"]
    if last:
        extra = "; ".join(f"{r['rule']} ({r['sides']})" for r in last.get("rules") or [])
        lines.append(
            f"  last decision: {last.get('action')} at {last.get('at')} by {last.get('by')}"
            + (f": {extra}" if extra else "")
        )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
