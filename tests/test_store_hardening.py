"""The project's store holds: a moved or copied project writes into itself, a truncated store is
refused (never silently replaced), a cache hit names a run that exists, and a full disk is
reported as that, by `%cellops flush` too (issue 11, items 2, 3 and 5)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from IPython.core.error import UsageError
from mlflow.tracking import MlflowClient

from cellops.cli import cli
from cellops.config import default_tracking_uri
from cellops.store import session as session_module
from cellops.store.client import short_reason, store_error
from cellops.store.embedded import check_store
from cellops.store.proxy import _rebuild

from .conftest import fixture_path, run

SQLITE = pytest.mark.parametrize("store", ["sqlite"], indirect=True)
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------


def cellops(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def with_job(root: Path) -> None:
    """The jobs fixture notebook and its data file, committed (as `cellops run` expects)."""
    (root / ".gitignore").write_text(".cellops/\nreports/\n")
    shutil.copy(fixture_path("jobs", "job.ipynb"), root / "job.ipynb")
    (root / "data.csv").write_text("r1\nr2\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "job"], cwd=root, check=True,
                   env={**os.environ, **GIT_ENV})  # fmt: skip


def reload_cellops(shell, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End the session, then `%load_ext cellops` again with `root` as the working directory."""
    shell.run_line_magic("unload_ext", "cellops")
    session_module.end_session()
    monkeypatch.chdir(root)
    shell.run_line_magic("load_ext", "cellops")


def end_cellops(shell) -> None:
    shell.run_line_magic("unload_ext", "cellops")
    session_module.end_session()


def all_runs(client: MlflowClient) -> list:
    ids = [e.experiment_id for e in client.search_experiments(view_type=3)]
    return client.search_runs(ids, max_results=1000, run_view_type=3)


def artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_everything_under(client: MlflowClient, root: Path, before: set[str]) -> None:
    """Every location of the store is under `root`, and every step or job run made since
    `before` has its artifacts there, on disk."""
    prefix = (root / ".cellops" / "artifacts").as_uri() + "/"
    for experiment in client.search_experiments(view_type=3):
        if experiment.name != "Default":
            assert experiment.artifact_location.startswith(prefix), experiment
    runs = all_runs(client)
    for found in runs:
        assert found.info.artifact_uri.startswith(prefix), found.info
    new = [r for r in runs if r.info.run_id not in before]
    assert new, "nothing was recorded"
    new = [r for r in new if r.data.tags.get("cellops.kind") != "session"]  # holds no files
    for found in new:
        files = artifact_files(client, found.info.run_id)
        assert files, f"run {found.info.run_name} has no artifacts"
        local = Path(found.info.artifact_uri.removeprefix("file://"))
        assert all((local / name).is_file() for name in files)


# -- moved and copied projects -------------------------------------------------------------------


def rerun_steps(ip) -> None:
    """The original's two steps again (hits) and a new one, then end the session."""
    run(ip, "%%step load\nrows = [1, 2, 3]")
    run(ip, "%%step total\ntotal = sum(rows)\nprint(total)")
    run(ip, "%%step more\nmore = total + 1")
    run(ip, "%cellops flush")
    end_cellops(ip)


def new_step_states(client: MlflowClient, experiment_id: str, before: set[str]) -> dict[str, str]:
    """The state of each step run recorded since `before`."""
    return {
        r.data.tags["cellops.step"]: r.data.tags["cellops.state"]
        for r in client.search_runs([experiment_id], "tags.`cellops.kind` = 'step'")
        if r.info.run_id not in before
    }


def record_in_original(ip, project: Path) -> tuple[str, set[str]]:
    """Two recorded steps in the project; the interactive experiment's id and the run ids."""
    run(ip, "%%step load\nrows = [1, 2, 3]")
    run(ip, "%%step total\ntotal = sum(rows)\nprint(total)")
    run(ip, "%cellops flush")
    end_cellops(ip)
    client = MlflowClient(default_tracking_uri(project))
    interactive = client.get_experiment_by_name(f"{project.name}/interactive")
    return interactive.experiment_id, {r.info.run_id for r in all_runs(client)}


@pytest.mark.slow
@SQLITE
def test_a_moved_project_writes_every_new_artifact_under_its_new_root(
    store_ip, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with_job(project)
    ip = store_ip
    interactive_id, before = record_in_original(ip, project)
    # a model version and a logged model pointing into the old root's artifacts
    old = MlflowClient(default_tracking_uri(project))
    some_run = next(iter(before))
    logged = old.create_logged_model(interactive_id, name="m")
    old.create_registered_model("m")
    old.create_model_version("m", logged.artifact_location, run_id=some_run)

    moved = tmp_path / "moved"
    shutil.move(project, moved)
    monkeypatch.chdir(moved)
    capsys.readouterr()
    result = cellops("run", "job.ipynb", "--no-progress")  # the job opens the store first
    assert result.exit_code == 0, result.output
    assert f"moved or copied from {project} to {moved}" in result.stderr

    ip.run_line_magic("load_ext", "cellops")
    rerun_steps(ip)  # load and total hit: new (cached) runs

    assert not project.exists()  # nothing recreated the old root
    client = MlflowClient(default_tracking_uri(moved))
    assert_everything_under(client, moved, before)
    job = client.get_run(re.search(r"succeeded \(run (\w+)\)", result.stdout).group(1))
    assert {"notebook/job.ipynb", "notebook/job.html"} <= set(
        artifact_files(client, job.info.run_id)
    )
    interactive = client.get_experiment_by_name("moved/interactive")
    assert interactive is not None and interactive.experiment_id == interactive_id
    assert new_step_states(client, interactive_id, before) == {
        "load": "cached",
        "total": "cached",
        "more": "executed",
    }
    version = client.get_model_version("m", "1")
    assert version.source.startswith(moved.as_uri() + "/.cellops/artifacts/")
    assert client.get_logged_model(logged.model_id).artifact_location.startswith(moved.as_uri())


@pytest.mark.slow
@SQLITE
def test_a_copied_project_writes_into_the_copy_and_leaves_the_original_untouched(
    store_ip, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with_job(project)
    ip = store_ip
    interactive_id, before = record_in_original(ip, project)
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    (copy / ".cellops" / "store.json").unlink()  # as a store made before roots were noted
    original = tree(project)

    capsys.readouterr()
    reload_cellops(ip, copy, monkeypatch)
    rerun_steps(ip)
    assert f"moved or copied from {project} to {copy}" in capsys.readouterr().err
    result = cellops("run", "job.ipynb", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "moved or copied" not in result.stderr  # repaired once

    assert tree(project) == original  # not a byte of the original changed
    client = MlflowClient(default_tracking_uri(copy))
    assert_everything_under(client, copy, before)
    interactive = client.get_experiment_by_name("copy/interactive")
    assert interactive is not None and interactive.experiment_id == interactive_id
    assert new_step_states(client, interactive_id, before) == {
        "load": "cached",
        "total": "cached",
        "more": "executed",
    }
    first = MlflowClient(default_tracking_uri(project))  # the original still reads as before
    assert {r.info.run_id for r in all_runs(first)} == before
    assert first.get_experiment_by_name("proj/interactive").experiment_id == interactive_id


# -- damaged stores ------------------------------------------------------------------------------


@SQLITE
@pytest.mark.parametrize("damage", ["truncated", "not sqlite"])
def test_a_damaged_store_is_refused_with_its_path_and_what_to_do(
    store_ip, project: Path, monkeypatch: pytest.MonkeyPatch, capsys, damage: str
) -> None:
    ip = store_ip
    run(ip, "%%step load\nrows = [1, 2, 3]")
    run(ip, "%cellops flush")
    db = project / ".cellops" / "mlflow.db"
    end_cellops(ip)
    db.write_bytes(b"" if damage == "truncated" else b"this is no database\n" * 10)
    advice = f"mv {db} {db}.damaged"

    capsys.readouterr()
    ip.run_line_magic("load_ext", "cellops")
    said = capsys.readouterr().err
    assert f"cellops: refusing to open the tracking store {db}" in said and advice in said
    for _ in range(2):  # and again: the store is not replaced behind the user's back
        with pytest.raises(UsageError) as refused:
            run(ip, "%%step load\nrows = [1, 2, 3]")
        assert f"refusing to open the tracking store {db}" in str(refused.value)
        assert advice in str(refused.value)
        assert "cannot reach" not in str(refused.value)
    end_cellops(ip)
    assert db.stat().st_size == (0 if damage == "truncated" else 200)

    for command in ("steps", "store"):
        result = cellops(command)
        assert result.exit_code == 3, result.output  # could not run
        assert f"refusing to open the tracking store {db}" in result.output
        assert advice in result.output and "Traceback" not in result.output


def test_an_empty_store_file_of_a_new_project_is_a_new_store(project: Path) -> None:
    db = project / ".cellops" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    check_store(default_tracking_uri(project))  # no history here: nothing to refuse


@SQLITE
@pytest.mark.parametrize("gone", ["deleted", "purged"])
def test_a_hit_whose_run_is_gone_says_so_instead_of_naming_it(
    store_ip, project: Path, capfd, gone: str
) -> None:
    ip = store_ip
    cell = "%%step total\ntotal = sum([1, 2, 3])\nprint('ran', total)"
    run(ip, cell)
    run(ip, "%cellops flush")
    client = MlflowClient(default_tracking_uri(project))
    (first,) = client.search_runs(
        [client.get_experiment_by_name("proj/interactive").experiment_id],
        "tags.`cellops.step` = 'total'",
    )
    client.delete_run(first.info.run_id)
    if gone == "purged":  # what `mlflow gc` does to a deleted run
        subprocess.run(
            [sys.executable, "-m", "mlflow", "gc", "--run-ids", first.info.run_id,
             "--backend-store-uri", default_tracking_uri(project)],
            check=True, capture_output=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": default_tracking_uri(project)},
        )  # fmt: skip
        with pytest.raises(Exception, match="not found"):
            client.get_run(first.info.run_id)
    capfd.readouterr()

    run(ip, cell)  # the values are right (checked by key): restored, but never "from run X"
    out, _ = capfd.readouterr()
    assert ip.user_ns["total"] == 6  # (its printed "ran 6" is shown again, as on any hit)
    assert "cached: restored total (saved" in out and "from run" not in out
    assert f"computed by run {first.info.run_id}, which is not in this store" in out
    run(ip, "%cellops flush")
    (hit,) = client.search_runs(
        [client.get_experiment_by_name("proj/interactive").experiment_id],
        "tags.`cellops.state` = 'cached'",
    )
    assert hit.data.tags["cellops.cached_from"] == first.info.run_id
    assert hit.data.tags["cellops.cached_from_store"] == "other"


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def disk() -> Iterator[Callable[[bool], None]]:
    """`disk(full=True)` makes the store's disk full: each store connection the pool hands out
    may not grow the file, so SQLite fails a write that needs a new page with SQLITE_FULL
    ("database or disk is full"), as on a full disk. `disk(full=False)` frees it.

    (`PRAGMA max_page_count` belongs to a connection, not to the file, so it is set on the
    store's own connections as the pool hands them out.)"""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    def cap(connection, record, proxy) -> None:
        cursor = connection.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    def uncap(connection, record, proxy) -> None:
        connection.execute("PRAGMA max_page_count = 1073741823")

    listening: list = []

    def switch(full: bool) -> None:
        while listening:
            event.remove(Pool, "checkout", listening.pop())
        listening.append(cap if full else uncap)
        event.listen(Pool, "checkout", listening[-1])

    yield switch
    while listening:
        event.remove(Pool, "checkout", listening.pop())


@SQLITE
def test_a_full_disk_is_reported_as_such_by_flush_and_the_next_step(
    store_ip, project: Path, disk, capsys
) -> None:
    ip = store_ip
    run(ip, "text = 'x' * 5000  # a param that needs new pages of the store")
    run(ip, "%%step first\nrows = [1, 2, 3]")
    run(ip, "%cellops flush")
    disk(full=True)
    run(ip, "%%step big --params text\nsize = len(text)")  # the cell runs; its records fail
    capsys.readouterr()
    with pytest.raises(UsageError) as flushed:
        run(ip, "%cellops flush")
    report = str(flushed.value)
    assert "all step records written" not in capsys.readouterr().out
    assert "step 'big': " in report
    assert f"the disk holding {project / '.cellops' / 'mlflow.db'} is full" in report
    assert "(database or disk is full)" in report
    assert "autoflush" not in report and "cannot reach" not in report

    with pytest.raises(UsageError) as refused:  # the next step is told, before it runs
        run(ip, "%%step after\nafter = 1")
    message = str(refused.value)
    assert "the disk holding" in message and "(database or disk is full)" in message
    assert "cannot reach" not in message and "autoflush" not in message

    disk(full=False)  # space freed: the same step goes ahead, and all is written
    run(ip, "%%step after\nafter = 1")
    run(ip, "%cellops flush")
    assert "all step records written" in capsys.readouterr().out


@SQLITE
def test_the_cause_of_a_full_store_survives_the_job_proxy(store: str, project: Path, disk) -> None:
    client = MlflowClient(store)
    experiment = client.create_experiment("e")
    run_id = client.create_run(experiment).info.run_id
    disk(full=True)
    with pytest.raises(Exception) as failed:
        client.log_param(run_id, "text", "x" * 5000)
    disk(full=False)
    assert "autoflush" in str(failed.value) or "database or disk is full" in str(failed.value)
    relayed = _rebuild((type(failed.value).__name__, str(failed.value), None))  # no chain
    for exc in (failed.value, relayed):
        assert short_reason(exc) == "database or disk is full"
        error = str(store_error(store, exc))
        assert error.startswith("cannot write to the tracking store: the disk holding")
        assert "cannot reach" not in error
