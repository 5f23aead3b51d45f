"""What the job tests share: a project with a store, the CLI, and readers of what a job recorded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from mlflow.tracking import MlflowClient

from cellops.cli import cli
from cellops.config import default_tracking_uri

from .conftest import fixture_path

BIN = Path(sys.executable).parent
JOB_LINE = re.compile(
    r"^job (?P<job>\S+) (?P<state>succeeded|FAILED) \(run (?P<run>[0-9a-f]+)\)$", re.M
)
ISOLATED_ENV = ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------


def prepare(root: Path, template_db: Path, *notebooks: str) -> MlflowClient:
    """Copy fixture notebooks into the project, commit them; a migrated, empty store."""
    (root / ".gitignore").write_text(".cellops/\nreports/\n")
    for name in notebooks:
        shutil.copy(fixture_path("jobs", name), root / name)
    commit(root)
    uri = default_tracking_uri(root)
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, db)  # the schema's migrations take seconds: done once
    return MlflowClient(uri)


def commit(root: Path) -> None:
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "notebooks", "--allow-empty"], cwd=root, check=True,
                   env=env)  # fmt: skip


def cellops(*args: str) -> Result:
    """The `cellops` command in this process, as a user types it (in the current directory)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def cellops_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV}


def job_line(output: str) -> dict[str, str]:
    match = JOB_LINE.search(output)  # (stdout: MLflow may draw a progress bar on stderr)
    assert match, output
    return match.groupdict()


def experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    assert found is not None, f"no experiment {name!r}"
    return found.experiment_id


def runs_where(client: MlflowClient, name: str, query: str) -> list:
    return client.search_runs([experiment(client, name)], query, max_results=1000)


def job_runs(client: MlflowClient, name: str, job_id: str) -> list:
    runs = runs_where(client, name, f"tags.`cellops.job` = '{job_id}'")
    return sorted(runs, key=lambda r: int(r.data.tags["cellops.attempt"]))


def step_runs(client: MlflowClient, run) -> dict[str, object]:
    children = client.search_runs(
        [run.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{run.info.run_id}' and tags.`cellops.kind` = 'step'",
    )
    return {child.data.tags["cellops.step"]: child for child in children}


def artifact_paths(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, path)}


def manifest_of(client: MlflowClient, run_id: str) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, "cellops/manifest.json")).read_text())


def head_commit(root: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip()
