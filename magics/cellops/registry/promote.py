"""Promote and roll back: move `@champion` only when the gate says so, never silently.

A promotion has two phases. `prepare_promotion` reads the champion (the version it *observes*),
runs the gate, and decides. `commit_promotion` then, under a per-model lock file, reads the
champion again: if it is no longer the observed version, another promotion won the race and
this one reports the conflict instead of overwriting it (compare-and-set). Otherwise it
records on the challenger which version it replaces (`cellops.replaced`), moves `@champion`
(the one write that changes who serves: the commit point), then points `@previous_champion` at
the replaced version. A failure before the alias moves leaves the old champion in place; one
after it leaves a consistent state, since rollback reads `cellops.replaced`.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from typing import Any

from .._limits import tag_text
from ..errors import CellopsError, CellopsUsageError
from . import audit
from .evaluation import GateResult, evaluate_gate, gate_conditions, resolve_version
from .reproduction import reproduced_version, reproduction_of
from .spec import model_settings
from .store import (
    CHAMPION,
    PREVIOUS,
    TAG_PROMOTION,
    TAG_REPLACED,
    RegistryStore,
    alias_version,
    job_context,
    open_store,
    require_model,
)

log = logging.getLogger(__name__)

PROMOTED = "promoted"
FORCED = "forced"
REFUSED = "refused"
CONFLICT = "conflict"
UNCHANGED = "unchanged"
ROLLED_BACK = "rolled back"


@dataclass
class PromotionPlan:
    """What `prepare_promotion` decided, before any alias moved."""

    name: str
    version: str
    observed_champion: str | None
    gate: GateResult | None
    decision: str  # promoted | forced | refused | unchanged
    reason: str
    context: dict[str, str]


@dataclass
class PromotionOutcome:
    name: str
    version: str
    decision: str
    champion_before: str | None
    champion_after: str | None
    reason: str
    gate: GateResult | None = None
    event_run: str = ""

    @property
    def promoted(self) -> bool:
        return self.decision in (PROMOTED, FORCED)

    def headline(self) -> str:
        before = f"v{self.champion_before}" if self.champion_before else "none"
        if self.decision == ROLLED_BACK:
            return f"{self.name}: rolled back, champion v{self.champion_before} -> v{self.version}"
        if self.decision == PROMOTED:
            return f"{self.name}: v{self.version} PROMOTED to champion (was {before})"
        if self.decision == FORCED:
            return (
                f"{self.name}: v{self.version} FORCED to champion past a failing gate "
                f"(was {before}); reason: {self.reason}"
            )
        if self.decision == UNCHANGED:
            return f"{self.name}: v{self.version} is already the champion; nothing changed"
        if self.decision == CONFLICT:
            return f"{self.name}: v{self.version} NOT promoted: {self.reason}"
        return f"{self.name}: v{self.version} NOT promoted (champion stays {before}): {self.reason}"

    def __str__(self) -> str:
        lines = [self.headline()]
        if self.gate is not None:
            lines += self.gate.lines()
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 - IPython's protocol
        printer.text(str(self))


def prepare_promotion(
    name: str,
    version: str | int | None = None,
    *,
    gate: list[str] | None = None,
    holdout: Any = None,
    label: str | None = None,
    force: bool = False,
    reason: str | None = None,
    latency_samples: int | None = None,
    store: RegistryStore | None = None,
) -> PromotionPlan:
    """Observe the champion, run the gate, and decide; nothing moves yet."""
    store = store or open_store()
    if force and not (reason or "").strip():
        raise CellopsUsageError("a forced promotion needs a reason: --force --reason TEXT")
    context = job_context()
    require_model(store, name)
    gate_conditions(model_settings(store.settings, name), gate)  # a mistake shows at once
    # a reproduction judges the version it registered, which has no @challenger
    reproduced = reproduced_version(store, name) if version is None else None
    challenger = reproduced or resolve_version(store, name, version)
    observed = store.call(lambda client: alias_version(client, name, CHAMPION))
    if challenger == observed:
        why = f"v{challenger} is already the champion"
        return PromotionPlan(name, challenger, observed, None, UNCHANGED, why, context)
    result = evaluate_gate(
        store, name, challenger, gate=gate, holdout=holdout, label=label,
        latency_samples=latency_samples, champion=observed,
    )  # fmt: skip
    if result.passed:
        decision, why = PROMOTED, reason or _passed_reason(result)
    elif force:
        decision, why = FORCED, reason or ""
    else:
        decision, why = REFUSED, _failed_reason(result)
    return PromotionPlan(name, challenger, observed, result, decision, why, context)


def _passed_reason(result: GateResult) -> str:
    if result.first_model:
        return "first model: the absolute conditions passed"
    return f"the gate passed against champion v{result.champion}"


def _failed_reason(result: GateResult) -> str:
    failed = [c for c in result.conditions if c.passed is False]
    return "the gate failed: " + "; ".join(f"{c.text} ({c.describe()})" for c in failed)


def commit_promotion(plan: PromotionPlan, store: RegistryStore | None = None) -> PromotionOutcome:
    """Apply `plan`: move `@champion` if the champion is still the one observed, and record.

    In a reproduction (`cellops reproduce`) nothing moves: the plan is recorded as a dry run."""
    store = store or open_store()
    if reproduction_of():
        return _dry_run(store, plan)
    if plan.decision not in (PROMOTED, FORCED):
        champion = plan.observed_champion
        outcome = PromotionOutcome(
            plan.name, plan.version, plan.decision, champion, champion, plan.reason, plan.gate
        )
        outcome.event_run = _record(store, "promote", outcome, plan.context)
        return outcome
    with store.lock(plan.name):
        current = store.call(lambda client: alias_version(client, plan.name, CHAMPION))
        if current != plan.observed_champion:
            was = f"v{plan.observed_champion}" if plan.observed_champion else "none"
            now = f"v{current}" if current else "none"
            why = (
                f"the champion changed from {was} to {now} while the gate ran (another "
                "promotion or rollback); nothing was overwritten. Run promote again to judge "
                f"v{plan.version} against {now}"
            )
            outcome = PromotionOutcome(
                plan.name, plan.version, CONFLICT, plan.observed_champion, current, why, plan.gate
            )
            outcome.event_run = _record(store, "promote", outcome, plan.context)
            return outcome
        _move_champion(store, plan)
        outcome = PromotionOutcome(
            plan.name, plan.version, plan.decision, plan.observed_champion, plan.version,
            plan.reason, plan.gate,
        )  # fmt: skip
        gist = {"decision": plan.decision, "at": _now(), "by": plan.context.get("user", ""),
                "job": plan.context.get("job", ""), "replaced": plan.observed_champion,
                "reason": plan.reason}  # fmt: skip
        outcome.event_run = _record(
            store, "promote", outcome, plan.context, {TAG_PROMOTION: tag_text(json.dumps(gist))}
        )
        return outcome


def _move_champion(store: RegistryStore, plan: PromotionPlan) -> None:
    name, version, replaced = plan.name, plan.version, plan.observed_champion
    try:
        store.call(
            lambda client: client.set_model_version_tag(name, version, TAG_REPLACED, replaced or "")
        )
        store.call(lambda client: client.set_registered_model_alias(name, CHAMPION, version))
    except Exception as exc:
        kept = f"v{replaced}" if replaced else "none"
        raise CellopsError(
            f"promotion of {name} v{version} failed before @{CHAMPION} moved; the champion is "
            f"still {kept}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
        ) from exc
    try:
        if replaced:
            store.call(lambda client: client.set_registered_model_alias(name, PREVIOUS, replaced))
    except Exception as exc:  # the champion moved; rollback reads cellops.replaced anyway
        log.warning("cellops: could not set @%s on %s: %s", PREVIOUS, name, exc)


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
    store: RegistryStore | None = None,
) -> PromotionOutcome:
    """Run the gate on `version` (default: `@challenger`) and move `@champion` if it passes.

    `force=True` with a `reason` promotes past a failing gate and records that. `dry_run`
    evaluates and records the gate's verdict without moving anything.
    """
    store = store or open_store()
    plan = prepare_promotion(
        name, version, gate=gate, holdout=holdout, label=label, force=force, reason=reason,
        latency_samples=latency_samples, store=store,
    )  # fmt: skip
    if dry_run or reproduction_of():
        return _dry_run(store, plan)
    return commit_promotion(plan, store)


def _dry_run(store: RegistryStore, plan: PromotionPlan) -> PromotionOutcome:
    """The gate's verdict recorded as what it would do; no alias moves."""
    would = plan.decision if plan.decision == UNCHANGED else f"would be {plan.decision}"
    champion = plan.observed_champion
    outcome = PromotionOutcome(
        plan.name, plan.version, would, champion, champion, plan.reason, plan.gate
    )
    outcome.event_run = _record(store, "gate", outcome, plan.context)
    return outcome


def rollback(
    name: str, *, reason: str | None = None, store: RegistryStore | None = None
) -> PromotionOutcome:
    """Put back the champion that the current one replaced."""
    store = store or open_store()
    if reproduction_of():
        raise CellopsUsageError(
            f"a reproduction (cellops reproduce) never moves aliases: {name} was not rolled back"
        )
    context = job_context()
    require_model(store, name)
    current = store.call(lambda client: alias_version(client, name, CHAMPION))
    if current is None:
        raise CellopsUsageError(f"{name} has no champion, so there is nothing to roll back")
    target = store.call(lambda client: _replaced(client, name, current))
    if not target:
        raise CellopsUsageError(
            f"v{current} is the first champion of {name}: there is no previous champion to "
            f"roll back to (promote another version with: cellops promote {name} --version V)"
        )
    resolve_version(store, name, target)  # it still exists
    with store.lock(name):
        now = store.call(lambda client: alias_version(client, name, CHAMPION))
        if now != current:
            raise CellopsError(
                f"the champion of {name} changed from v{current} to v{now} during the rollback; "
                "nothing was changed. Look at `cellops history` and roll back again if needed"
            )
        try:
            store.call(lambda client: client.set_registered_model_alias(name, CHAMPION, target))
        except Exception as exc:
            raise CellopsError(
                f"rollback of {name} failed before @{CHAMPION} moved; the champion is still "
                f"v{current}: {exc}"
            ) from exc
        earlier = store.call(lambda client: _replaced(client, name, target))

        def previous_alias(client: Any) -> None:
            if earlier:
                client.set_registered_model_alias(name, PREVIOUS, earlier)
            elif alias_version(client, name, PREVIOUS) is not None:
                client.delete_registered_model_alias(name, PREVIOUS)

        try:
            store.call(previous_alias)
        except Exception as exc:
            log.warning("cellops: could not update @%s on %s: %s", PREVIOUS, name, exc)
        why = reason or f"rolled back from v{current}"
        outcome = PromotionOutcome(name, target, ROLLED_BACK, current, target, why)
        gist = {"at": _now(), "by": context.get("user", ""), "to": target, "reason": why}

        def mark(client: Any) -> None:
            client.set_model_version_tag(name, current, "cellops.rolled_back", json.dumps(gist))

        store.call(mark)
        outcome.event_run = _record(store, "rollback", outcome, context)
        return outcome


def _replaced(client: Any, name: str, version: str) -> str | None:
    """The champion `version` replaced when it was promoted (or `@previous_champion`)."""
    tags = client.get_model_version(name, version).tags or {}
    found = tags[TAG_REPLACED] if TAG_REPLACED in tags else alias_version(client, name, PREVIOUS)
    return found if found and found != version else None


def _record(
    store: RegistryStore,
    kind: str,
    outcome: PromotionOutcome,
    context: dict[str, str],
    version_tags: dict[str, str] | None = None,
) -> str:
    event = audit.Event(
        kind, outcome.name, outcome.version, outcome.decision, outcome.reason,
        outcome.champion_before, outcome.champion_after, context, outcome.gate,
    )  # fmt: skip
    return audit.record(store, event, version_tags)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
