"""One worker's side of a rollout: which variant answers a request, and the automatic decisions.

Every `poll_seconds` the worker's rollout thread reads the rollout's state (`rollout.read_state`),
loads the challenger when a rollout starts (warmed, beside the champion, as a reload does), writes
this worker's counts (`stats`) and judges the rules on every worker's counts of the window:

- a rule that fails (its variants past `min_requests`) rolls back at once: this worker stops
  sending requests to the challenger before anything is written, then writes the rollback
  (compare-and-set: when several workers judge the same counts, one write wins) and its event;
- with a `schedule`, a canary window that ended with every rule passing widens to the next
  share (at 100 the challenger goes through the gate and is promoted).

A request under a canary rollout: its key's point below the share goes to the challenger; a
challenger that raises is counted as a canary error and the request is answered by the
champion, so the caller never sees the canary's failure while the champion can answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import CellopsError, RolloutConflictError
from .reload import Current, current_of
from .rollout import CANARY, SHADOW, RolloutState, read_state, roll_back, widen
from .rules import RolloutSpec, Rules, Verdict, rollout_spec
from .shadow import ShadowRunner
from .split import on_canary, request_key
from .stats import WorkerCounts, read_counts, stats_folder

logger = logging.getLogger("cellops.serving")
DEFAULT_RULES = (
    "canary.error_rate <= champion.error_rate + 0.01",
    "shadow.error_rate <= champion.error_rate + 0.01",
)


@dataclass(frozen=True)
class View:
    """What requests read of the rollout: swapped as one object, like `Serving.current`."""

    state: RolloutState
    challenger: Current
    spec: RolloutSpec
    rules: Rules
    counts: WorkerCounts
    cut: bool = False  # this worker judged a rule failed: everything to the champion

    def slot(self, now: float | None = None) -> tuple[int, int]:
        now = time.time() if now is None else now
        return self.state.revision, max(
            0, int((now - self.state.since) // self.spec.window_seconds)
        )


class Routed:
    """One request under a running rollout."""

    __slots__ = ("router", "view", "champion", "target", "slot", "canary_failed")

    def __init__(self, router: Router, view: View, champion: Current, target: Current | None):
        self.router, self.view, self.champion, self.target = router, view, champion, target
        self.slot = view.slot()
        self.canary_failed = False

    async def predict(self, batcher: Any, batch: Any) -> tuple[Current, Any, Any]:
        if self.target is not None:
            started = time.perf_counter()
            try:
                predictions, proba = await batcher.predict(self.target.model, batch)
                return self.target, predictions, proba
            except Exception as exc:
                self.canary_failed = True
                elapsed = time.perf_counter() - started
                self.view.counts.add(*self.slot, CANARY, elapsed * 1000, error=True)
                self.router.metrics.observe(self.target.key, 500, elapsed)
                logger.info(
                    "canary v%s failed (%s); the champion answers", self.target.model.version, exc
                )
        predictions, proba = await batcher.predict(self.champion.model, batch)
        return self.champion, predictions, proba

    def answered(self, current: Current, request_id: str, ms: int, latency_ms: float,
                 batch: Any, predictions: Any) -> None:  # fmt: skip
        counts = self.view.counts
        if self.target is not None and current is self.target:
            counts.add(*self.slot, CANARY, latency_ms)
        elif not self.canary_failed:
            counts.add(*self.slot, "champion", latency_ms)
        shadow = self.router.shadow
        if self.view.state.mode == SHADOW and shadow is not None:
            shadow.offer(self.view.challenger, request_id, ms, batch, predictions, self.slot)

    def failed(self) -> None:
        """The champion could not predict the request."""
        self.view.counts.add(*self.slot, "champion", 0.0, error=True)


class Router:
    def __init__(self, settings: Settings, name: str, log: Any, metrics: Any):
        self.settings, self.name, self.log, self.metrics = settings, name, log, metrics
        self.view: View | None = None
        self.shadow: ShadowRunner | None = None
        self.decisions: list[dict[str, Any]] = []  # what this worker decided (tests, /version)
        self._models: dict[str, Any] = {}
        self._store: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cellops-rollout", daemon=True)

    # -- requests ---------------------------------------------------------------------------

    def route(self, headers: Any, batch: Any, champion: Current) -> Routed | None:
        view = self.view
        if view is None or view.cut:
            return None
        if view.state.mode == SHADOW:
            return Routed(self, view, champion, None)
        key = request_key(headers, batch, view.spec.key_header, view.spec.key_field)
        target = view.challenger if on_canary(view.state.id, view.state.share, key) else None
        return Routed(self, view, champion, target)

    # -- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        for attempt in range(3):  # a restarted server resumes the split before its first request
            try:
                self.check()
                break
            except Exception as exc:
                logger.exception("reading the rollout failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.2)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.view is not None:
            self.view.counts.write(keep_from=(0, 0))
        if self.shadow is not None:
            self.shadow.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.serve.poll_seconds):
            try:
                self.check()
            except Exception as exc:  # the next poll tries again
                logger.exception("rollout poll failed: %s", exc)

    def check(self) -> None:
        """One poll: read the state, follow it, write this worker's counts, judge."""
        try:
            state = read_state(self.settings, self.name, self._store)
        except CellopsError as exc:
            logger.warning("cannot read the rollout of %s: %s", self.name, exc)
            return
        if state is None or not state.running:
            self._end()
            return
        view = self.view
        if view is None or (view.state.id, view.state.revision) != (state.id, state.revision):
            view = self._follow(state, view)
        if view is not None:
            self._judge(view)

    def _end(self) -> None:
        view, self.view = self.view, None
        if view is not None:
            view.counts.write(keep_from=(0, 0))
        if self.shadow is not None:
            self.shadow.stop()
            self.shadow = None

    def _follow(self, state: RolloutState, old: View | None) -> View | None:
        from .model import load
        from .source import VersionRef

        try:
            spec = rollout_spec(self.settings, self.name)
        except CellopsError as exc:
            logger.error("%s; judging the rollout with the default rules", exc)
            spec = RolloutSpec()
        model = self._models.get(state.challenger)
        if model is None:
            ref = VersionRef(self.name, "challenger", state.challenger, state.location)
            model = self._models[state.challenger] = load(ref, self.settings.tracking_uri)
            self._warm_store()
        challenger = current_of(model, state.mode)
        if old is not None and old.state.id == state.id:
            counts = old.counts
        else:
            counts = WorkerCounts(
                stats_folder(self.settings.state_dir, self.name, state.id), state.id
            )
        view = View(state, challenger, spec, Rules(spec.rules or DEFAULT_RULES), counts)
        if state.mode == SHADOW and self.shadow is None:
            self.shadow = ShadowRunner(spec.shadow_queue, self.log, self._shadow_counted)
        self.view = view  # the swap: requests read it once
        self.metrics.served(model, state.mode)
        return view

    def _shadow_counted(self, what: str, slot: tuple[int, int], *values: Any) -> None:
        view = self.view
        if view is None:
            return
        counts = view.counts
        if what == "drop":
            counts.drop(*slot)
        elif what == "compare":
            counts.compare(*slot, *values)
        else:
            counts.add(*slot, SHADOW, values[0], error=what == "error")

    def _warm_store(self) -> None:
        """Open the registry client in the background: the first decision writes through it,
        and importing MLflow takes seconds."""

        def warm() -> None:
            from ..registry.store import RegistryStore

            store = RegistryStore(self.settings)
            try:
                store.client  # noqa: B018 - opening the client is the point
            except Exception as exc:
                logger.warning("cannot open the registry for the rollout: %s", exc)
                return
            self._store = store

        threading.Thread(target=warm, name="cellops-rollout-store", daemon=True).start()

    def _store_now(self) -> Any:
        if self._store is None:
            from ..registry.store import RegistryStore

            self._store = RegistryStore(self.settings)
        return self._store

    # -- judging ----------------------------------------------------------------------------

    def _judge(self, view: View) -> None:
        now = time.time()
        revision, window = view.slot(now)
        view.counts.write(keep_from=(revision, window - 1))
        if view.cut:
            return
        windows = (window - 1, window) if window >= 1 else (window,)
        per, _ = read_counts(view.counts.folder, revision, windows)
        spec, mode = view.spec, view.state.mode
        verdicts = {}
        for index in windows:
            metrics = {v: c.metrics() for v, c in per[index].items()}
            verdict = view.rules.judge(metrics, mode, spec.min_requests)
            if verdict.failed:
                self._roll_back(view, verdict, metrics, index)
                return
            verdicts[index] = (verdict, metrics)
        ended = view.state.since + window * spec.window_seconds
        grace = 2 * self.settings.serve.poll_seconds
        if mode == CANARY and spec.schedule and window >= 1 and now >= ended + grace:
            verdict, metrics = verdicts[window - 1]
            served = metrics.get(CANARY, {}).get("requests", 0)
            if verdict.complete and served >= spec.min_requests:
                self._widen(view, verdict)

    def _roll_back(self, view: View, verdict: Verdict, metrics: dict, window: int) -> None:
        self.view = dataclasses.replace(view, cut=True)  # at once, before anything is written
        decision = {
            "action": "rolled back",
            "rules": [r.text for r in verdict.failed],
            "window": window,
        }
        self.decisions.append(decision)
        logger.warning("rollout of %s rolled back: %s", self.name, verdict.describe())
        # another worker may write it first (or the rollout was changed meanwhile)
        with contextlib.suppress(RolloutConflictError):
            roll_back(self._store_now(), self.name, view.state, verdict, metrics, window)

    def _widen(self, view: View, verdict: Verdict) -> None:
        state = view.state
        step = next((s for s in view.spec.schedule if s > state.share), None)
        if step is None:
            return
        self.decisions.append({"action": "widened", "to": step, "rules": verdict.describe()})
        try:
            widen(self.name, float(step), by="cellops serve (schedule)", store=self._store_now())
        except (RolloutConflictError, CellopsError) as exc:
            logger.info("scheduled widening of %s not applied: %s", self.name, exc)
