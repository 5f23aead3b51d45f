"""`cellops export dvc`, `push`, `pull` and `lineage`, checked with the real `dvc` and `git`
commands and with jobs in real kernels (`dvc repro` and `cellops run` start them).

The pipeline notebook (tests/fixtures/data/pipeline.ipynb): `clean` reads data/raw.csv and
writes data/clean.csv (parameter n_rows), `summarize` reads data/clean.csv and writes
out/summary.txt, `tag` writes out/label.txt (parameter label). Its first run happens in the
test's IPython shell, as a user would run it in Jupyter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from cellops.config import default_tracking_uri

from .conftest import fixture_path, run
from .data_helpers import cellops_cli, commit_all, dvc, env, git, init, md5
from .test_step_magic import client_for_session

sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)
RAW = "id,v\n1,a\n2,b\n3,c\n4,d\n5,e\n"


@pytest.fixture
def pipeline(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`cellops init` done and committed, the notebook in place, data/raw.csv beside it.

    Request it before `store_ip`: the shell then runs the notebook as `pipeline.ipynb`.
    """
    init(project, tmp_path / "remote")
    shutil.copyfile(fixture_path("data", "pipeline.ipynb"), project / "pipeline.ipynb")
    commit_all(project, "cellops init")
    (project / "data").mkdir()
    (project / "data" / "raw.csv").write_text(RAW)
    monkeypatch.setenv("CELLOPS_NOTEBOOK", str(project / "pipeline.ipynb"))
    return project


def run_notebook_in_shell(shell, notebook: Path) -> None:
    for cell in json.loads(notebook.read_text())["cells"]:
        run(shell, "".join(cell["source"]))
    client_for_session()  # flushes every record


def step_states(root: Path, job_output: str) -> dict[str, str]:
    """{step: executed|cached} of the job whose output line `cellops run` printed."""
    client = MlflowClient(default_tracking_uri(root))
    run_id = job_output.split("(run ")[1].split(")")[0]
    runs = client.search_runs(
        [client.get_run(run_id).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{run_id}'",
    )
    return {r.data.tags["cellops.step"]: r.data.tags["cellops.state"] for r in runs}


@sqlite_only
def test_export_dvc_writes_stages_that_dvc_status_dag_and_repro_work_on(pipeline, store_ip):
    run_notebook_in_shell(store_ip, pipeline / "pipeline.ipynb")

    result = cellops_cli("export", "dvc", "pipeline.ipynb")
    assert result.exit_code == 0, result.output
    for stage in ("clean", "summarize", "tag"):
        assert f"{stage:<20} step '{stage}', current" in result.output
    assert "parameters added to params.yaml: n_rows, label" in result.output
    assert yaml.safe_load((pipeline / "params.yaml").read_text()) == {"n_rows": 3, "label": "a"}
    stages = yaml.safe_load((pipeline / "dvc.yaml").read_text())["stages"]
    assert stages["clean"]["deps"] == ["pipeline.ipynb", "data/raw.csv"]
    assert stages["clean"]["params"] == ["n_rows"]
    assert stages["clean"]["outs"] == ["data/clean.csv"]
    assert stages["summarize"]["deps"] == ["pipeline.ipynb", "data/clean.csv"]
    assert "params" not in stages["summarize"]
    assert stages["tag"]["params"] == ["label"]
    assert stages["tag"]["cmd"] == "cellops run pipeline.ipynb -f params.yaml --no-progress"
    # the .dvc files the steps wrote are handed over to the stages
    assert not (pipeline / "data" / "clean.csv.dvc").exists()

    status = dvc(pipeline, "status")
    assert status.returncode == 0 and "Data and pipelines are up to date." in status.stdout
    dag = dvc(pipeline, "dag", "--dot").stdout
    assert '"clean" -> "summarize"' in dag and '"tag"' in dag
    assert "tag" not in [line for line in dag.splitlines() if "->" in line][0]

    # a parameter changes in params.yaml: only its stage is stale, and only it is rebuilt
    commit_all(pipeline, "export")
    (pipeline / "params.yaml").write_text("n_rows: 3\nlabel: b\n")
    status = dvc(pipeline, "status").stdout
    assert "tag:" in status and "label" in status
    assert "clean" not in status and "summarize" not in status
    repro = dvc(pipeline, "repro")
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert "Running stage 'tag'" in repro.stdout
    assert "Stage 'clean' didn't change, skipping" in repro.stdout
    assert "Stage 'summarize' didn't change, skipping" in repro.stdout
    assert "Running stage 'clean'" not in repro.stdout
    assert (pipeline / "out" / "label.txt").read_text() == "b\n"
    job_line = next(line for line in repro.stdout.splitlines() if line.startswith("job "))
    assert step_states(pipeline, job_line) == {
        "clean": "cached",
        "summarize": "cached",
        "tag": "executed",
    }
    again = dvc(pipeline, "repro")
    assert "Data and pipelines are up to date." in again.stdout
    assert "Running stage" not in again.stdout

    # lineage of the rebuilt file: the step, its parameter, the code; and who read clean.csv
    result = cellops_cli("lineage", "out/label.txt")
    assert result.exit_code == 0, result.output
    assert f"out/label.txt  {md5(pipeline / 'out' / 'label.txt')}" in result.output
    assert "DVC: dvc.yaml records" in result.output and "(matches the file)" in result.output
    assert "produced by step 'tag' of pipeline.ipynb" in result.output
    assert "params: label=b" in result.output
    git_head = git(pipeline, "rev-parse", "HEAD").strip()
    assert f"code:   git {git_head[:12]}" in result.output
    clean = cellops_cli("lineage", "data/clean.csv").output
    assert "produced by step 'clean'" in clean and "params: n_rows=3" in clean
    assert f"data:   data/raw.csv {md5(pipeline / 'data' / 'raw.csv')}" in clean
    assert "step 'summarize' of pipeline.ipynb" in clean.split("used by:")[1]
    producer = clean.split(", run ")[1].split(" ")[0]
    by_run = cellops_cli("lineage", producer).output
    assert "step 'clean'" in by_run
    assert "output data/clean.csv" in by_run and "'summarize'" in by_run

    # a registered model version leads to the run that produced it
    client = MlflowClient(default_tracking_uri(pipeline))
    client.create_registered_model("cleaner")
    client.create_model_version("cleaner", "file:///nowhere", run_id=producer)
    by_model = cellops_cli("lineage", "models:/cleaner/1").output
    assert "model cleaner version 1 (models:/cleaner/1)" in by_model
    assert f"produced by:\nstep 'clean' of pipeline.ipynb, run {producer}" in by_model
    assert cellops_cli("lineage", "models:/cleaner/9").exit_code == 2


@sqlite_only
def test_a_model_lineage_names_its_data_by_the_hash_dvc_and_file_lineage_show(
    pipeline, store_ip, monkeypatch
):
    """Issue 11: the version's data and `cellops lineage FILE` join on DVC's md5."""
    import cellops

    monkeypatch.setenv("CELLOPS_USER", "auditor-test")
    cellops.track_file("data/raw.csv")
    run_notebook_in_shell(store_ip, pipeline / "pipeline.ipynb")
    run(
        store_ip,
        "import cellops\nimport pandas as pd\nfrom sklearn.dummy import DummyClassifier\n"
        "rows = pd.read_csv('data/clean.csv')\n"
        "model = DummyClassifier().fit(rows[['id']], rows['v'])\n"
        "cellops.register_model(model, 'cleaner', rows[['id']])",
    )
    client_for_session()
    raw, clean = md5(pipeline / "data" / "raw.csv"), md5(pipeline / "data" / "clean.csv")
    version = MlflowClient(default_tracking_uri(pipeline)).get_model_version("cleaner", "1")
    assert json.loads(version.tags["cellops.data"]) == {
        "data/raw.csv": raw,
        "data/clean.csv": clean,
    }

    text = cellops_cli("lineage", "models:/cleaner/1").output
    assert f"  data/clean.csv  {clean}\n    DVC: data/clean.csv.dvc records this version" in text
    assert f"  data/raw.csv  {raw}\n    DVC: data/raw.csv.dvc records this version" in text
    assert "the file on disk is this version" in text
    assert "    written by step 'clean' of pipeline.ipynb" in text
    assert "registered by auditor-test at " in text
    assert '      | Path("data/clean.csv").write_text("\\n".join(lines) + "\\n")' in text
    assert "params: n_rows=3" in text  # the clean step's parameter
    for label, digest in (("data/clean.csv", clean), ("data/raw.csv", raw)):
        assert f"{label}  {digest}" in cellops_cli("lineage", label).output  # the same hash
    data = json.loads(cellops_cli("lineage", "models:/cleaner/1", "--json").output)
    found = {d["path"]: d for d in data["data"]}
    assert found["data/clean.csv"]["dvc"]["pointer"] == "data/clean.csv.dvc"
    assert found["data/clean.csv"]["dvc"]["md5"] == clean
    assert [s["name"] for s in data["steps"]] == ["clean", "summarize", "tag"]


@sqlite_only
def test_a_fresh_clone_pulls_data_and_cache_and_its_rerun_hits_the_cache(
    pipeline, store_ip, tmp_path, monkeypatch
):
    import cellops

    cellops.track_file("data/raw.csv")
    run_notebook_in_shell(store_ip, pipeline / "pipeline.ipynb")
    commit_all(pipeline, "first run")
    pushed = cellops_cli("push")
    assert pushed.exit_code == 0, pushed.output
    assert "step cache: " in pushed.output and " 0 object(s)" not in pushed.output
    assert "files pushed" in pushed.output
    key = pipeline / ".cellops" / "cache.key"
    remote_files = [p for p in (tmp_path / "remote").rglob("*") if p.is_file()]
    assert any(p.suffix == ".bundle" for p in remote_files)
    assert not any(key.read_bytes() in p.read_bytes() for p in remote_files)  # never pushed

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(pipeline), str(clone))
    assert not (clone / "data" / "clean.csv").exists() and not (clone / ".cellops").exists()
    (clone / ".cellops").mkdir()
    shutil.copy2(key, clone / ".cellops" / "cache.key")  # shared out of band, as the README says
    monkeypatch.chdir(clone)
    pulled = cellops_cli("pull")
    assert pulled.exit_code == 0, pulled.output
    for name in ("data/raw.csv", "data/clean.csv", "out/summary.txt", "out/label.txt"):
        assert md5(clone / name) == md5(pipeline / name), name
    assert "Data and pipelines are up to date." in dvc(clone, "status").stdout

    # local changes to versioned data: refused, unless --force
    (clone / "data" / "clean.csv").write_text("mine\n")
    refused = cellops_cli("pull")
    assert refused.exit_code == 2
    assert "local changes to data/clean.csv" in refused.output
    assert "cellops pull --force" in refused.output
    assert (clone / "data" / "clean.csv").read_text() == "mine\n"
    forced = cellops_cli("pull", "--force")
    assert forced.exit_code == 0, forced.output
    assert md5(clone / "data" / "clean.csv") == md5(pipeline / "data" / "clean.csv")

    # the teammate re-runs the notebook as a job: every step comes from the pulled cache
    job = subprocess.run(
        [str(Path(sys.executable).parent / "cellops"), "run", "pipeline.ipynb", "--no-progress"],
        cwd=clone,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    assert "skipped (cached): clean, summarize, tag" in job.stdout
    job_line = next(line for line in job.stdout.splitlines() if line.startswith("job "))
    assert step_states(clone, job_line) == dict.fromkeys(("clean", "summarize", "tag"), "cached")
    assert not [line for line in git(clone, "status", "--porcelain").splitlines()]


@sqlite_only
def test_export_leaves_stages_out_of_date_with_params_yaml_to_dvc_repro_and_refuses_conflicts(
    pipeline, store_ip
):
    run_notebook_in_shell(store_ip, pipeline / "pipeline.ipynb")
    (pipeline / "params.yaml").write_text("n_rows: 5\n")  # not what the notebook ran with
    result = cellops_cli("export", "dvc", "pipeline.ipynb")
    assert result.exit_code == 0, result.output
    assert "clean                step 'clean', to build (parameter n_rows differs" in result.output
    assert "tag                  step 'tag', current" in result.output
    assert "next: dvc repro" in result.output
    assert yaml.safe_load((pipeline / "params.yaml").read_text()) == {"n_rows": 5, "label": "a"}
    status = dvc(pipeline, "status").stdout
    assert "clean:" in status and "tag:" not in status

    (pipeline / "params.yaml").write_text("n_rows: 5\nlabel: a\nlearning_rate: 0.1\n")
    refused = cellops_cli("export", "dvc", "pipeline.ipynb")
    assert refused.exit_code == 2
    assert "params.yaml holds learning_rate" in refused.output and "--params-file" in refused.output

    (pipeline / "params.yaml").write_text("n_rows: 3\nlabel: a\n")
    stages = yaml.safe_load((pipeline / "dvc.yaml").read_text())
    stages["stages"]["tag"] = {"cmd": "echo mine", "outs": ["mine.txt"]}
    (pipeline / "dvc.yaml").write_text(yaml.safe_dump(stages))
    refused = cellops_cli("export", "dvc", "pipeline.ipynb")
    assert refused.exit_code == 2
    assert "dvc.yaml already has a stage 'tag' that cellops did not write" in refused.output

    bare = pipeline / "bare.ipynb"
    notebook = json.loads((pipeline / "pipeline.ipynb").read_text())
    notebook["cells"] = notebook["cells"][:2]
    bare.write_text(json.dumps(notebook))
    refused = cellops_cli("export", "dvc", "bare.ipynb")
    assert refused.exit_code == 2 and "no step of bare.ipynb declares --files-out" in refused.output
