"""`cellops ui` and the links into MLflow's UI: the link builders, the base URL they point at,
the target a person names (notebook, run, model), and, end to end, a real `mlflow ui` started
by `cellops ui` on recorded steps, its printed link loaded in headless Chromium.

MLflow 3's UI opens an experiment on its GenAI overview, where cellops' runs do not show: every
link lands on the "Model training" pages (`?workflowType=machine_learning`)."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from cellops._fs import read_json
from cellops.cli import cli
from cellops.config import load_settings
from cellops.store import links as ui_links
from cellops.store.links import UiLinks, note_running_ui, ui_base_url, ui_state_file

from .browser import launch_chromium
from .conftest import REPO, run

CELLOPS = Path(sys.executable).with_name("cellops")
ML = "workflowType=machine_learning"
NOTEBOOK = "notebooks/analysis.ipynb"
STEPS = ("%%step load_data\nrows = list(range(10))", "%%step train_model\nmodel = sum(rows)")
sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


# -- the routes -----------------------------------------------------------------------------------


def test_routes_land_on_the_model_training_pages() -> None:
    assert ui_links.experiment_runs_route("7") == f"#/experiments/7/runs?{ML}"
    assert ui_links.run_route("ab" * 16, "7") == f"#/experiments/7/runs/{'ab' * 16}?{ML}"
    assert ui_links.model_version_route("fraud", 3) == f"#/models/fraud/versions/3?{ML}"
    assert ui_links.model_route("fraud") == f"#/models/fraud?{ML}"
    assert ui_links.experiments_route() == f"#/experiments?{ML}"


def test_route_parts_and_search_are_encoded() -> None:
    route = ui_links.experiment_runs_route("3", search="tags.`cellops.model` = 'fraud'")
    assert route == (
        f"#/experiments/3/runs?{ML}&searchFilter=tags.%60cellops.model%60%20%3D%20%27fraud%27"
    )
    assert ui_links.model_version_route("a b/c", "1") == f"#/models/a%20b%2Fc/versions/1?{ML}"
    assert ui_links.page_url("http://h:5000/", "#/x") == "http://h:5000/#/x"
    assert ui_links.page_url("https://h/mlflow", "#/x") == "https://h/mlflow/#/x"


# -- where links point ----------------------------------------------------------------------------


def test_no_ui_known_gives_the_command_that_opens_the_page(project: Path) -> None:
    settings = load_settings()
    assert ui_base_url(settings) is None
    links = UiLinks(settings)
    page = links.notebook_runs(NOTEBOOK, "4")
    assert page.url is None
    assert str(page) == f"cellops ui {NOTEBOOK}"
    assert page.sentence() == f"`cellops ui {NOTEBOOK}` opens the runs of {NOTEBOOK} in MLflow's UI"
    assert str(links.model_version("fraud", 2)) == "cellops ui models:/fraud/2"
    assert str(links.run("f" * 32, "4")) == f"cellops ui {'f' * 32}"
    assert links.experiments().command == "cellops ui"


def test_a_tracking_server_serves_its_own_ui(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com/")
    links = UiLinks(load_settings())
    assert links.base == "https://mlflow.example.com"
    assert links.run("e" * 32, "12").url == (
        f"https://mlflow.example.com/#/experiments/12/runs/{'e' * 32}?{ML}"
    )


def test_the_setting_wins_from_the_file_then_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'mlflow_ui_url = "http://team-ui:5000/"\n')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert ui_base_url(load_settings()) == "http://team-ui:5000"
    monkeypatch.setenv("CELLOPS_MLFLOW_UI_URL", "http://env-ui:5001")
    page = UiLinks(load_settings()).model_version("fraud", 3)
    assert page.url == f"http://env-ui:5001/#/models/fraud/versions/3?{ML}"


def test_a_running_cellops_ui_is_found_while_its_process_lives(project: Path) -> None:
    settings = load_settings()
    note_running_ui(settings, "http://127.0.0.1:5555")  # this process stands in for the server
    assert ui_base_url(settings) == "http://127.0.0.1:5555"
    other_store = load_settings(tracking_uri="sqlite:////elsewhere/mlflow.db")
    assert ui_base_url(other_store) is None  # the note is about another store
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    note_running_ui(settings, "http://127.0.0.1:5556", pid=int(done.stdout))  # gone now
    assert ui_base_url(settings) is None
    ui_links.forget_running_ui(settings, pid=int(done.stdout))
    assert not ui_state_file(settings).exists()


# -- targets and their mistakes, on the project's store -------------------------------------------


@sqlite_only
def test_targets_that_name_nothing_are_usage_errors(store: str, project: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    client.create_registered_model("fraud")
    (project / "empty.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    runner = CliRunner()
    cases = {
        "0" * 32: "`cellops steps NOTEBOOK` lists the run ids",
        "empty.ipynb": "no runs are recorded for empty.ipynb",
        "gone.ipynb": "(and there is no file gone.ipynb)",
        "models:/nothing": "there is no registered model 'nothing': `cellops models`",
        "models:/fraud/4": "model 'fraud' has no version 4: `cellops models fraud`",
        "models:/fraud@champion": "model 'fraud' has no alias @champion",
        "models:fraud": "is not a model URI",
        "banana": "is no notebook, run id or model",
    }
    for target, said in cases.items():
        result = runner.invoke(cli, ["ui", target, "--no-browser"])
        assert result.exit_code == 2, (target, result.output)
        assert said in result.output, (target, result.output)
        assert "Traceback" not in result.output
    assert not ui_state_file(load_settings()).exists()  # nothing was started
    assert not (project / ".cellops" / "ui.log").exists()


def test_a_busy_port_is_a_usage_error(project: Path) -> None:
    import socket

    from cellops.errors import CellopsUsageError
    from cellops.store.ui_server import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CellopsUsageError, match=f"port {port} is in use"):
            free_port(port)


@sqlite_only
def test_experiments_carry_the_kind_the_ui_reads(store: str) -> None:
    from mlflow.tracking import MlflowClient

    from cellops.monitoring.history import experiment_id as drift_experiment
    from cellops.store.session import ensure_experiment

    client, settings = MlflowClient(store), load_settings()
    kind = ui_links.EXPERIMENT_KIND_TAG
    made = ensure_experiment(client, settings, "notebooks/new")
    assert client.get_experiment(made).tags[kind] == "custom_model_development"
    older = client.create_experiment("notebooks/older")  # as cellops made them before
    assert ensure_experiment(client, settings, "notebooks/older") == older
    assert client.get_experiment(older).tags[kind] == "custom_model_development"
    theirs = client.create_experiment("notebooks/genai", tags={kind: "genai_development"})
    ensure_experiment(client, settings, "notebooks/genai")
    assert client.get_experiment(theirs).tags[kind] == "genai_development"  # left alone
    drift = drift_experiment(client, "fraud", create=True)
    assert client.get_experiment(drift).tags[kind] == "custom_model_development"


# -- every place that points a person at MLflow ---------------------------------------------------


@pytest.fixture
def recorded(store: str, monkeypatch: pytest.MonkeyPatch):
    """A job run and model `fraud` v1 (@champion, from that run) on the project's store, and
    the `RegistryStore` on it. ipywidgets' dummy comm stands in for a front end."""
    import comm
    from mlflow.tracking import MlflowClient

    from cellops.registry.store import EVENTS_EXPERIMENT, RegistryStore
    from cellops.store.session import ensure_experiment

    class DummyComm:  # ipywidgets' own test double (widgets/tests/utils.py)
        comm_id, kernel = "a-b-c-d", "Truthy"

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def open(self, *args: object, **kwargs: object) -> None:
            pass

        on_msg = send = close = open

    monkeypatch.setattr(comm, "create_comm", lambda *_, **__: DummyComm())
    client, settings = MlflowClient(store), load_settings()
    experiment = ensure_experiment(client, settings, "notebooks/retrain")
    ensure_experiment(client, settings, EVENTS_EXPERIMENT)
    job = client.create_run(experiment, tags={"cellops.kind": "job", "cellops.job": "j1"})
    client.create_registered_model("fraud")
    run_id = job.info.run_id
    client.create_model_version("fraud", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("fraud", "champion", "1")
    return RegistryStore(settings), experiment, run_id


def _places(registry) -> dict[str, str]:
    """What each place shows of MLflow: job summary, history, registry panel, dashboard."""
    from cellops.cli.jobs import describe_job
    from cellops.dashboards import data as dd
    from cellops.jobs.run import Attempt, JobResult
    from cellops.registry.audit import history_links
    from cellops.widgets.registry import RegistryPanel

    _, experiment, run_id = registry
    store = type(registry[0])(load_settings())  # settings read again: the environment changed
    notebook = Path("notebooks/retrain.ipynb").resolve()
    result = JobResult("j1", notebook, {}, [Attempt(1, run_id, "FINISHED", notebook)], Path("."))
    return {
        "job": describe_job(result),
        "history": "\n".join(history_links(store, "fraud")),
        "panel": _panel_link(RegistryPanel("fraud", store=store)),
        "dashboard versions": dd.link_html(dd.registry_view(store, "fraud").links[0]),
        "dashboard jobs": dd.link_html(dd.recent_jobs(store, "fraud")[0].mlflow),
    }


def _panel_link(panel) -> str:
    """What the panel shows of MLflow: for the model, then for version 1 once chosen."""
    before = panel.state()["mlflow"]
    panel.version.value = "1"
    return f"{before}\n{panel.state()['mlflow']}"


@sqlite_only
def test_each_place_gives_the_command_when_no_ui_is_known(recorded) -> None:
    _, _, run_id = recorded
    shown = _places(recorded)
    assert f"MLflow: `cellops ui {run_id}` opens run {run_id} in MLflow's UI" in shown["job"]
    assert (
        shown["history"] == "in MLflow: `cellops ui models:/fraud` opens model fraud in MLflow's UI"
    )
    assert shown["panel"].splitlines() == [
        "<code>cellops ui models:/fraud</code> opens model fraud in MLflow",
        "<code>cellops ui models:/fraud/1</code> opens fraud v1 in MLflow",
    ]
    assert shown["dashboard versions"] == (
        '<code class="cellops-mlflow">cellops ui models:/fraud/1</code>'
    )
    assert shown["dashboard jobs"] == f'<code class="cellops-mlflow">cellops ui {run_id}</code>'


@sqlite_only
def test_each_place_links_into_a_known_ui(recorded, monkeypatch: pytest.MonkeyPatch) -> None:
    from cellops.registry.store import EVENTS_EXPERIMENT

    registry, experiment, run_id = recorded
    monkeypatch.setenv("CELLOPS_MLFLOW_UI_URL", "http://ui.test:5000")
    run_url = f"http://ui.test:5000/#/experiments/{experiment}/runs/{run_id}?{ML}"
    version_url = f"http://ui.test:5000/#/models/fraud/versions/1?{ML}"
    events = registry.call(lambda c: c.get_experiment_by_name(EVENTS_EXPERIMENT)).experiment_id
    shown = _places(recorded)
    assert f"MLflow: {run_url}" in shown["job"]
    assert shown["history"].splitlines() == [
        f"in MLflow: http://ui.test:5000/#/models/fraud?{ML}",
        f"its events: http://ui.test:5000/#/experiments/{events}/runs?{ML}"
        "&searchFilter=tags.%60cellops.model%60%20%3D%20%27fraud%27",
    ]
    model_link, version_link = shown["panel"].splitlines()
    assert f'<a href="http://ui.test:5000/#/models/fraud?{ML}" target="_blank"' in model_link
    assert f'<a href="{version_url}" target="_blank"' in version_link
    assert f'href="{version_url}"' in shown["dashboard versions"]
    assert f'href="{run_url}"' in shown["dashboard jobs"]


# -- a tracking server: no server started, only the link ------------------------------------------


def _server_run(uri: str) -> tuple[str, str, str]:
    """A session run with a step, and a model version with @champion, on the server."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(f"remote-{uuid.uuid4().hex[:8]}")
    session = client.create_run(experiment, run_name="remote session")
    client.create_run(experiment, run_name="step", tags={"mlflow.parentRunId": session.info.run_id})
    name = f"m{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(
        name, f"runs:/{session.info.run_id}/model", run_id=session.info.run_id
    )
    client.set_registered_model_alias(name, "champion", version.version)
    return experiment, session.info.run_id, name


def test_on_a_tracking_server_only_the_link_is_printed(
    project: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    experiment, run_id, model = _server_run(mlflow_server)
    runner = CliRunner()
    result = runner.invoke(cli, ["ui", run_id, "--no-browser"])  # returns: nothing serves here
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        f"{mlflow_server}/#/experiments/{experiment}/runs/{run_id}?{ML}"
    )
    result = runner.invoke(cli, ["ui", f"models:/{model}@champion", "--no-browser"])
    assert result.stdout.splitlines()[0] == f"{mlflow_server}/#/models/{model}/versions/1?{ML}"
    result = runner.invoke(cli, ["ui", "--no-browser"])  # the latest run's experiment first
    assert result.stdout.splitlines()[0] == f"{mlflow_server}/#/experiments/{experiment}/runs?{ML}"
    assert not ui_state_file(load_settings()).exists()
    assert not (project / ".cellops" / "ui.log").exists()  # no `mlflow ui` was started
    result = runner.invoke(cli, ["ui", "1" * 32, "--no-browser"])
    assert result.exit_code == 2 and f"no run {'1' * 32} in {mlflow_server}" in result.output


def test_without_no_browser_the_link_is_opened(
    project: Path, mlflow_server: str, tmp_path: Path
) -> None:
    """A real `cellops ui` process, its browser a script that writes down what it was given
    (Python's `webbrowser` runs `$BROWSER`)."""
    experiment, run_id, _ = _server_run(mlflow_server)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "BROWSER": str(browser)}
    done = subprocess.run([str(CELLOPS), "ui", run_id], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    link = f"{mlflow_server}/#/experiments/{experiment}/runs/{run_id}?{ML}"
    assert done.stdout.splitlines()[0] == link
    assert opened.read_text() == link


def test_an_unreachable_tracking_server_is_said(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    result = CliRunner().invoke(cli, ["ui", "a" * 32, "--no-browser"])
    assert result.exit_code == 3  # it could not run (not a "no")
    assert f"cannot reach the tracking store at http://127.0.0.1:{port}" in result.output


# -- end to end: a real `mlflow ui` and a real browser --------------------------------------------


@pytest.fixture
def notebook_ip(project: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """`ip` as the kernel of notebooks/analysis.ipynb (a file holding the same step cells)."""
    path = project / NOTEBOOK
    path.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext cellops")]
    nb.cells += [nbformat.v4.new_code_cell(code) for code in STEPS]
    path.write_text(nbformat.writes(nb))
    monkeypatch.setenv("CELLOPS_NOTEBOOK", str(path))
    return request.getfixturevalue("ip")


def _first_line(process: subprocess.Popen, timeout: float = 180.0) -> str:
    """The first line `process` prints (the link, once the server answers)."""
    chooser = selectors.DefaultSelector()
    chooser.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chooser.select(timeout=1.0):
            line = process.stdout.readline()
            if line:
                return line.strip()
        if process.poll() is not None:
            break
    raise AssertionError(f"cellops ui printed no link:\n{process.stderr.read()}")


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_cellops_ui_opens_the_recorded_runs(
    notebook_ip, project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cellops.store import session as session_module

    for code in STEPS:
        run(notebook_ip, code)
    capsys.readouterr()
    notebook_ip.run_line_magic("cellops", "status")
    said = capsys.readouterr().out  # no UI yet: how to open these runs
    assert f"MLflow: `cellops ui {NOTEBOOK}` opens the runs of {NOTEBOOK}" in said
    session = session_module.current_session()
    experiment, session_run = session.run.experiment_id, session.run.run_id
    session_module.end_session()

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "BROWSER")}
    process = subprocess.Popen(
        [str(CELLOPS), "ui", NOTEBOOK, "--no-browser"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    server_pid = None
    try:
        link = _first_line(process)
        base, _, route = link.partition("/#")
        assert base.startswith("http://127.0.0.1:")
        assert route == f"/experiments/{experiment}/runs?{ML}"
        settings = load_settings()
        server_pid = read_json(ui_state_file(settings))["pid"]
        # while it runs, the other commands link into it instead of starting another
        assert ui_base_url(settings) == base
        shown = CliRunner().invoke(cli, ["ui", session_run, "--no-browser"])
        run_link = f"{base}/#/experiments/{experiment}/runs/{session_run}?{ML}"
        assert shown.exit_code == 0 and shown.stdout.splitlines()[0] == run_link
        assert f"MLflow's UI for this store: {base}" in CliRunner().invoke(cli, ["store"]).output
        _look_in_the_browser(link, run_link, tmp_path)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            if server_pid and _group_alive(server_pid):
                os.killpg(server_pid, signal.SIGKILL)
                raise AssertionError("cellops ui left mlflow ui running")
    assert code == 0, process.stderr.read()
    assert server_pid is not None and not _group_alive(server_pid)
    assert not ui_state_file(load_settings()).exists()


def _look_in_the_browser(link: str, run_link: str, tmp_path: Path) -> None:
    """The run table shows the session run; expanded, its steps by name. The run's page, its
    child runs. A screenshot of the table goes to reports/test-artifacts/."""
    from playwright.sync_api import sync_playwright

    session_name = "analysis session"
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.goto(link)
            names = page.locator("[role=gridcell][col-id='attributes.`Run Name`']")
            names.filter(has_text=session_name).wait_for(timeout=90_000)
            assert "workflowType=machine_learning" in page.url and "/runs" in page.url
            row = page.locator(".ag-row", has_text=session_name)
            row.locator("button[data-component-id*=runnamecellrenderer]").click()  # expand
            names.filter(has_text="train_model").wait_for(timeout=30_000)
            shown = [text.split("\n")[-1] for text in names.all_inner_texts()]
            assert sorted(shown) == sorted([session_name, "load_data", "train_model"])
            assert "Traces: 0" not in page.inner_text("body")  # not the GenAI overview
            shot = tmp_path / "mlflow-ui-runs.png"
            page.screenshot(path=str(shot))
            artifacts = REPO / "reports" / "test-artifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, artifacts / "mlflow-ui-runs.png")
            assert shot.stat().st_size > 10_000

            page.goto(run_link)  # the session run's page lists its steps as child runs
            for step in ("load_data", "train_model"):
                page.get_by_role("link", name=step, exact=True).wait_for(timeout=60_000)
            assert page.get_by_text("Child runs", exact=True).is_visible()
            assert session_name in page.inner_text("body")
        finally:
            browser.close()
