"""`python -m cellops_lab.runner JOB_ID NOTEBOOK PARAMETERS_JSON`: one job the panel started.

What `cellops run NOTEBOOK -p NAME VALUE ...` does (the same core `run_job`, the same checks
of the parameters as typed), with the job id the server chose, so the server can follow the
job's files under `reports/runs/JOB_ID/`. It prints the CLI's summary and writes its outcome
to `lab-job.json` there last (temp file, then rename).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cellops._fs import atomic_write_json
from cellops.errors import CellopsError

from .jobs import RESULT_FILE


def main(argv: list[str]) -> int:
    job_id, notebook, parameters = argv[0], Path(argv[1]), json.loads(argv[2])
    from cellops.cli.jobs import describe_job
    from cellops.config import load_settings
    from cellops.jobs.run import JobRequest, run_job

    folder = load_settings(notebook.parent).root / "reports" / "runs" / job_id
    try:
        result = run_job(JobRequest(notebook, parameters, job_id=job_id, progress=False))
    except CellopsError as exc:  # a usage error or an unreachable store: said, not a traceback
        print(f"cellops: {exc}", file=sys.stderr)
        atomic_write_json(folder / RESULT_FILE, {"ok": False, "run_id": None, "message": str(exc)})
        return 3
    summary = describe_job(result)
    print(summary)
    failure = result.failure
    message = summary.splitlines()[0] if failure is None else failure.describe()
    atomic_write_json(
        folder / RESULT_FILE, {"ok": result.ok, "run_id": result.run_id, "message": message}
    )
    return 0 if result.ok else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
