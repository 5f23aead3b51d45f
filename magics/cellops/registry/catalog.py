"""What the registry holds, for `cellops models` and the notebook panel."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from .store import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    TAG_FLAVOR,
    TAG_LAST_GATE,
    TAG_METRICS,
    RegistryStore,
    require_model,
)


@dataclass
class VersionInfo:
    version: str
    aliases: list[str]
    created_ms: int
    user: str
    flavor: str
    run_id: str
    job: str
    metrics: dict[str, float] = field(default_factory=dict)
    last_gate: dict[str, Any] | None = None

    @property
    def created(self) -> str:
        stamp = datetime.datetime.fromtimestamp(self.created_ms / 1000)
        return stamp.strftime("%Y-%m-%d %H:%M")

    def gate_text(self) -> str:
        if not self.last_gate:
            return ""
        passed = self.last_gate.get("passed")
        verdict = "passed" if passed else "failed" if passed is False else ""
        return f"{self.last_gate.get('decision', '')} ({verdict}, {self.last_gate.get('at', '')})"


@dataclass
class ModelInfo:
    name: str
    champion: str | None
    challenger: str | None
    previous: str | None
    versions: list[VersionInfo]

    @property
    def latest(self) -> str | None:
        return self.versions[0].version if self.versions else None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def model_info(store: RegistryStore, name: str) -> ModelInfo:
    model = require_model(store, name)

    def read(client: Any) -> ModelInfo:
        aliases = dict(getattr(model, "aliases", {}) or {})
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        versions = []
        for mv in client.search_model_versions(f"name = '{name}'"):
            tags = mv.tags or {}
            versions.append(
                VersionInfo(
                    str(mv.version),
                    sorted(by_version.get(str(mv.version), [])),
                    mv.creation_timestamp,
                    tags.get("cellops.user", mv.user_id or ""),
                    tags.get(TAG_FLAVOR, ""),
                    mv.run_id or "",
                    tags.get("cellops.job", ""),
                    _json(tags.get(TAG_METRICS)) or {},
                    _json(tags.get(TAG_LAST_GATE)),
                )  # fmt: skip
            )
        versions.sort(key=lambda v: int(v.version), reverse=True)
        return ModelInfo(
            name,
            _str(aliases.get(CHAMPION)),
            _str(aliases.get(CHALLENGER)),
            _str(aliases.get(PREVIOUS)),
            versions,
        )

    return store.call(read)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def list_models(store: RegistryStore) -> list[ModelInfo]:
    """Every registered model with its aliases (versions not listed)."""

    def read(client: Any) -> list[ModelInfo]:
        found = []
        for model in client.search_registered_models(max_results=1000):
            aliases = dict(getattr(model, "aliases", {}) or {})
            latest = [
                VersionInfo(str(v.version), [], v.creation_timestamp, "", "", v.run_id or "", "")
                for v in (model.latest_versions or [])
            ]
            found.append(
                ModelInfo(
                    model.name,
                    _str(aliases.get(CHAMPION)),
                    _str(aliases.get(CHALLENGER)),
                    _str(aliases.get(PREVIOUS)),
                    latest,
                )
            )
        return sorted(found, key=lambda m: m.name)

    return store.call(read)


def version_rows(info: ModelInfo) -> list[tuple[str, ...]]:
    rows = []
    for v in info.versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
        rows.append(
            (
                v.version,
                ",".join(v.aliases),
                v.created,
                v.user,
                v.flavor,
                metrics,
                v.gate_text(),
            )
        )
    return rows


VERSION_HEADERS = ("version", "aliases", "created", "by", "flavor", "metrics", "last gate")
