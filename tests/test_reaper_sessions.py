"""A session run ends FINISHED when its kernel finished normally, whatever processes it started.

Real kernels, started by nbclient and jupyter_client as Jupyter starts them, in a temporary
project; the store is read back with `MlflowClient` after the kernels are gone, and after a
later session has opened (the reaper runs then, ending the runs of owners that died).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from mlflow.tracking import MlflowClient

from cellops.store.reaper import process_start_time

CROSS_VALIDATE = """%%step cv
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

X, y = load_iris(return_X_y=True)
scores = cross_val_score(LogisticRegression(max_iter=500), X, y, cv=3, n_jobs=2)
print("mean score", round(float(scores.mean()), 3))
"""

FORK_POOL = """%%step squares
import multiprocessing

with multiprocessing.get_context("fork").Pool(2) as pool:
    squares = pool.map(abs, [-1, -2, -3])
print("squares", squares)
"""


def store(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / '.cellops' / 'mlflow.db'}")


def notebook(project: Path, name: str, *steps: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext cellops")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in steps]
    path = project / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def execute(project: Path, path: Path) -> str:
    """Run the notebook in a fresh kernel, as Jupyter does (graceful shutdown at the end)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(project)}}
    )
    client.execute(env={**os.environ, "JPY_SESSION_NAME": str(path)})
    return "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))


def sessions(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs(
        [found.experiment_id], "tags.`cellops.kind` = 'session'", order_by=["start_time ASC"]
    )


def step_runs(client: MlflowClient, session) -> dict:
    runs = client.search_runs(
        [session.info.experiment_id], f"tags.`mlflow.parentRunId` = '{session.info.run_id}'"
    )
    return {run.info.run_name: run for run in runs}


def test_a_session_whose_steps_used_worker_processes_ends_finished(project: Path) -> None:
    # joblib's n_jobs=2 leaves resource trackers that ignore SIGTERM: ipykernel spends up to
    # 15 s terminating them at shutdown, and the kernel manager SIGTERMs the kernel at 2.5 s
    printed = execute(project, notebook(project, "workers", CROSS_VALIDATE, FORK_POOL))
    assert "mean score 0.9" in printed and "squares [1, 2, 3]" in printed

    client = store(project)
    (session,) = sessions(client, "workers")
    assert session.info.status == "FINISHED"
    steps = step_runs(client, session)
    assert set(steps) == {"cv", "squares"}
    assert all(run.info.status == "FINISHED" for run in steps.values())

    # a later session runs the reaper: the kernel is gone, but its session was not killed
    execute(project, notebook(project, "later", "%%step one\nx = 1"))
    (session,) = sessions(client, "workers")
    assert session.info.status == "FINISHED"
    assert "cellops.reaped" not in session.data.tags
    assert [run.info.status for run in sessions(client, "later")] == ["FINISHED"]


def test_a_kernel_that_was_killed_is_still_reaped(project: Path) -> None:
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(project), env={**os.environ})
    pid = manager.provisioner.process.pid
    kernel = manager.client()
    kernel.start_channels()
    try:
        kernel.wait_for_ready(timeout=120)
        for source in ("%load_ext cellops", CROSS_VALIDATE):
            reply = kernel.execute_interactive(source, timeout=300, output_hook=lambda _: None)
            assert reply["content"]["status"] == "ok"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while process_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)

    client = store(project)
    (session,) = sessions(client, "proj/interactive")
    assert session.info.status == "RUNNING"  # nobody has touched the store since the kill
    execute(project, notebook(project, "later", "%%step one\nx = 1"))
    (session,) = sessions(client, "proj/interactive")
    assert session.info.status == "KILLED"
    assert session.data.tags["cellops.reaped"] == "owner process died"
    assert [run.info.status for run in step_runs(client, session).values()] == ["KILLED"]


FORKING_SCRIPT = """
import os, sys
from mlflow.tracking import MlflowClient
from cellops.store.session import ensure_session

session = ensure_session()
run_id = session.run.run_id
pid = os.fork()
if pid == 0:
    sys.exit(0)  # an ordinary exit: the child runs the atexit handlers it inherited
os.waitpid(pid, 0)
status = MlflowClient(session.settings.tracking_uri).get_run(run_id).info.status
print(run_id, status, flush=True)
"""


def test_a_forked_child_does_not_end_its_parents_session(project: Path) -> None:
    script = project / "forking.py"
    script.write_text(textwrap.dedent(FORKING_SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    run_id, status_after_the_child = result.stdout.split()
    assert status_after_the_child == "RUNNING"
    assert store(project).get_run(run_id).info.status == "FINISHED"  # the parent ended it
