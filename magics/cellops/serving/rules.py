"""A rollout's rules and schedule: `[tool.cellops.models.NAME.rollout]`, in the gate's syntax.

```toml
[tool.cellops.models.fraud.rollout]
rules = [
    "canary.error_rate <= champion.error_rate + 0.01",
    "canary.latency_p95_ms <= champion.latency_p95_ms * 1.2",
    "shadow.agreement >= 0.95",
]
window = "60s"        # the served traffic each judgement reads
min_requests = 100    # per variant a rule names, before that rule judges
schedule = [25, 50, 100]   # widen after each window that passes (100: promote through the gate)
key_header = "x-request-key"   # the sticky key: this header, else the column key_field
key_field = "customer_id"      # (optional) of the request's first row
shadow_queue = 1000   # shadow requests waiting at most; beyond that they are dropped
```

A rule reads `canary.<metric>`, `shadow.<metric>` and `champion.<metric>`. The gate's parser
reads `champion.<metric>` and bare names only, so `canary.x` / `shadow.x` are handed to it as
`canary_x` / `shadow_x` (same length: its column numbers still point into the text as written);
its syntax errors and its "did you mean" are shown on the rule as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings, _tool_table
from ..errors import RolloutError
from ..registry.gate import Gate, GateSyntaxError, UnknownMetricError, metric_names, tokenize

VARIANTS = ("canary", "shadow")
CHAMPION = "champion"
BASE_METRICS = (
    "requests", "errors", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
)  # fmt: skip
METRICS = {
    "canary": BASE_METRICS,
    "shadow": (*BASE_METRICS, "agreement", "dropped"),
    CHAMPION: BASE_METRICS,
}
KEYS = ("rules", "window", "min_requests", "schedule", "key_header", "key_field", "shadow_queue")
NOTE = (
    "rollout rules read canary.<metric>, shadow.<metric> and champion.<metric>; <metric> is one "
    f"of {', '.join(BASE_METRICS)} (shadow also agreement, dropped)"
)


@dataclass(frozen=True)
class RolloutSpec:
    rules: tuple[str, ...] = ()
    window: str = "60s"
    window_seconds: float = 60.0
    min_requests: int = 100
    schedule: tuple[int, ...] = ()
    key_header: str = "x-request-key"
    key_field: str | None = None
    shadow_queue: int = 1000


def rollout_spec(settings: Settings, name: str) -> RolloutSpec:
    """The rollout settings of model `name` (defaults when there are none); every rule parsed
    and its metrics checked, so a mistake shows when the rollout starts."""
    from .traffic import parse_window

    where = f"[tool.cellops.models.{name}.rollout]"
    table = ((_tool_table(settings.root) or {}).get("models") or {}).get(name) or {}
    raw: Any = table.get("rollout", {}) if isinstance(table, dict) else {}
    if not isinstance(raw, dict):
        raise RolloutError(
            f'{where} must be a table, for example: rules = ["canary.error_rate <= 0.01"]'
        )
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise RolloutError(
            f"{where}: unknown setting {', '.join(map(repr, unknown))}; known: {', '.join(KEYS)}"
        )
    rules = raw.get("rules", [])
    rules = [rules] if isinstance(rules, str) else rules
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise RolloutError(
            f"{where}: rules must be a list of conditions, e.g. "
            'rules = ["canary.error_rate <= 0.01"]'
        )
    Rules(rules, where)
    window = str(raw.get("window", "60s"))
    try:
        span = parse_window(window)
    except Exception:
        raise RolloutError(
            f'{where}: window = {window!r} is not a duration; write e.g. window = "60s" or "5m"'
        ) from None
    seconds = (span.until - span.since).total_seconds()
    minimum = raw.get("min_requests", 100)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
        raise RolloutError(
            f"{where}: min_requests must be a whole number >= 1, e.g. min_requests = 100"
        )
    schedule = raw.get("schedule", [])
    if not isinstance(schedule, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 100 for s in schedule
    ) or schedule != sorted(set(schedule)):  # fmt: skip
        raise RolloutError(
            f"{where}: schedule must be increasing shares between 1 and 100, "
            "e.g. schedule = [25, 50, 100]"
        )
    queue = raw.get("shadow_queue", 1000)
    if not isinstance(queue, int) or isinstance(queue, bool) or queue < 1:
        raise RolloutError(f"{where}: shadow_queue must be a whole number >= 1")
    field_name = raw.get("key_field")
    return RolloutSpec(
        tuple(rules), window, seconds, minimum, tuple(schedule),
        str(raw.get("key_header", "x-request-key")).lower(),
        str(field_name) if field_name else None, queue,
    )  # fmt: skip


def _gate_text(text: str) -> str:
    """`canary.x` -> `canary_x`, `shadow.x` -> `shadow_x`, character for character."""
    chars = list(text)
    try:
        tokens = tokenize(text)
    except GateSyntaxError:
        return text  # the parser reports it, on the text as written
    for token in tokens:
        head = token.text.split(".", 1)[0]
        if token.kind == "name" and head in VARIANTS and "." in token.text:
            chars[token.column - 1 + len(head)] = "_"
    return "".join(chars)


def _written(name: str) -> str:
    for variant in VARIANTS:
        if name.startswith(variant + "_"):
            return f"{variant}.{name[len(variant) + 1 :]}"
    return name


@dataclass
class RuleResult:
    text: str
    status: str  # pass | FAIL | waiting (too few requests) | skipped (a variant not running)
    sides: str = ""
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"condition": self.text, "status": self.status, "sides": self.sides,
                "comparisons": self.comparisons}  # fmt: skip


@dataclass
class Verdict:
    results: list[RuleResult]

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "FAIL"]

    @property
    def complete(self) -> bool:
        """Every rule judged (none waiting for requests)."""
        return all(r.status in ("pass", "FAIL", "skipped") for r in self.results)

    def describe(self) -> str:
        return "; ".join(f"{r.text} ({r.status}: {r.sides})" for r in self.results)


class Rules:
    """The parsed rules of a rollout."""

    def __init__(self, texts: list[str] | tuple[str, ...], where: str = ""):
        self.texts = list(texts)
        try:
            self.gate = Gate([_gate_text(t) for t in self.texts])
        except GateSyntaxError as exc:
            index = next(i for i, t in enumerate(self.texts) if _gate_text(t) == exc.text)
            raise GateSyntaxError(self.texts[index], exc.column, exc.problem) from None
        self.variants: list[set[str]] = []
        for text, tree in zip(self.texts, self.gate.trees, strict=True):
            unknown, named = [], set()
            for metric in metric_names(tree):
                written = f"{CHAMPION}.{metric.name}" if metric.champion else _written(metric.name)
                variant, _, name = written.partition(".")
                if variant not in METRICS or name not in METRICS[variant]:
                    unknown.append(written)
                else:
                    named.add(variant)
            if unknown:
                prefix = {u.partition(".")[0] for u in unknown}
                available = [
                    f"{v}.{m}"
                    for v in METRICS
                    for m in METRICS[v]
                    if v in prefix or not prefix & set(METRICS)
                ]
                error = UnknownMetricError(text, sorted(unknown), available, NOTE)
                if where:
                    error.args = (f"{where}: {error}",)
                raise error
            self.variants.append(named)

    def judge(self, metrics: dict[str, dict[str, float]], mode: str, min_requests: int) -> Verdict:
        """Each rule on the window's `metrics` per variant ({"canary": {...}, "champion": ...}).
        A rule naming the variant the rollout does not run is skipped; one whose variants have
        fewer than `min_requests` requests waits."""
        results = []
        mine = {f"{v}_{k}": value for v in VARIANTS for k, value in metrics.get(v, {}).items()}
        theirs = metrics.get(CHAMPION, {})
        for index, text in enumerate(self.texts):
            named = self.variants[index]
            other = {v for v in VARIANTS if v != mode} & named
            if other:
                results.append(
                    RuleResult(
                        text, "skipped", f"no {', '.join(sorted(other))} in a {mode} rollout"
                    )
                )
                continue
            short = sorted(
                (v, int(metrics.get(v, {}).get("requests", 0)))
                for v in named if metrics.get(v, {}).get("requests", 0) < min_requests
            )  # fmt: skip
            if short:
                counts = ", ".join(f"{v} {n} of {min_requests}" for v, n in short)
                results.append(RuleResult(text, "waiting", f"too few requests yet: {counts}"))
                continue
            condition = self.gate.evaluate(mine, theirs)[index]
            comparisons = [
                {**c.to_dict(), "left": _rewritten(c.left), "right": _rewritten(c.right)}
                for c in condition.comparisons
            ]
            status = "pass" if condition.passed else "FAIL"
            results.append(RuleResult(text, status, _sides(condition.comparisons), comparisons))
        return Verdict(results)


def _rewritten(source: str) -> str:
    for variant in VARIANTS:
        source = source.replace(f"{variant}_", f"{variant}.")
    return source


def _sides(comparisons: list[Any]) -> str:
    parts = []
    for c in comparisons:
        if c.error:
            parts.append(f"{_rewritten(c.left)} {c.op} {_rewritten(c.right)}: {c.error}")
        else:
            left, right = _rewritten(c.left), _rewritten(c.right)
            parts.append(f"{left} = {_fmt(c.left_value)} {c.op} {right} = {_fmt(c.right_value)}")
    return "; ".join(parts)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"
