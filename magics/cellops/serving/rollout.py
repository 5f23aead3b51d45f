"""Rollouts of `@challenger`: a canary share of the traffic, or a shadow copy of it.

The state is one JSON tag on the registered model (`cellops.rollout`), so every worker of every
`cellops serve` on the store reads the same split, a restarted server resumes it, and the MLflow
UI shows it. Every change is a compare-and-set: under the model's registry lock file (the one
promotions take) the tag is read again and written only if its `revision` is the one the change
was decided on; a change that lost the race is a RolloutConflictError (nothing overwritten).

    start (canary N% | shadow)  ->  widen ... -> 100: promoted through the gate, ended
                                ->  abort: ended, all traffic to the champion
                                ->  a rule failed (a server judged it): rolled back, canary 0%

Each step is also an event of the registry's audit trail (kind `rollout`), so `cellops history`
shows it; a rollback event holds the failing rule with both sides' values.
"""

from __future__ import annotations

import datetime
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import RolloutConflictError, RolloutError
from ..registry.store import CHALLENGER, CHAMPION, RegistryStore, alias_version, open_store

log = logging.getLogger("cellops.serving")
TAG = "cellops.rollout"
CANARY, SHADOW = "canary", "shadow"
RUNNING, PROMOTED, ABORTED, ROLLED_BACK = "running", "promoted", "aborted", "rolled back"


@dataclass
class RolloutState:
    id: str
    mode: str  # canary | shadow
    status: str  # running | promoted | aborted | rolled back
    share: float  # % of request keys answered by the challenger (canary); 0 for a shadow
    champion: str  # the versions, as when the rollout started
    challenger: str
    location: str  # the challenger's artifact URI (what a worker loads)
    revision: int = 1
    since: float = field(default_factory=time.time)  # when this revision was written (windows)
    started: str = ""
    by: str = ""
    last: dict[str, Any] | None = None  # the last decision: action, at, by, from, to, rule

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> RolloutState | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        if self.mode == SHADOW:
            split = f"shadow: v{self.challenger} sees every request, v{self.champion} answers"
        else:
            rest = 100 - self.share
            split = f"canary {self.share:g}% to v{self.challenger}, {rest:g}% to v{self.champion}"
        return f"{split} ({self.status}, since {self.started})"


# -- reading and writing the state -----------------------------------------------------------


def read_state(
    settings: Settings, name: str, store: RegistryStore | None = None
) -> RolloutState | None:
    """The rollout tag of model `name`: on the project's SQLite store a read-only query (what
    every worker does each poll), else through MLflow's client."""
    uri = settings.tracking_uri
    if store is None and uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if db.is_file():
            try:
                connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
                try:
                    rows = connection.execute(
                        "SELECT value FROM registered_model_tags WHERE name = ? AND key = ?",
                        (name, TAG),
                    ).fetchall()
                finally:
                    connection.close()
                if len(rows) <= 1:
                    return RolloutState.from_json(rows[0][0] if rows else None)
            except sqlite3.Error:
                pass  # a schema this query does not know: ask MLflow
    store = store or RegistryStore(settings)
    tags = store.call(lambda client: client.get_registered_model(name).tags or {})
    return RolloutState.from_json(tags.get(TAG))


def write_state(
    store: RegistryStore, name: str, expected: int, state: RolloutState
) -> RolloutState:
    """Write `state` if the stored revision is still `expected` (0: no rollout tag yet)."""
    with store.lock(name):
        current = read_state(store.settings, name, store)
        found = current.revision if current is not None else 0
        if found != expected:
            what = current.describe() if current else "none"
            raise RolloutConflictError(
                f"the rollout of {name} changed meanwhile (revision {found}, not {expected}): now "
                f"{what}; nothing was overwritten. Look with `cellops rollout {name}` and retry"
            )
        state.revision, state.since = expected + 1, time.time()
        store.call(lambda client: client.set_registered_model_tag(name, TAG, state.to_json()))
    return state


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _decision(action: str, **details: Any) -> dict[str, Any]:
    from ..registry.store import user_name

    return {"action": action, "at": _now(), "by": details.pop("by", None) or user_name(), **details}


# -- the commands ----------------------------------------------------------------------------


def start(name: str, *, canary: float | None = None, shadow: bool = False,
          store: RegistryStore | None = None) -> RolloutState:  # fmt: skip
    """Start routing `canary`% of request keys (or a shadow copy of every request) to
    `@challenger`. Refused: no @challenger or @champion, the challenger is the champion, its
    signature differs from the champion's, a rollout already runs, a rule names an unknown
    metric."""
    from ..registry.store import require_model
    from .rules import rollout_spec

    store = store or open_store()
    require_model(store, name)
    if shadow == (canary is not None):
        raise RolloutError(
            f"give one of --canary PERCENT or --shadow, e.g. cellops rollout {name} --canary 10"
        )
    if canary is not None and not 0 < canary < 100:
        raise RolloutError(
            f"--canary {canary:g} is not a share between 0 and 100 (exclusive): start small, e.g. "
            f"--canary 10, and widen with --widen; --widen 100 promotes"
        )
    rollout_spec(store.settings, name)  # a bad rule shows now, not in the servers
    champion = store.call(lambda client: alias_version(client, name, CHAMPION))
    challenger = store.call(lambda client: alias_version(client, name, CHALLENGER))
    if challenger is None:
        raise RolloutError(
            f"{name} has no @{CHALLENGER} to roll out: register a model first "
            "(cellops.register_model(model, name) makes it the challenger)"
        )
    if champion is None:
        raise RolloutError(
            f"{name} has no @{CHAMPION} to compare with: promote one first (cellops promote {name})"
        )
    if challenger == champion:
        raise RolloutError(
            f"@{CHALLENGER} of {name} is v{challenger}, already the champion: nothing to roll out"
        )
    current = read_state(store.settings, name, store)
    if current is not None and current.running:
        raise RolloutConflictError(
            f"a rollout of {name} is running ({current.describe()}): widen it with "
            f"`cellops rollout {name} --widen N`, or end it with `cellops rollout {name} --abort`"
        )
    check_signatures(store, name, champion, challenger)
    location = store.call(lambda client: client.get_model_version_download_uri(name, challenger))
    mode = SHADOW if shadow else CANARY
    state = RolloutState(
        uuid.uuid4().hex[:12], mode, RUNNING, 0.0 if shadow else float(canary), champion,
        challenger, str(location), started=_now(),
    )  # fmt: skip
    what = "shadow of every request" if shadow else f"canary {canary:g}%"
    state.last = _decision("started", to=state.share)
    state.by = state.last["by"]
    state = write_state(store, name, current.revision if current else 0, state)
    record_event(store, name, state, f"started: {what}", f"{what} to v{challenger}")
    return state


def check_signatures(store: RegistryStore, name: str, champion: str, challenger: str) -> None:
    """RolloutError naming the columns when the two versions take different inputs."""
    columns = {v: _columns(store, name, v) for v in (champion, challenger)}
    ours, theirs = columns[champion], columns[challenger]
    if ours is None or theirs is None or ours == theirs:
        return
    missing = [c for c in ours if c not in theirs]
    extra = [c for c in theirs if c not in ours]
    retyped = [
        f"{c} is {theirs[c]}, not {ours[c]}" for c in ours if c in theirs and ours[c] != theirs[c]
    ]
    parts = []
    if missing:
        parts.append(f"v{challenger} lacks {', '.join(missing)}")
    if extra:
        parts.append(f"v{challenger} adds {', '.join(extra)}")
    if retyped:
        parts.append("; ".join(retyped))
    if not parts and list(ours) != list(theirs):
        parts.append("the columns are in another order")
    if not parts:
        return
    raise RolloutError(
        f"the signature of {name} v{challenger} differs from champion v{champion}'s: "
        f"{'; '.join(parts)}. Both answer the same requests, so they must take the same "
        "columns: register the challenger with the champion's columns"
    )


def _columns(store: RegistryStore, name: str, version: str) -> dict[str, str] | None:
    import yaml

    from .model import local_folder
    from .schema import InputSchema
    from .source import VersionRef

    location = store.call(lambda client: client.get_model_version_download_uri(name, version))
    folder, temp = local_folder(
        VersionRef(name, "", version, str(location)), store.settings.tracking_uri
    )
    try:
        with open(Path(folder) / "MLmodel") as fh:
            schema = InputSchema.from_mlmodel((yaml.safe_load(fh) or {}).get("signature"))
    finally:
        if temp is not None:
            temp.cleanup()
    if schema is None:
        return None
    if schema.tensor_dtype:
        return {"<tensor>": f"{schema.tensor_dtype}[{schema.tensor_width}]"}
    return {c.name: c.type for c in schema.columns}


def running(store: RegistryStore, name: str) -> RolloutState:
    state = read_state(store.settings, name, store)
    if state is None or not state.running:
        was = f" (the last one {state.status})" if state is not None else ""
        raise RolloutError(
            f"no rollout of {name} is running{was}: start one with "
            f"`cellops rollout {name} --canary 10`"
        )
    return state


@dataclass
class WidenOutcome:
    state: RolloutState
    promotion: Any = None  # a PromotionOutcome when the widening reached 100

    def headline(self) -> str:
        if self.promotion is not None:
            return str(self.promotion)
        return f"rollout of v{self.state.challenger}: {self.state.describe()}"


def widen(
    name: str, share: float, *, by: str | None = None, store: RegistryStore | None = None
) -> WidenOutcome:
    """Widen the canary to `share`%; at 100 the challenger goes through the gate and, if it
    passes, is promoted (compare-and-set on @champion, audit trail) and the rollout ends."""
    store = store or open_store()
    state = running(store, name)
    if state.mode != CANARY:
        raise RolloutError(
            f"the rollout of {name} is a shadow: it answers nothing, so it cannot widen. End it "
            f"(--abort) and start a canary: cellops rollout {name} --canary 10"
        )
    if share > 100:
        raise RolloutError(
            f"--widen {share:g} is over 100: give at most 100 (which promotes v{state.challenger})"
        )
    if share <= state.share:
        raise RolloutError(
            f"--widen {share:g} is not above the current {state.share:g}%: a rollout only widens "
            "(users on the canary stay there); to go back, end it with "
            f"`cellops rollout {name} --abort`"
        )
    if share < 100:
        before = state.share
        state.last = _decision("widened", by=by, **{"from": before, "to": share})
        state.share = share
        state = write_state(store, name, state.revision, state)
        record_event(
            store,
            name,
            state,
            f"widened {before:g}% -> {share:g}%",
            f"widened by {state.last['by']}",
        )
        return WidenOutcome(state)
    return _promote(store, name, state, by)


def _promote(store: RegistryStore, name: str, state: RolloutState, by: str | None) -> WidenOutcome:
    from ..registry.promote import FORCED, PROMOTED, UNCHANGED, commit_promotion, prepare_promotion

    plan = prepare_promotion(name, state.challenger, store=store)
    if plan.decision not in (PROMOTED, FORCED, UNCHANGED):
        outcome = commit_promotion(plan, store)  # the refusal is recorded; the split stays
        return WidenOutcome(state, outcome)
    before = state.share
    state.share, state.last = 100.0, _decision("widened", by=by, **{"from": before, "to": 100})
    state = write_state(store, name, state.revision, state)
    outcome = commit_promotion(plan, store)
    if not outcome.promoted and plan.decision != UNCHANGED:  # the champion moved meanwhile
        state.share, state.last = (
            before,
            _decision("promotion failed", by=by, reason=outcome.reason),
        )
        write_state(store, name, state.revision, state)
        return WidenOutcome(state, outcome)
    state.status, state.last = PROMOTED, _decision("promoted", by=by, to=100)
    state = write_state(store, name, state.revision, state)
    record_event(store, name, state, "promoted: the rollout ended", outcome.reason)
    return WidenOutcome(state, outcome)


def abort(
    name: str, *, reason: str | None = None, store: RegistryStore | None = None
) -> RolloutState:
    """End the rollout: every request to the champion again."""
    store = store or open_store()
    state = running(store, name)
    before = state.share
    state.status, state.share = ABORTED, 0.0
    state.last = _decision("aborted", reason=reason or "", **{"from": before, "to": 0})
    state = write_state(store, name, state.revision, state)
    record_event(store, name, state, "aborted", reason or f"aborted by {state.last['by']}")
    return state


def roll_back(store: RegistryStore, name: str, state: RolloutState, verdict: Any,
              metrics: dict[str, dict[str, float]], window: int) -> RolloutState:  # fmt: skip
    """What a server does when a rule fails: the canary to 0% (compare-and-set on the revision
    it judged), and a rollback event with each failing rule and both sides' values."""
    failed = verdict.failed
    before = state.share
    state.status, state.share = ROLLED_BACK, 0.0
    state.last = _decision(
        "rolled back", by="cellops serve", window=window, **{"from": before, "to": 0},
        rules=[{"rule": r.text, "sides": r.sides} for r in failed],
    )  # fmt: skip
    state = write_state(store, name, state.revision, state)
    reason = "rule failed: " + "; ".join(f"{r.text} ({r.sides})" for r in failed)
    record_event(store, name, state, "rolled back", reason, verdict.results, metrics)
    return state


def record_event(
    store: RegistryStore,
    name: str,
    state: RolloutState,
    decision: str,
    reason: str,
    results: list[Any] | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
) -> str:
    """One `rollout` event of the audit trail (shown by `cellops history`)."""
    from ..registry import audit
    from ..registry.store import job_context

    context = job_context()
    if state.last and state.last.get("by"):
        context["user"] = str(state.last["by"])
    event = audit.Event(
        "rollout", name, state.challenger, decision, reason, state.champion,
        state.challenger if state.status == PROMOTED else state.champion, context,
    )  # fmt: skip
    run_id = audit.record(store, event)
    if results or metrics:
        from mlflow.entities import Metric

        from .._limits import MAX_TAG

        compact = [
            {"condition": r.text, "status": r.status, "sides": r.sides[:300]} for r in results or []
        ]
        values = [
            Metric(f"{variant}.{key}", float(value), event.when_ms, 0)
            for variant, found in (metrics or {}).items() for key, value in found.items()
            if value == value
        ]  # fmt: skip

        def complete(client: Any) -> None:
            client.set_tag(run_id, "cellops.gate", json.dumps(compact)[:MAX_TAG])
            client.set_tag(run_id, "cellops.rollout", state.id)
            if values:
                client.log_batch(run_id, metrics=values)

        store.call(complete)
    return run_id
