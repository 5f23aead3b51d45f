"""The drift dashboard: served by a real Voila on loopback and looked at in headless Chromium,
exported to static HTML with nbclient, and its data functions on a real MLflow store.

One project for the module: two registered models (one promoted, one without checks), three
drift checks of known shares recorded as the monitor records them, a model whose only check
failed before its result was written, and two job runs.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from cellops.config import load_settings
from cellops.dashboards import data as dd
from cellops.dashboards.server import (
    APP_MODULE,
    Limits,
    browser_page,
    dashboard_url,
    free_port,
    new_token,
    snapshot_path,
    start_server,
    voila_command,
    voila_environment,
    wait_ready,
)
from cellops.monitoring.result import ColumnDrift, DriftResult
from cellops.store import session as session_module

from .conftest import REPO

FEATURES = [f"x{i}" for i in range(6)]
# The three checks of `fraud`: which columns drifted, so the shares are 0, 1/3 and 1/2.
DRIFTED = [[], ["x0", "x1"], ["x0", "x1", "x2"]]
LATEST_SCORES = {"x0": 0.0012, "x1": 0.0034, "x2": 0.0216, "x3": 0.41, "x4": 0.77}
JOB_OK, JOB_FAILED = "retrain-20250101-120000-ab12", "retrain-20250102-120000-cd34"
PAGE_VIEWS = 2  # page loads in this module: each takes one pre-heated kernel
LIMITS = Limits(max_kernels=4, cull_seconds=600, refresh_seconds=1)
MARKER = 123.456789012  # a raw value of the checked data: must never reach a page


@dataclass(frozen=True)
class Served:
    """The module's Voila: its port and the token its pages ask for."""

    port: int
    token: str

    def url(self, model: str | None = None) -> str:
        return dashboard_url(self.port, model, self.token)


def _result(drifted: list[str], scores: dict[str, float] | None = None) -> DriftResult:
    columns = []
    for name in FEATURES:
        if name == "x5" and scores is not None:  # the latest check: x5 arrived empty
            columns.append(
                ColumnDrift(
                    name,
                    "numeric",
                    "ks",
                    float("nan"),
                    0.05,
                    False,
                    "all values missing in current",
                )  # fmt: skip
            )
            continue
        score = (scores or {}).get(name, 0.001 if name in drifted else 0.5)
        columns.append(ColumnDrift(name, "numeric", "ks", score, 0.05, name in drifted))
    return DriftResult(columns, 0.5, "native", 1000, 400)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(1000, 6)), columns=FEATURES)
    y = (train["x0"] + train["x1"] > 0).astype(int).to_numpy()
    current = pd.DataFrame(rng.normal(size=(400, 6)), columns=FEATURES)
    current["x0"] += 2.0
    current.loc[0, "x0"] = MARKER
    current["x5"] = np.nan
    return train, current, y


def _build(root: Path) -> None:
    """Register, promote, check: everything the dashboard reads, written by cellops itself."""
    from sklearn.linear_model import LogisticRegression

    import cellops
    from cellops.monitoring.history import record_check
    from cellops.monitoring.profile import build_profile
    from cellops.registry.store import open_store

    train, current, y = _frames()
    model = LogisticRegression().fit(train, y)
    cellops.register_model(model, "fraud", train.head(50), reference=train)
    cellops.promote("fraud", "1", gate=["auc >= 0.5"], holdout=(train[:200], y[:200]),
                    latency_samples=3)  # fmt: skip
    os.environ["CELLOPS_JOB_ID"] = JOB_OK
    try:
        cellops.register_model(model, "fraud", train.head(50), reference=train)
    finally:
        del os.environ["CELLOPS_JOB_ID"]
    cellops.register_model(model, "quiet", train.head(50), reference=train)
    store = open_store()
    profile = build_profile(current)
    for i, drifted in enumerate(DRIFTED):
        scores = LATEST_SCORES if i == len(DRIFTED) - 1 else None
        record_check(store, "fraud", "1", _result(drifted, scores), current=f"data/day{i}.parquet",
                     data_hash=f"h{i}", current_profile=profile, consecutive=3)  # fmt: skip
    session_module.end_session()
    client = MlflowClient(load_settings().tracking_uri)
    # a check that failed before its result was written: tags only, no artifacts
    experiment = client.create_experiment("cellops-drift/broken")
    run = client.create_run(
        experiment,
        tags={"cellops.kind": "drift-check", "cellops.model": "broken",
              "cellops.model_version": "1", "cellops.monitoring.dataset_drift": "false"},
    )  # fmt: skip
    client.set_terminated(run.info.run_id, "FAILED")
    jobs = client.create_experiment("retrain")
    for job, status in ((JOB_OK, "succeeded"), (JOB_FAILED, "failed")):
        tags = {"cellops.kind": "job", "cellops.job": job, "cellops.job.status": status,
                "cellops.notebook": "notebooks/retrain.ipynb"}  # fmt: skip
        if status == "failed":
            tags["cellops.job.error"] = "cell 3: ValueError: no rows"
        job_run = client.create_run(jobs, tags=tags)
        client.set_terminated(
            job_run.info.run_id, "FINISHED" if status == "succeeded" else "FAILED"
        )


@pytest.fixture(scope="module")
def dash_root(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Path:
    """An empty project with its store: Voila starts on it while the records are written."""
    root = tmp_path_factory.mktemp("dashboard") / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.cellops]\n')
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    db = root / ".cellops" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(empty_mlflow_db, db)
    return root


@pytest.fixture(scope="module")
def voila(dash_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real (bounded) Voila on 127.0.0.1 serving the dashboard with pre-heated kernels, as
    `cellops dashboard` runs it (with a token); one kernel per page view of this module is
    heated at start."""
    port, token = free_port(0), new_token()
    log = open(tmp_path_factory.mktemp("voila") / "voila.log", "w")  # noqa: SIM115
    process = start_server(
        load_settings(dash_root), port, preheat=True, pool_size=PAGE_VIEWS,
        notebook=REPO / "notebooks" / "drift_dashboard.ipynb", token=token, stdout=log,
        stderr=subprocess.STDOUT, limits=LIMITS,
    )  # fmt: skip
    try:
        yield process, Served(port, token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def dash_project(dash_root: Path, voila):
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER"):
            mp.delenv(name, raising=False)
        mp.chdir(dash_root)
        _build(dash_root)
        yield dash_root
        session_module.end_session()


@pytest.fixture(scope="module")
def export_run(dash_project: Path):
    """`cellops dashboard --export` as a subprocess, running while the browser tests do."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("cellops")), "dashboard", "--export", "--model",
         "fraud"], cwd=dash_project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def server(dash_project: Path, voila, export_run) -> Served:
    """The module's Voila, once its shared snapshot holds everything `_build` recorded."""
    import json
    import time

    process, served = voila
    built = time.time()  # a snapshot read after this holds every record
    wait_ready(process, served.port, snapshot=snapshot_path(load_settings(dash_project),
                                                            served.port))  # fmt: skip
    status = f"http://127.0.0.1:{served.port}/cellops/status?token={served.token}"
    deadline = time.monotonic() + 120
    while (json.loads(_get(status)[2]).get("snapshot_built") or 0) < built:
        assert time.monotonic() < deadline, "the refresher never read the store again"
        time.sleep(0.2)
    return served


@pytest.fixture
def page(browser, server):
    """A fresh page; every request it made to a host other than the server is collected."""
    context = browser.new_context(viewport={"width": 1300, "height": 2600})
    page = context.new_page()
    page.outside = []
    page.on("request", lambda r: None if "127.0.0.1" in r.url or r.url.startswith("data:")
            else page.outside.append(r.url))  # fmt: skip
    yield page
    context.close()


def _open(page, server: Served, model: str | None) -> None:
    page.goto(server.url(model), wait_until="commit")
    page.wait_for_selector(".cellops-dash", timeout=90_000)
    page.wait_for_selector(".cellops-model select", timeout=30_000)


def _selected_model(page) -> str:
    return page.eval_on_selector(".cellops-model select", "s => s.value")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """A plain GET, redirects followed: (status, final URL, body)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.url, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, url, error.read().decode(errors="replace")


def _kernel_id(page) -> str:
    """The kernel Voila gave this page (its page config names it)."""
    found = re.search(r'"kernelId": "([0-9a-f-]{36})"', page.content())
    assert found, "no kernelId in the page"
    return found.group(1)


def test_page_shows_the_recorded_history(page, server, tmp_path: Path) -> None:
    _open(page, server, "fraud")
    chart = page.wait_for_selector(".cellops-share-chart svg", timeout=30_000)
    assert _selected_model(page) == "fraud"
    # the first page with ?token= left jupyter_server's login cookie for the widgets' websocket
    cookies = [c["name"] for c in page.context.cookies() if c["domain"] == "127.0.0.1"]
    assert f"username-127-0-0-1-{server.port}" in cookies
    # this page's kernel runs, and answers only with the token
    kernel = f"http://127.0.0.1:{server.port}/api/kernels/{_kernel_id(page)}"
    assert _get(kernel)[0] == 403
    assert _get(kernel, {"Authorization": "token nope"})[0] == 403
    assert _get(f"{kernel}?token={server.token}")[0] == 200
    # the chart: one marker per check, at the recorded shares, labelled with them
    shares = page.get_attribute(".cellops-share-chart", "data-shares")
    assert shares == "0.0000,0.3333,0.5000"
    assert chart.eval_on_selector_all("#drift-share-line use", "m => m.length") == 3
    labels = page.inner_text(".cellops-share-chart")
    assert all(text in labels for text in ("0.00", "0.33", "0.50"))
    # the latest check, per column, drifted first
    table = page.inner_text(".cellops-columns")
    for column, score in LATEST_SCORES.items():
        assert column in table and f"{score:.4g}" in table
    first_rows = page.eval_on_selector_all(
        ".cellops-columns tbody tr", "rows => rows.slice(0, 3).map(r => r.cells[0].innerText)"
    )
    assert first_rows == ["x0", "x1", "x2"]
    assert "all values missing in current" in table
    assert "DRIFT: 3 of 6 columns drifted" in page.inner_text(".cellops-drift")
    # reference vs current of the first column, from the two stored profiles
    assert page.get_attribute(".cellops-distribution", "data-column") == "x0"
    assert page.query_selector(".cellops-distribution svg") is not None
    # registry and jobs
    registry = page.inner_text(".cellops-registry")
    assert "@champion = v1" in registry and "@challenger = v2" in registry
    assert "last promotion" in registry and "promote v1 promoted" in registry
    jobs = page.inner_text(".cellops-jobs")
    assert JOB_OK in jobs and "succeeded" in jobs and "registered v2" in jobs
    assert JOB_FAILED in jobs and "failed: cell 3: ValueError: no rows" in jobs
    assert str(MARKER) not in page.content()
    assert page.outside == []  # nothing fetched from a CDN
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    artifacts = REPO / "reports" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, artifacts / "dashboard.png")
    assert shot.stat().st_size > 10_000

    # choosing the all-missing column redraws the distribution with why there is nothing
    page.select_option(".cellops-column select", "x5")
    page.wait_for_selector('.cellops-distribution[data-column="x5"]', timeout=30_000)
    assert "all values missing in current" in page.inner_text(".cellops-distribution")


def test_query_and_dropdown_choose_the_model(page, server) -> None:
    _open(page, server, "quiet")
    assert _selected_model(page) == "quiet"
    message = page.wait_for_selector(".cellops-empty", timeout=30_000).inner_text()
    assert message == "no drift checks yet: run cellops drift --model quiet --current PATH"
    assert "@challenger = v1" in page.inner_text(".cellops-registry")
    assert page.query_selector(".cellops-share-chart") is None

    # a model whose only check failed before its result was written: said, not a crash
    page.select_option(".cellops-model select", "broken")
    page.wait_for_function(
        "() => document.querySelector('.cellops-drift')?.innerText.includes('could not be read')"
    )
    assert "latest check" in page.inner_text(".cellops-drift")
    assert "not a registered model" in page.inner_text(".cellops-registry")

    page.select_option(".cellops-model select", "fraud")
    page.wait_for_selector(".cellops-share-chart svg", timeout=30_000)
    assert page.query_selector(".cellops-empty") is None
    assert page.outside == []


@pytest.mark.slow
def test_without_the_token_nothing_answers(server: Served) -> None:
    base = f"http://127.0.0.1:{server.port}"
    for url in (f"{base}/", dashboard_url(server.port, "fraud"),
                dashboard_url(server.port, "fraud", "x" + server.token)):  # fmt: skip
        status, final, body = _get(url)
        assert status == 200 and final.startswith(f"{base}/login?next="), (url, final)
        assert 'name="password"' in body  # the login page, asking for the token
        assert "new_password" not in body  # and not offering to write a password into ~/.jupyter
        assert "widget-view+json" not in body and "kernelId" not in body
    kernel = f"{base}/api/kernels/{uuid.uuid4()}"
    assert _get(kernel)[0] == 403
    assert _get(f"{kernel}/channels")[0] == 403
    assert _get(f"{kernel}?token=x{server.token}")[0] == 403
    # the token is what opens it (404: a kernel of that id does not exist)
    assert _get(f"{kernel}?token={server.token}")[0] == 404
    assert _get(kernel, {"Authorization": f"token {server.token}"})[0] == 404


def _line_starting(process: subprocess.Popen, prefix: str, timeout: float = 180) -> str:
    """The first line of `process`'s stdout that starts with `prefix`."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen = []
    while True:
        line = lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"no line starting {prefix!r} in {''.join(seen)!r}")
        if line.startswith(prefix):
            return line
        seen.append(line)


def _command_lines(pid: int) -> dict[int, str]:
    """The command line of `pid` and of each of its descendants (Linux /proc), by process id."""
    found = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            cmdline = Path(f"/proc/{current}/cmdline").read_bytes()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        found[current] = cmdline.replace(b"\0", b" ").decode()
        todo += [int(child) for child in children]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("no_token", [False, True], ids=["token", "no-token"])
def test_cli_serves_the_url_it_prints(dash_project: Path, tmp_path: Path, no_token: bool) -> None:
    port = free_port(0)
    args = [str(Path(sys.executable).with_name("cellops")), "dashboard", "--no-browser",
            "--no-preheat", "--port", str(port), "--model", "fraud"]  # fmt: skip
    if no_token:
        args.append("--no-token")
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        process = subprocess.Popen(
            args, cwd=dash_project, stdout=subprocess.PIPE, stderr=err, text=True
        )
    try:
        url = _line_starting(process, "drift dashboard: ").split()[2]
        kernel = f"http://127.0.0.1:{port}/api/kernels/{uuid.uuid4()}"
        if no_token:
            assert url == f"http://127.0.0.1:{port}/?model=fraud"
            assert "any user of this machine can open the dashboard" in errors.read_text()
            assert _get(kernel)[0] == 404  # nothing asked for
        else:
            found = re.fullmatch(
                rf"http://127\.0\.0\.1:{port}/\?token=([\w-]{{43}})&model=fraud", url
            )
            assert found, url
            assert "without a token" not in errors.read_text()
            assert _get(kernel)[0] == 403
            login = _get(f"http://127.0.0.1:{port}/?model=fraud")[1]
            assert login.startswith(f"http://127.0.0.1:{port}/login?next=")
            assert _get(kernel, {"Authorization": f"token {found.group(1)}"})[0] == 404
        status, _, body = _get(url)  # the printed URL opens the dashboard, run to its end
        assert status == 200 and "widget-view+json" in body
        commands = _command_lines(process.pid)
        voila = [pid for pid, command in commands.items() if f"-m {APP_MODULE}" in command]
        assert voila and any("ipykernel" in command for command in commands.values())
        if not no_token:  # the token is on no command line that `ps` shows other users
            assert all(found.group(1) not in c for c in commands.values()), commands
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0
    assert not Path(f"/proc/{voila[0]}").exists()  # a TERM (as Ctrl-C) stops Voila too


@pytest.mark.slow
def test_token_url_environment_and_browser_page(dash_root: Path, monkeypatch) -> None:
    assert dashboard_url(8866) == "http://127.0.0.1:8866/"
    assert dashboard_url(8866, "fraud") == "http://127.0.0.1:8866/?model=fraud"
    url = dashboard_url(8866, "a b&c", "T-_1")
    assert url == "http://127.0.0.1:8866/?token=T-_1&model=a+b%26c"
    assert dd.model_from_query(url.split("?", 1)[1]) == "a b&c"
    token = new_token()
    assert re.fullmatch(r"[\w-]{43}", token) and token != new_token()

    # a token of the calling shell is never the dashboard's, nor leaks into it
    monkeypatch.setenv("JUPYTER_TOKEN", "parent")
    monkeypatch.setenv("JUPYTER_TOKEN_FILE", "/somewhere")
    settings = load_settings(dash_root)
    env = voila_environment(settings, "fraud", token)
    assert env["JUPYTER_TOKEN"] == token and "JUPYTER_TOKEN_FILE" not in env
    assert not {"JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE"} & set(voila_environment(settings))
    notebook = REPO / "notebooks" / "drift_dashboard.ipynb"
    command = voila_command(notebook, 8866)
    assert "--token" in command and "--no-browser" in command
    assert "--token" not in voila_command(notebook, 8866, auth=False)
    assert command[1:3] == ["-m", "voila"]  # no limits: plain Voila, as the benchmark's baseline
    bounded = voila_command(notebook, 8866, pool_size=5, limits=Limits(2, 30, 5))
    assert bounded[1:3] == ["-m", APP_MODULE] and "--token" in bounded
    assert "--BoundedKernelManager.max_kernels=2" in bounded and "--pool_size=2" in bounded
    assert "--MappingKernelManager.cull_idle_timeout=30" in bounded
    assert "--DashboardVoila.refresh_seconds=5" in bounded
    with pytest.raises(ValueError, match="empty token"):
        start_server(settings, 8866, notebook=notebook, token="")

    page = browser_page(dashboard_url(8866, "fraud", token))
    try:
        assert stat.S_IMODE(page.stat().st_mode) == 0o600  # only its owner reads the token
        text = page.read_text()
        assert f"url=http://127.0.0.1:8866/?token={token}&amp;model=fraud" in text
    finally:
        page.unlink()


def test_static_export(dash_project: Path, export_run) -> None:
    from cellops.cli import cli

    output, _ = export_run.communicate(timeout=240)
    assert export_run.returncode == 0, output
    assert output.strip().endswith("wrote reports/drift_dashboard.html")
    page = (dash_project / "reports" / "drift_dashboard.html").read_text()
    fraud = page[page.index('data-model="fraud"') : page.index('data-model="quiet"')]
    assert 'data-shares="0.0000,0.3333,0.5000"' in fraud
    for column, score in LATEST_SCORES.items():
        assert f"<td>{column}</td>" in fraud and f"<td>{score:.4g}</td>" in fraud
    assert "no drift checks yet" not in fraud and "@champion = v1" in fraud
    assert fraud.count('class="cellops-distribution"') == len(FEATURES)  # every column's
    assert '<option value="fraud" selected>' in page  # --model: shown first
    assert "no drift checks yet: run cellops drift --model quiet" in page  # every model is in
    assert str(MARKER) not in page  # profiles and scores only, never a data row
    assert "import cellops" not in page and "dashboard_data" not in page  # no code cells
    assert "cdn" not in page.lower() and "<script src=" not in page  # opens offline

    wrong = CliRunner().invoke(cli, ["dashboard", "--export", "-o", "reports/x.txt"])
    assert wrong.exit_code == 2 and "the export is an HTML file" in wrong.output


def test_data_functions(dash_project: Path) -> None:
    store = dd.open_dashboard_store(load_settings(dash_project))
    assert dd.model_names(store) == ["broken", "fraud", "quiet"]
    assert dd.model_from_query("model=fraud&x=1") == "fraud"
    assert dd.model_from_query("") is None
    assert dd.choose_model(["a", "b"], "b") == ("b", "")
    assert dd.choose_model([], None) == (None, "")
    assert dd.choose_model(["a", "b"], "nosuch") == (
        "a",
        "there is no model named 'nosuch' (models: a, b)",
    )
    assert [round(p.share, 4) for p in dd.share_series(store, "fraud")] == [0.0, 0.3333, 0.5]
    latest = dd.latest_check(store, "fraud")
    reference, current, note = dd.load_profiles(store, "fraud", latest)
    assert note == ""
    shifted = dd.distribution("x0", reference, current)
    assert shifted.kind == "numeric" and len(shifted.labels) == 30
    assert sum(shifted.reference) == pytest.approx(1.0) and sum(shifted.current) == pytest.approx(1)
    # the current mass sits 2 standard deviations to the right of the reference's
    centers = np.array(shifted.edges[:-1]) + np.diff(shifted.edges) / 2
    assert np.dot(centers, shifted.current) - np.dot(centers, shifted.reference) > 1.5
    empty = dd.distribution("x5", reference, current)
    assert empty.missing_current == 1.0 and "all values missing in current" in empty.note
    assert dd.distribution("nope", reference, current).kind == "none"
    assert dd.latest_check(store, "quiet") is None
    assert dd.latest_check(store, "broken").result is None
