"""Versioned step files in a real IPython shell, against the real `git` and `dvc` commands.

What was recorded is read back with `MlflowClient`; what DVC holds, with the `dvc` command.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from IPython.core.error import UsageError

from cellops.cli import cli
from cellops.store.session import current_session

from .conftest import fixture_path, run
from .data_helpers import commit_all, dvc, dvc_file_md5, git, init, md5
from .test_step_magic import SIDE_EFFECT, client_for_session, ran, step_runs

sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@pytest.fixture
def dvc_project(project: Path, tmp_path: Path) -> Path:
    """The `project`, after `cellops init` (git + DVC + a local remote) and a commit."""
    init(project, tmp_path / "remote")
    commit_all(project, "cellops init")
    (project / "data").mkdir()
    (project / "data" / "raw.csv").write_text("id,v\n1,a\n2,b\n3,c\n")  # not in git
    return project


def usage_error(shell, code: str) -> UsageError:
    result = shell.run_cell(code)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    return result.error_in_exec


def datasets(run_id: str) -> dict[str, tuple[str, str]]:
    """{name: (digest, context)} of the run's MLflow dataset inputs."""
    _, client = client_for_session()
    found = {}
    for item in client.get_run(run_id).inputs.dataset_inputs:
        context = {t.key: t.value for t in item.tags}.get("mlflow.data.context")
        found[item.dataset.name] = (item.dataset.digest, context)
    return found


WRITE_STEP = (
    "%%step make --files-in data/raw.csv --files-out data/clean.csv,out\n"
    "side_effect('make')\n"
    "from pathlib import Path\n"
    "Path('data/clean.csv').write_text(Path('data/raw.csv').read_text().upper())\n"
    "Path('out/parts').mkdir(parents=True, exist_ok=True)\n"
    "Path('out/parts/a.txt').write_text('a')\n"
    "Path('out/b.txt').write_text('b')"
)


# -- cellops init --------------------------------------------------------------------------------


def test_init_makes_a_project_with_git_dvc_and_a_remote_and_is_idempotent(tmp_path: Path):
    folder, remote = tmp_path / "fresh", tmp_path / "remote"
    folder.mkdir()
    first = init(folder, remote)
    assert "initialized a git repository" in first and "initialized DVC" in first
    assert (folder / ".git").is_dir() and (folder / ".dvc").is_dir()
    assert (folder / "cellops.toml").is_file()  # no pyproject.toml: a cellops.toml
    ignored = (folder / ".gitignore").read_text().splitlines()
    assert "/.cellops/" in ignored and "/reports/" in ignored
    listed = dvc(folder, "remote", "list").stdout
    assert "cellops" in listed and str(remote) in listed and "(default)" in listed
    assert remote.is_dir()
    files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and ".git/" not in str(p)}

    again = init(folder, remote)
    assert "done:" not in again
    for what in ("git repository", "DVC (.dvc/)", "default DVC remote 'cellops'", ".gitignore"):
        assert what in again
    assert files == {
        p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and ".git/" not in str(p)
    }
    ignored = git(folder, "check-ignore", ".cellops/mlflow.db", "reports/runs/x.html")
    assert ignored.split() == [".cellops/mlflow.db", "reports/runs/x.html"]


def test_data_commands_outside_git_tell_the_user_to_run_cellops_init(tmp_path, monkeypatch):
    folder = tmp_path / "nogit"
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[tool.cellops]\n")
    (folder / "nb.ipynb").write_text((fixture_path("data", "pipeline.ipynb")).read_text())
    monkeypatch.chdir(folder)
    for args in (["push"], ["pull"], ["export", "dvc", "nb.ipynb"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert "not in a git repository" in result.output
        assert "run `cellops init`" in result.output
        assert "Traceback" not in result.output


# -- steps with files ------------------------------------------------------------------------------


@sqlite_only
def test_step_files_go_under_dvc_and_onto_the_run_and_hand_edits_are_never_overwritten(
    dvc_project: Path, store_ip
):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    run(ip, WRITE_STEP)
    root = dvc_project
    clean = root / "data" / "clean.csv"

    # DVC holds the outputs, in the version the step wrote; `dvc status` agrees
    assert dvc_file_md5(root / "data" / "clean.csv.dvc") == md5(clean)
    out_hash = dvc_file_md5(root / "out.dvc")
    assert out_hash.endswith(".dir")
    assert "Data and pipelines are up to date." in dvc(root, "status").stdout

    # the step run carries each file's path and DVC hash, as tags and as dataset inputs
    (executed,) = step_runs("make")
    tags = executed.data.tags
    expected_in = {"data/raw.csv": md5(root / "data" / "raw.csv")}
    expected_out = {"data/clean.csv": md5(clean), "out": out_hash}
    assert json.loads(tags["cellops.files_in"]) == expected_in
    assert json.loads(tags["cellops.files_out"]) == expected_out
    assert datasets(executed.info.run_id) == {
        "data/raw.csv": (expected_in["data/raw.csv"], "input"),
        "data/clean.csv": (expected_out["data/clean.csv"], "output"),
        "out": (out_hash, "output"),
    }

    # a cache hit records the same files on its own run
    run(ip, WRITE_STEP)
    assert ran("make") == 1
    cached = step_runs("make")[-1]
    assert cached.data.tags["cellops.state"] == "cached"
    assert json.loads(cached.data.tags["cellops.files_out"]) == expected_out
    assert datasets(cached.info.run_id)["out"] == (out_hash, "output")

    # an output changed by hand is reported, and neither a restore nor a run overwrites it
    clean.write_text("edited by hand\n")
    for cell in (WRITE_STEP, WRITE_STEP.replace("--files-in", "--force --files-in")):
        message = str(usage_error(ip, cell))
        assert "data/clean.csv changed since DVC recorded it" in message
        assert "dvc add data/clean.csv" in message and "dvc checkout data/clean.csv" in message
    assert clean.read_text() == "edited by hand\n"
    assert ran("make") == 1
    assert "modified:           data/clean.csv" in dvc(root, "status").stdout

    # discarding the edit with DVC lets the step restore from the cache again
    assert dvc(root, "checkout", "--force", "data/clean.csv.dvc").returncode == 0
    run(ip, WRITE_STEP)
    assert ran("make") == 1
    assert step_runs("make")[-1].data.tags["cellops.state"] == "cached"


@sqlite_only
def test_files_out_outside_the_project_is_refused_before_the_cell_runs(project, store_ip):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    message = str(usage_error(ip, "%%step w --files-out ../elsewhere.txt\nside_effect('w')"))
    assert "--files-out ../elsewhere.txt is outside the project" in message  # (shell-quoted)
    assert ran("w") == 0
    assert not (project.parent / "elsewhere.txt").exists()
    assert step_runs() == []


@sqlite_only
def test_without_dvc_a_step_still_records_its_files_and_adds_nothing(project, store_ip):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    Path("data").mkdir()
    Path("data/raw.csv").write_text("x\n")
    run(ip, WRITE_STEP)
    assert ran("make") == 1
    assert not list(project.rglob("*.dvc")) and not (project / ".dvc").exists()
    (executed,) = [r for r in step_runs("make") if r.data.tags["cellops.state"] == "executed"]
    files_out = json.loads(executed.data.tags["cellops.files_out"])
    assert files_out["data/clean.csv"] == md5(project / "data" / "clean.csv")


@sqlite_only
def test_track_file_versions_a_file_from_plain_code_and_inside_a_step(dvc_project, store_ip):
    import cellops

    ip = store_ip
    tracked = cellops.track_file("data/raw.csv", role="input")
    assert tracked.path == "data/raw.csv" and tracked.dvc_file == "data/raw.csv.dvc"
    assert tracked.md5 == md5(dvc_project / "data" / "raw.csv")
    assert dvc_file_md5(dvc_project / "data" / "raw.csv.dvc") == tracked.md5

    run(ip, "import cellops\nfrom pathlib import Path")
    run(ip, "%%step report\nPath('report.txt').write_text('r')\ncellops.track_file('report.txt')")
    session, client = client_for_session()
    on_session = client.get_run(session.run.run_id).data.tags
    assert json.loads(on_session["cellops.files_in"]) == {"data/raw.csv": tracked.md5}
    (step,) = step_runs("report")
    assert json.loads(step.data.tags["cellops.files_out"]) == {
        "report.txt": md5(dvc_project / "report.txt")
    }
    assert datasets(step.info.run_id)["report.txt"][1] == "output"
    assert (dvc_project / "report.txt.dvc").is_file()

    with pytest.raises(cellops.CellopsUsageError, match="does not exist"):
        cellops.track_file("nope.csv")
    with pytest.raises(cellops.CellopsUsageError, match="outside the project"):
        cellops.track_file(dvc_project.parent / "remote")


def test_track_file_without_git_says_run_cellops_init(tmp_path, monkeypatch):
    import cellops
    from cellops.store.session import end_session

    (tmp_path / "cellops.toml").write_text("")
    (tmp_path / "f.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    end_session()
    try:
        with pytest.raises(cellops.CellopsUsageError, match="run `cellops init`"):
            cellops.track_file("f.txt")
    finally:
        end_session()


# -- %cellops lineage ------------------------------------------------------------------------------


@pytest.fixture
def pipeline_notebook(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pipeline notebook in the project, as the notebook the shell runs."""
    path = project / "pipeline.ipynb"
    path.write_text(fixture_path("data", "pipeline.ipynb").read_text())
    monkeypatch.setenv("CELLOPS_NOTEBOOK", str(path))
    return path


def svg_texts(svg: str) -> list[str]:
    tree = ET.fromstring(svg)
    return [el.text for el in tree.iter("{http://www.w3.org/2000/svg}text") if el.text]


@sqlite_only
def test_lineage_magic_draws_the_notebook_step_graph(pipeline_notebook, store_ip):
    ip = store_ip
    Path("data").mkdir()
    Path("data/raw.csv").write_text("id\n1\n2\n3\n4\n")
    cells = json.loads(pipeline_notebook.read_text())["cells"]
    for cell in cells[:3]:  # up to step `clean`
        run(ip, "".join(cell["source"]))
    picture = ip.run_line_magic("cellops", "lineage")
    texts = svg_texts(picture.data)
    for name in ("clean", "summarize", "tag", "data/raw.csv", "data/clean.csv",
                 "out/summary.txt", "out/label.txt", "n_rows", "label"):  # fmt: skip
        assert name in texts, name
    tree = ET.fromstring(picture.data)
    states = {
        g.find("{http://www.w3.org/2000/svg}title").text
        for g in tree.iter("{http://www.w3.org/2000/svg}g")
    }
    assert "step clean (fresh)" in states and "step tag (never run)" in states
    edges = [p for p in tree.iter("{http://www.w3.org/2000/svg}path") if p.get("marker-end")]
    assert len(edges) == 7  # n_rows, raw -> clean -> clean.csv -> summarize -> summary; label ...


@sqlite_only
def test_lineage_magic_without_a_notebook_file_uses_the_recorded_steps(project, store_ip):
    ip = store_ip
    run(ip, "from pathlib import Path\nPath('a.txt').write_text('a')")
    run(ip, "%%step load --files-in a.txt\ntext = Path('a.txt').read_text()")
    run(ip, "%%step shout --files-out b.txt\nPath('b.txt').write_text(text.upper())")
    current_session().tracker.flush()
    texts = svg_texts(ip.run_line_magic("cellops", "lineage").data)
    assert {"load", "shout", "a.txt", "b.txt", "text"} <= set(texts)
