"""A job re-run by `cellops reproduce` leaves production as it found it.

Reproducing an old job re-runs its notebook, which registers a model and calls the gate as it
did then; that gate judges the old job's model on the old job's holdout and could promote it
over a champion trained since. So in a reproduction (`cellops reproduce` sets
`CELLOPS_REPRODUCTION_OF=<run id>` for the job's kernel) `register_model` tags the version
`cellops.reproduction_of` and gives it no alias, and `promote` runs as a dry run on that
version, recording what the gate *would* have decided. `reproduction_verdicts` reads both back
for the summary.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import Settings
from .store import EVENTS_EXPERIMENT, RegistryStore, open_store

REPRODUCTION_TAG = "cellops.reproduction_of"


def reproduction_of() -> str | None:
    """The job run this process reproduces, or None outside `cellops reproduce`."""
    from ..jobs.run import REPRODUCTION_VAR  # here: the kernel loads jobs only when it registers

    return os.environ.get(REPRODUCTION_VAR) or None


def reproduced_version(store: RegistryStore, name: str) -> str | None:
    """The latest version of `name` this reproduction registered: what `promote(name)` judges
    in place of `@challenger`, which a reproduction never sets."""
    run, job = reproduction_of(), os.environ.get("CELLOPS_JOB_ID", "")
    if not run:
        return None
    query = f"name = '{name}' and tags.`{REPRODUCTION_TAG}` = '{run}'"
    found = store.call(lambda client: client.search_model_versions(query))
    mine = [int(v.version) for v in found if not job or (v.tags or {}).get("cellops.job") == job]
    return str(max(mine)) if mine else None


def reproduction_verdicts(job_id: str, run_id: str, settings: Settings | None = None) -> list[str]:
    """What the reproduction `job_id` of `run_id` did in the registry, one line per version it
    registered and per gate it ran (as a dry run)."""
    store = open_store(settings)

    def read(client: Any) -> tuple[list[Any], list[Any]]:
        versions = client.search_model_versions(
            f"tags.`{REPRODUCTION_TAG}` = '{run_id}' and tags.`cellops.job` = '{job_id}'"
        )
        experiment = client.get_experiment_by_name(EVENTS_EXPERIMENT)
        gates = []
        if experiment is not None:
            gates = client.search_runs(
                [experiment.experiment_id],
                f"tags.`cellops.job` = '{job_id}' and tags.`cellops.event` = 'gate'",
                order_by=["attributes.start_time ASC"],
                max_results=1000,
            )
        return versions, gates

    versions, gates = store.call(read)
    lines = [
        f"registered {v.name} v{v.version} as a reproduction of run {run_id}: no alias set"
        for v in sorted(versions, key=lambda v: (v.name, int(v.version)))
    ]
    for gate in gates:
        tags = gate.data.tags
        champion = tags.get("cellops.champion.before") or ""
        against = f"champion v{champion}" if champion else "no champion"
        lines.append(
            f"gate (dry run, nothing moved): {tags.get('cellops.model')} "
            f"v{tags.get('cellops.version')} {tags.get('cellops.decision')} against {against}: "
            f"{tags.get('cellops.reason', '')}"
        )
    return lines
