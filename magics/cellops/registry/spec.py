"""A model's promotion settings: `[tool.cellops.models.NAME]` in pyproject.toml.

```toml
[tool.cellops.models.fraud]
gate = ["f1 >= 0.80", "latency_p95_ms < 50", "recall >= champion.recall * 1.02"]
holdout = "data/holdout.parquet"   # Parquet or CSV, relative to the project root
label = "is_fraud"                 # the holdout's label column
latency_samples = 100              # single-row predictions timed per model
```

Arguments given to `promote` (or the CLI's flags) replace these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Settings, _tool_table
from ..errors import CellopsUsageError

DEFAULT_LATENCY_SAMPLES = 100
KEYS = ("gate", "holdout", "label", "latency_samples", "rollout")  # rollout: serving/rules.py


@dataclass
class ModelSettings:
    name: str
    gate: list[str] = field(default_factory=list)
    holdout: str | None = None
    label: str | None = None
    latency_samples: int = DEFAULT_LATENCY_SAMPLES


def model_settings(settings: Settings, name: str) -> ModelSettings:
    table = (_tool_table(settings.root) or {}).get("models", {})
    if not isinstance(table, dict):
        raise CellopsUsageError("[tool.cellops.models] must be a table of model names")
    raw: Any = table.get(name, {})
    where = f"[tool.cellops.models.{name}]"
    if not isinstance(raw, dict):
        raise CellopsUsageError(f'{where} must be a table, for example: gate = ["f1 >= 0.9"]')
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise CellopsUsageError(
            f"{where}: unknown setting {', '.join(map(repr, unknown))}; "
            f"known settings: {', '.join(KEYS)}"
        )
    gate = raw.get("gate", [])
    if isinstance(gate, str):
        gate = [gate]
    if not isinstance(gate, list) or not all(isinstance(g, str) for g in gate):
        raise CellopsUsageError(
            f'{where}: gate must be a list of conditions, for example: gate = ["f1 >= 0.9"]'
        )
    samples = raw.get("latency_samples", DEFAULT_LATENCY_SAMPLES)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise CellopsUsageError(f"{where}: latency_samples must be a positive integer")
    for key in ("holdout", "label"):
        if key in raw and not isinstance(raw[key], str):
            raise CellopsUsageError(f"{where}: {key} must be a string")
    return ModelSettings(name, list(gate), raw.get("holdout"), raw.get("label"), samples)
