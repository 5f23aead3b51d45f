"""What a job's promotion attempts decided: for the job summary and `--require-promotion`.

A retraining notebook ends by registering its model and calling the gate
(`cellops.promote(...)`); each decision is recorded with the job's id (`CELLOPS_JOB_ID`, set by
`cellops run` for its kernel). After the job, `job_promotions(job_id)` reads those records
back, so `cellops run` can say "promoted" or "not promoted, and why", and
`--require-promotion` can exit non-zero when nothing was promoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from .store import EVENTS_EXPERIMENT, RegistryStore, open_store

PROMOTED_DECISIONS = ("promoted", "forced")


@dataclass
class JobPromotion:
    model: str
    version: str
    decision: str
    reason: str
    champion_before: str
    champion_after: str
    run_id: str

    @property
    def promoted(self) -> bool:
        return self.decision in PROMOTED_DECISIONS

    def describe(self) -> str:
        if self.promoted:
            text = f"{self.model} v{self.version} {self.decision.upper()} to champion"
            if self.champion_before:
                text += f" (was v{self.champion_before})"
            return text + (f": {self.reason}" if self.reason else "")
        return f"{self.model} v{self.version} NOT promoted ({self.decision}): {self.reason}"


@dataclass
class PromotionSummary:
    job_id: str
    decisions: list[JobPromotion] = field(default_factory=list)

    @property
    def attempted(self) -> bool:
        return bool(self.decisions)

    @property
    def promoted(self) -> bool:
        """True when the job's last decision for every model it judged was a promotion."""
        return self.attempted and all(d.promoted for d in self.decisions)

    def lines(self) -> list[str]:
        if not self.attempted:
            return ["promotion: none attempted (the notebook did not call cellops.promote)"]
        return [f"promotion: {d.describe()}" for d in self.decisions]

    def describe(self) -> str:
        return "\n".join(self.lines())


def job_promotions(
    job_id: str, settings: Settings | None = None, store: RegistryStore | None = None
) -> PromotionSummary:
    """The promotion decisions the job `job_id` recorded, the last one per model."""
    store = store or open_store(settings)

    def read(client: Any) -> list[Any]:
        experiment = client.get_experiment_by_name(EVENTS_EXPERIMENT)
        if experiment is None:
            return []
        return client.search_runs(
            [experiment.experiment_id],
            f"tags.`cellops.job` = '{job_id}' and tags.`cellops.event` = 'promote'",
            order_by=["attributes.start_time ASC"],
            max_results=1000,
        )

    last: dict[str, JobPromotion] = {}
    for run in store.call(read):
        t = run.data.tags
        model = t.get("cellops.model", "")
        last[model] = JobPromotion(
            model, t.get("cellops.version", ""), t.get("cellops.decision", ""),
            t.get("cellops.reason", ""), t.get("cellops.champion.before", ""),
            t.get("cellops.champion.after", ""), run.info.run_id,
        )  # fmt: skip
    return PromotionSummary(job_id, [last[m] for m in sorted(last)])
