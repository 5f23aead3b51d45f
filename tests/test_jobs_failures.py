"""Jobs that fail, resume, are retried, or are killed from outside: real kernels, real store."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import nbformat
from mlflow.tracking import MlflowClient

from cellops.store.reaper import process_start_time, reap_dead_runs

from .jobs_helpers import (
    BIN,
    artifact_paths,
    cellops,
    cellops_env,
    job_line,
    job_runs,
    prepare,
    runs_where,
    step_runs,
)

# -- runs that fail, resume, retry ---------------------------------------------------------------


def test_a_failed_job_names_cell_step_and_error_and_resumes_at_the_failed_step(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "job.ipynb")
    marker = project / "fail.marker"
    marker.write_text("")
    failed = cellops("run", "job.ipynb", "-p", "a", "3", "--retries", "1", "--retry-delay", "0",
                     "--no-progress")  # fmt: skip
    assert failed.exit_code == 3, failed.output
    first = job_line(failed.stdout)
    assert first["state"] == "FAILED"
    executed = nbformat.read(
        project / "reports" / "runs" / first["job"] / "job.ipynb", as_version=4
    )
    cells = [
        c for c in executed.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])
    ]
    index = next(i for i, c in enumerate(cells) if c.source.startswith("%%step second"))
    assert re.search(
        rf"error in cell {index} \(In \[\d+\]\), step 'second': "
        r"RuntimeError: marker fail\.marker is present",
        failed.output,
    ), failed.output
    assert "ran: first" in failed.output

    # a failure in the notebook's code is not retried without --retry-on-error: one attempt
    (attempt,) = job_runs(client, "job", first["job"])
    assert attempt.info.run_id == first["run"]
    assert attempt.info.status == "FAILED"
    assert attempt.data.tags["cellops.job.status"] == "failed"
    assert attempt.data.tags["cellops.job.transient"] == "false"
    assert "step 'second'" in attempt.data.tags["cellops.job.error"]
    steps = step_runs(client, attempt)
    assert steps["first"].data.tags["cellops.state"] == "executed"
    assert steps["second"].info.status == "FAILED"
    assert steps["second"].data.tags["cellops.state"] == "failed"
    assert "cellops/traceback.txt" in artifact_paths(client, steps["second"].info.run_id, "cellops")

    marker.unlink()
    resumed = cellops("run", "--resume", first["run"], "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert "skipped (cached): first" in resumed.output
    assert "ran: second" in resumed.output
    run = client.get_run(job_line(resumed.stdout)["run"])
    assert run.data.params["a"] == "3"  # the failed job's parameters, replayed
    steps = step_runs(client, run)
    assert steps["first"].data.tags["cellops.state"] == "cached"
    assert steps["second"].data.tags["cellops.state"] == "executed"
    assert run.data.metrics["total"] == 6.0  # 3 * 2.0, and no data file

    rerun = cellops("run", "job.ipynb", "-p", "a", "3", "--no-progress")
    assert rerun.exit_code == 0, rerun.output
    assert "skipped (cached): first, second" in rerun.output
    run = client.get_run(job_line(rerun.stdout)["run"])
    assert {s.data.tags["cellops.state"] for s in step_runs(client, run).values()} == {"cached"}


def test_a_kernel_that_dies_is_retried_and_each_attempt_recorded(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "kill_once.ipynb")
    marker = project / "kill.marker"
    marker.write_text("")  # the first attempt's kernel removes it and SIGKILLs itself
    result = cellops("run", "kill_once.ipynb", "--retries", "1", "--retry-delay", "0",
                     "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert "attempts: #1 failed, #2 finished" in result.output
    line = job_line(result.stdout)
    attempts = job_runs(client, "kill_once", line["job"])
    assert [r.data.tags["cellops.attempt"] for r in attempts] == ["1", "2"]
    assert [r.info.status for r in attempts] == ["FAILED", "FINISHED"]
    assert attempts[0].data.tags["cellops.job.transient"] == "true"
    assert attempts[1].info.run_id == line["run"]
    assert attempts[1].data.metrics["y"] == 42
    assert "finish" in step_runs(client, attempts[1])
    out_dir = project / "reports" / "runs" / line["job"]
    assert (out_dir / "kill_once.attempt2.ipynb").is_file()
    assert not runs_where(client, "kill_once", "attributes.status = 'RUNNING'")


def test_a_notebook_without_parameters_cell_gets_them_in_a_new_first_cell(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "no_params.ipynb")
    # nothing is declared, so nothing is unknown: every -p is taken, as papermill does
    result = cellops("run", "no_params.ipynb", "-p", "x", "7", "--no-progress")
    assert result.exit_code == 0, result.output
    line = job_line(result.stdout)
    executed = nbformat.read(
        project / "reports" / "runs" / line["job"] / "no_params.ipynb", as_version=4
    )
    assert "injected-parameters" in executed.cells[0].metadata.get("tags", [])
    assert "x = 7" in executed.cells[0].source
    assert executed.cells[1].source == "x = 10"  # the notebook's own value wins, as in papermill
    run = client.get_run(line["run"])  # the kernel never loaded cellops: the job made the run
    assert run.data.tags["cellops.kind"] == "job" and run.info.status == "FINISHED"
    assert run.data.params["x"] == "7"


# -- a job killed from outside -------------------------------------------------------------------


def test_a_job_killed_with_sigkill_is_not_left_running(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "job.ipynb")
    log = (project / "cellops-run.log").open("w")
    job = subprocess.Popen(
        [str(BIN / "cellops"), "run", "job.ipynb", "-p", "sleep_s", "600", "--no-progress"],
        cwd=project, env=cellops_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    kernel_pid = None
    try:
        step = _wait_for_running_step(client, "job", "first", job)
        kernel_pid = int(step.data.tags["cellops.pid"])
        assert kernel_pid != job.pid
        os.kill(job.pid, signal.SIGKILL)
        os.kill(kernel_pid, signal.SIGKILL)
        job.wait(timeout=60)
        _wait_until_gone(kernel_pid)
    finally:  # when an assertion failed early, end what this test started
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
        if kernel_pid is not None and process_start_time(kernel_pid) is not None:
            os.kill(kernel_pid, signal.SIGKILL)
        log.close()
    session = client.get_run(step.data.tags["mlflow.parentRunId"])
    assert session.data.tags["cellops.kind"] == "job"
    assert session.info.status == "RUNNING"  # nobody has touched the store since the kill

    reaped = reap_dead_runs(client)  # what every cellops session and job start does
    assert step.info.run_id in reaped and session.info.run_id in reaped
    for run_id in (step.info.run_id, session.info.run_id):
        assert client.get_run(run_id).info.status in ("KILLED", "FAILED")
    assert not runs_where(client, "job", "attributes.status = 'RUNNING'")


def _wait_for_running_step(client: MlflowClient, name: str, step: str, job: subprocess.Popen):
    deadline = time.monotonic() + 300  # a safety net for a stuck job, not a timing assertion
    while time.monotonic() < deadline:
        assert job.poll() is None, "cellops run ended before its step started"
        if client.get_experiment_by_name(name) is not None:
            runs = runs_where(
                client,
                name,
                f"tags.`cellops.step` = '{step}' and attributes.status = 'RUNNING'",
            )
            if runs and "cellops.pid" in runs[0].data.tags:
                return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"step {step} never showed as RUNNING")


def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 60
    while process_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_start_time(pid) is None, f"process {pid} still alive after SIGKILL"
