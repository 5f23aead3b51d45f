"""Jobs from any notebook, a reproduction that leaves production alone, no duplicate parameters
and no socket folder left behind (issue 11, items 1, 10, part of 5 and of 7).

Every job here is a real `cellops run` (click's CliRunner, in this process) starting a real
kernel on the project's SQLite store; what was recorded is read back with `MlflowClient`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient

from cellops.store.reaper import process_start_time

from .jobs_helpers import cellops, job_line, prepare, step_runs

STEP_NOTEBOOK = "plain.ipynb"


def plain_notebook(path: Path, *cells: str, parameters: str = "n_rows = 3") -> None:
    """A notebook as `nbformat.v4.new_notebook()` writes it: no kernelspec, no language_info."""
    notebook = nbformat.v4.new_notebook()
    assert "kernelspec" not in notebook.metadata and "language_info" not in notebook.metadata
    tagged = nbformat.v4.new_code_cell(parameters)
    tagged.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_code_cell("%load_ext cellops"), tagged]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(notebook, path)


def step_project(project: Path, template_db: Path) -> MlflowClient:
    plain_notebook(
        project / STEP_NOTEBOOK, "%%step count --metrics total\ntotal = n_rows * 2\nprint(total)"
    )
    return prepare(project, template_db)


NOTE = "no kernelspec in the notebook: ran with python3 (this environment)"


# -- item 1: notebooks that name no kernel -------------------------------------------------------


@pytest.mark.slow
def test_a_notebook_without_kernelspec_runs_on_this_environments_python(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = step_project(project, empty_mlflow_db)
    result = cellops("run", STEP_NOTEBOOK, "-p", "n_rows", "4", "--no-progress")
    assert result.exit_code == 0, result.output
    assert NOTE in result.output
    assert "ran: count" in result.output and "metrics: total=8" in result.output
    run = client.get_run(job_line(result.stdout)["run"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["cellops.job.kernel"] == "python3"
    assert step_runs(client, run)["count"].data.metrics["total"] == 8
    assert "Traceback" not in result.output

    # -k alone is enough: papermill gets the kernel's language for the parameters cell
    chosen = cellops("run", STEP_NOTEBOOK, "-k", "python3", "-p", "n_rows", "5", "--no-progress")
    assert chosen.exit_code == 0, chosen.output
    assert "metrics: total=10" in chosen.output
    assert NOTE not in chosen.output  # the user named the kernel: nothing to explain
    executed = nbformat.read(
        project / "reports" / "runs" / job_line(chosen.stdout)["job"] / STEP_NOTEBOOK, 4
    )
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n_rows = 5" in injected[0].source


@pytest.mark.slow
def test_sweep_and_reproduce_run_a_notebook_without_kernelspec(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = step_project(project, empty_mlflow_db)
    sweep = cellops("sweep", STEP_NOTEBOOK, "-p", "n_rows", "1", "2", "--local",
                    "--rank-by", "total", "--no-progress")  # fmt: skip
    assert sweep.exit_code == 0, sweep.output
    assert sweep.output.count(NOTE) == 1  # said once for the sweep, not once per point
    rows = [line.split() for line in sweep.output.splitlines() if re.match(r"^[12] ", line)]
    assert [(row[1], row[2]) for row in rows] == [("2", "ok"), ("1", "ok")]

    first = cellops("run", STEP_NOTEBOOK, "--no-progress")
    original = job_line(first.stdout)["run"]
    again = cellops("reproduce", original, "--no-progress")
    assert again.exit_code == 0, again.output
    assert NOTE in again.output and "ran: count" in again.output
    reproduced = client.get_run(job_line(again.stdout)["run"])
    assert reproduced.data.tags["cellops.reproduction_of"] == original
    assert reproduced.data.metrics["total"] == 6


BROKEN_KERNEL = {
    "argv": [sys.executable, "-c", "raise SystemExit(3)", "{connection_file}"],
    "display_name": "exits at once",
    "language": "python",
}


def test_a_kernel_that_is_not_installed_is_named_before_anything_starts(project: Path) -> None:
    plain_notebook(project / STEP_NOTEBOOK)
    asked = cellops("run", STEP_NOTEBOOK, "-k", "nosuchkernel", "--no-progress")
    assert asked.exit_code == 2, asked.output
    assert "could not start the notebook: no kernel named 'nosuchkernel' is installed" in (
        asked.output
    )
    assert "installed kernels: " in asked.output and "python3" in asked.output

    notebook = nbformat.read(project / STEP_NOTEBOOK, 4)
    notebook.metadata["kernelspec"] = {"name": "gone-kernel", "language": "python"}
    nbformat.write(notebook, project / "named.ipynb")
    refused = cellops("run", "named.ipynb", "--no-progress")
    assert refused.exit_code == 2, refused.output
    assert "it asks for kernel 'gone-kernel', which is not installed here" in refused.output
    assert "-k NAME" in refused.output
    for output in (asked.output, refused.output):
        assert "Traceback" not in output and "error in" not in output
    assert not (project / "reports").exists()  # no job started


@pytest.mark.slow
def test_a_kernel_that_cannot_start_is_reported_as_such_not_as_an_exception(
    project: Path, empty_mlflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = step_project(project, empty_mlflow_db)
    spec = tmp_path / "jupyter" / "kernels" / "broken"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps(BROKEN_KERNEL))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    result = cellops("run", STEP_NOTEBOOK, "-k", "broken", "--no-progress")
    assert result.exit_code == 3, result.output
    assert "could not start the notebook (kernel broken): Kernel died" in result.stdout
    assert "error in" not in result.stdout and "Traceback" not in result.output
    run = client.get_run(job_line(result.stdout)["run"])
    assert run.info.status == "FAILED"
    assert run.data.tags["cellops.job.error"].startswith("could not start the notebook")


# -- part of item 5: a parameter given twice -----------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", STEP_NOTEBOOK, "-p", "n_rows", "5", "-p", "n_rows", "6"],
         "parameter 'n_rows' is given twice: -p n_rows 5 and -p n_rows 6"),
        (["sweep", STEP_NOTEBOOK, "-p", "n_rows", "1", "2", "-p", "n_rows", "6", "--local"],
         "parameter 'n_rows' is given twice: -p n_rows 1 2 and -p n_rows 6; give all its "
         "values in one -p: -p n_rows 1 2 6"),
    ],
    ids=["run", "sweep"],
)  # fmt: skip
def test_a_parameter_given_twice_is_refused_naming_both_values(
    project: Path, args: list[str], expected: str
) -> None:
    plain_notebook(project / STEP_NOTEBOOK)
    result = cellops(*args, "--no-progress")
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (project / "reports").exists()


# -- item 10: a reproduction never changes production --------------------------------------------

TRAIN = """%%step train
frame = pd.read_parquet("data/train.parquet")
X, y = frame.drop(columns="label").iloc[:n_train], frame["label"].iloc[:n_train]
model = LogisticRegression().fit(X, y)"""
REGISTER = """registered = cellops.register_model(model, "fraud", X)
print(registered)
print(cellops.promote("fraud"))"""


def champion_and_aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model("fraud").aliases.items()}


@pytest.mark.slow
def test_reproducing_a_job_registers_without_aliases_and_only_says_what_the_gate_would_do(
    project: Path, empty_mlflow_db: Path
) -> None:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(1200, 4, n_informative=2, n_redundant=1, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(label=y)
    (project / "data").mkdir()
    frame.iloc[:1000].to_parquet(project / "data" / "train.parquet")
    frame.iloc[1000:].to_parquet(project / "data" / "holdout.parquet")
    with (project / "pyproject.toml").open("a") as fh:  # a gate that always passes
        fh.write(
            '\n[tool.cellops.models.fraud]\ngate = ["auc >= 0"]\n'
            'holdout = "data/holdout.parquet"\nlabel = "label"\nlatency_samples = 3\n'
        )
    plain_notebook(
        project / "train.ipynb",
        "import cellops\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
        TRAIN,
        REGISTER,
        parameters="n_train = 300",
    )
    client = prepare(project, empty_mlflow_db)

    first = cellops("run", "train.ipynb", "--no-progress")  # v1, champion as the first model
    assert first.exit_code == 0, first.output
    v1_job = job_line(first.stdout)["run"]
    second = cellops("run", "train.ipynb", "-p", "n_train", "1000", "--no-progress")
    assert second.exit_code == 0, second.output
    assert "fraud v2 PROMOTED to champion (was v1)" in second.output
    before = champion_and_aliases(client)
    assert before["champion"] == "2" and before["challenger"] == "2"

    again = cellops("reproduce", v1_job, "--no-progress")
    assert again.exit_code == 0, again.output
    assert champion_and_aliases(client) == before  # nothing moved, nothing was added
    v3 = client.get_model_version("fraud", "3")
    assert v3.tags["cellops.reproduction_of"] == v1_job
    assert not v3.aliases
    summary = " ".join(again.output.split())
    assert f"reproduction of run {v1_job}" in summary and "no alias was moved or set" in summary
    assert f"registered fraud v3 as a reproduction of run {v1_job}: no alias set" in summary
    assert (
        "gate (dry run, nothing moved): fraud v3 would be promoted against champion v2" in summary
    )
    executed = nbformat.read(
        project / "reports" / "runs" / job_line(again.stdout)["job"] / "train.ipynb", 4
    )
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert f"as a reproduction of run {v1_job} (no alias)" in printed

    events = client.search_runs(
        [client.get_experiment_by_name("cellops-registry-events").experiment_id],
        "tags.`cellops.version` = '3'",
    )
    assert [(e.data.tags["cellops.event"], e.data.tags["cellops.decision"]) for e in events] == [
        ("gate", "would be promoted")
    ]


# -- part of item 7: the socket folder of a killed `cellops run` ---------------------------------

HOLD_PROXY = """
import sys
from cellops.store.proxy import serve
with serve(lambda: None, "unused") as env:
    print(env["CELLOPS_STORE_PROXY"], flush=True)
    sys.stdin.read()
"""


def _proxy_owner(tmp: str) -> tuple[subprocess.Popen, Path]:
    """A real process owning a proxy socket folder in `tmp`, as a `cellops run` does."""
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD_PROXY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "TMPDIR": tmp},
    )  # fmt: skip
    folder = Path(owner.stdout.readline().strip()).parent
    assert folder.is_dir() and folder.parent == Path(tmp), folder
    return owner, folder


@pytest.mark.slow
def test_the_next_job_removes_socket_folders_of_killed_runs_and_keeps_live_ones(
    project: Path, empty_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_project(project, empty_mlflow_db)
    tmp = tempfile.mkdtemp(prefix="ch-", dir="/tmp")  # short: a socket path has 108 bytes
    live = None
    try:
        killed, stale = _proxy_owner(tmp)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        assert process_start_time(killed.pid) is None and stale.is_dir()  # left behind
        live, kept = _proxy_owner(tmp)
        legacy = Path(tmp) / "cellops-store-a1b2c3d4"  # an older cellops's, its listener gone
        legacy.mkdir()
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(str(legacy / "store.sock"))

        monkeypatch.setattr(tempfile, "tempdir", tmp)
        result = cellops("run", STEP_NOTEBOOK, "--no-progress")
        assert result.exit_code == 0, result.output
        assert not stale.exists() and not legacy.exists()
        assert kept.is_dir() and (kept / "store.sock").exists()
        assert sorted(p.name for p in Path(tmp).iterdir() if p.name.startswith("cellops-")) == [
            kept.name
        ]  # the job's own folder went at its end
        live.stdin.close()
        assert live.wait(timeout=60) == 0 and not kept.exists()
    finally:
        if live is not None and live.poll() is None:
            live.kill()
            live.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
