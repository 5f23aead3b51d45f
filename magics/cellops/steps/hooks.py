"""What else acts around a step, plugged in from above so the engine depends on none of it.

The data stage registers DVC versioning and file lineage (`cellops.data.hooks`) when the
`cellops` package is imported; the engine calls every registered `before_step` before it
restores or runs a step, and `after_step` after a run or a restore succeeded.
"""

from __future__ import annotations

from typing import Any, Protocol


class StepHooks(Protocol):
    def before_step(self, session: Any, step: str, plan: Any) -> None: ...

    def after_step(self, session: Any, step: str, plan: Any, run_future: Any) -> None: ...


_registered: list[StepHooks] = []


def add_step_hooks(hooks: StepHooks) -> None:
    """Call `hooks` around every step from now on (once, however often it is added)."""
    if hooks not in _registered:
        _registered.append(hooks)


def before_step(session: Any, step: str, plan: Any) -> None:
    for hooks in _registered:
        hooks.before_step(session, step, plan)


def after_step(session: Any, step: str, plan: Any, run_future: Any) -> None:
    for hooks in _registered:
        hooks.after_step(session, step, plan, run_future)
