"""The dashboard under a crowd: a real bounded Voila on 127.0.0.1 hit by a burst of concurrent
views (threads), its kernel count read from its own kernel API all along; the line in front of
it; the kernels of closed views culled and the pool refilled; and `cellops dashboard --static`
served and looked at in headless Chromium, refreshing itself after a new drift check.

The project is the one tests/test_dashboard.py builds (`_build`): `fraud` with three checks of
shares 0, 1/3 and 1/2, `quiet` without checks, `broken` whose check failed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellops.config import load_settings
from cellops.dashboards.admission import LIVE, WAIT, Admission
from cellops.dashboards.server import (
    Limits,
    dashboard_url,
    free_port,
    new_token,
    snapshot_path,
    start_server,
    wait_ready,
)
from cellops.store import session as session_module

from .conftest import REPO
from .test_dashboard import (
    LATEST_SCORES,
    _build,
    _command_lines,
    _get,
    _line_starting,
    _result,
)

BOUND, POOL, CULL = 2, 1, 4  # kernels at once, pre-heated, seconds before a closed view goes
BURST = 8  # concurrent page views
FOLLOWED = 3  # views that wait in line until their live view (each waits for a cull)
SHARES = 'data-shares="0.0000,0.3333,0.5000"'


@pytest.fixture(scope="module")
def crowd_project(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path):
    root = tmp_path_factory.mktemp("burst") / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.cellops]\n')
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".cellops").mkdir()
    shutil.copyfile(empty_mlflow_db, root / ".cellops" / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER"):
            mp.delenv(name, raising=False)
        mp.chdir(root)
        _build(root)
        yield root
        session_module.end_session()


class Bounded:
    """The module's bounded Voila: its port, token, and its own answers about itself."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.base = f"http://127.0.0.1:{port}"

    def json(self, path: str) -> object:
        status, _, body = _get(f"{self.base}{path}", {"Authorization": f"token {self.token}"})
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def kernels(self) -> list[str]:
        return [k["id"] for k in self.json("/api/kernels")]


@pytest.fixture(scope="module")
def bounded(crowd_project: Path, tmp_path_factory: pytest.TempPathFactory):
    port, token = free_port(0), new_token()
    settings = load_settings(crowd_project)
    log = open(tmp_path_factory.mktemp("voila") / "voila.log", "w")  # noqa: SIM115
    process = start_server(
        settings, port, preheat=True, pool_size=POOL, token=token,
        notebook=REPO / "notebooks" / "drift_dashboard.ipynb",
        limits=Limits(BOUND, CULL, 2), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_ready(process, port, timeout=120, snapshot=snapshot_path(settings, port))
        server = Bounded(port, token)
        deadline = time.monotonic() + 120
        while server.json("/cellops/status")["free"] < POOL:  # the pool is heated
            assert time.monotonic() < deadline, "the pre-heated kernel never got ready"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    assert not snapshot_path(settings, port).exists()  # the server took its snapshot away


class KernelWatch(threading.Thread):
    """Reads /api/kernels every 0.1 s: the most kernels seen at once, and every id seen."""

    def __init__(self, server: Bounded):
        super().__init__(daemon=True)
        self.server, self.peak, self.seen = server, 0, set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                ids = self.server.kernels()
            except Exception:  # a read that failed on a loaded machine (reset, half a body), or
                time.sleep(0.1)  # the server stopped (a failed test): keep asking until told
                continue
            self.peak = max(self.peak, len(ids))
            self.seen.update(ids)
            time.sleep(0.1)


def _kernel_id(body: str) -> str | None:
    found = re.search(r'"kernelId": "([0-9a-f-]{36})"', body)
    return found.group(1) if found else None


def _ticket(body: str) -> str:
    found = re.search(r"cellops/queue\?ticket=([\w-]+)", body)
    assert found, "a waiting page without its ticket"
    return found.group(1)


def _place(body: str) -> int:
    return int(re.search(r'<b class="cellops-place">(\d+)</b>', body).group(1))


def test_a_burst_stays_under_the_bound(bounded: Bounded) -> None:
    base = bounded.base
    assert _get(f"{base}/api/kernels")[0] == 403  # the kernel list wants the token too
    assert _get(f"{base}/cellops/queue?ticket=x")[0] == 403
    pool = set(bounded.kernels())
    assert len(pool) == POOL
    watch = KernelWatch(bounded)
    watch.start()
    answers: dict[int, tuple[int, str]] = {}
    admitted: list[tuple[int, str]] = []  # (place, kernel) of views let in after waiting
    url = dashboard_url(bounded.port, "fraud", bounded.token)

    def view(i: int) -> None:
        """One person: opens the page; waiting, asks for the turn every 0.5 s as the page
        does (the first FOLLOWED in line), or closes the page (the others)."""
        status, _, body = _get(url)
        answers[i] = (status, body)
        if _kernel_id(body) or "cellops-place" not in body or _place(body) > FOLLOWED:
            return
        ticket, deadline = _ticket(body), time.monotonic() + 240
        while time.monotonic() < deadline:
            turn = bounded.json(f"/cellops/queue?ticket={ticket}")
            if turn["state"] == "go":
                assert turn["url"] == f"/?ticket={ticket}"
                status, _, body = _get(f"{base}{turn['url']}&model=fraud&token={bounded.token}")
                assert status == 200 and _kernel_id(body), body[:500]
                admitted.append((_place(answers[i][1]), _kernel_id(body)))
                return
            assert turn["state"] == "wait" and turn["place"] >= 1, turn
            time.sleep(0.5)

    threads = [threading.Thread(target=view, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # Then: every view was answered; those beyond the free kernels at once, from the shared
    # data, with their place in line
    assert sorted(answers) == list(range(BURST))
    assert all(status == 200 for status, _ in answers.values())
    live = [body for _, body in answers.values() if _kernel_id(body)]
    waiting = [body for _, body in answers.values() if not _kernel_id(body)]
    assert live and "widget-view+json" in live[0]
    assert len(live) + len(waiting) == BURST and len(waiting) >= BURST - BOUND
    for body in waiting:
        assert "cellops-queue" in body and "in line" in body
        assert SHARES in body and "@champion = v1" in body  # the recorded values, at once
        for column, score in LATEST_SCORES.items():
            assert f"<td>{column}</td>" in body and f"<td>{score:.4g}</td>" in body
    assert sorted(_place(b) for b in waiting) == list(range(1, len(waiting) + 1))
    # the first FOLLOWED in line got their live view in their order, each once a cull freed a
    # kernel; the others stopped asking (their page closed) and left the line
    assert [place for place, _ in admitted] == list(range(1, FOLLOWED + 1))
    view_kernels = {_kernel_id(b) for b in live} | {kernel for _, kernel in admitted}
    status = bounded.json("/cellops/status")
    assert status["peak"] <= BOUND and status["bound"] == BOUND

    # once nobody looks, the views' kernels go within the cull time; the pool refills itself
    deadline = time.monotonic() + CULL * 6 + 60
    while True:
        ids = set(bounded.kernels())
        if not ids & view_kernels and len(ids) == POOL:
            break
        assert time.monotonic() < deadline, f"kernels left: {ids & view_kernels}"
        time.sleep(0.5)
    watch.stop.set()
    watch.join()
    assert watch.peak <= BOUND, f"{watch.peak} kernels at once, bound {BOUND}"
    assert view_kernels <= watch.seen and len(watch.seen) > BOUND  # kernels came and went
    assert bounded.json("/cellops/status")["waiting"] == 0  # closed pages left the line


def test_the_line_is_first_come_first_served() -> None:
    now = [0.0]
    free = [0]
    line = Admission(lambda: free[0], claim_seconds=30, gone_seconds=10, clock=lambda: now[0])
    first, a = line.enter()
    second, b = line.enter()
    assert first == second == WAIT and line.place(a.id) == 1 and line.place(b.id) == 2
    free[0] = 1  # a kernel frees up: the head is let in, the next one moves up
    assert line.poll(b.id) == (WAIT, 1)
    assert line.poll(a.id) == ("go", 0)
    assert line.enter()[0] == WAIT  # a newcomer does not jump the line
    assert line.enter(a.id) == (LIVE, None)  # the head takes its turn with its ticket
    now[0] = 15.0  # b stopped asking (closed): it leaves the line
    assert line.poll(b.id) == ("unknown", 0)
    free[0] = 0
    assert line.enter(a.id)[0] == WAIT  # a used ticket is worth nothing
    # a turn nobody claims goes to the next in line after claim_seconds
    now[0] = 100.0
    _, c = line.enter()
    _, d = line.enter()
    free[0] = 1
    assert line.poll(c.id) == ("go", 0)
    for step in (8, 16, 24):
        now[0] = 100.0 + step
        assert line.poll(d.id) == (WAIT, 1)
    now[0] = 132.0
    assert line.poll(d.id) == ("go", 0)
    assert line.poll(c.id) == ("unknown", 0)


def test_bad_limits_are_usage_errors(crowd_project: Path, monkeypatch) -> None:
    from cellops.cli import cli

    runner = CliRunner()
    wrong = runner.invoke(cli, ["dashboard", "--max-kernels", "0", "--no-browser"])
    assert wrong.exit_code == 2 and "--max-kernels must be at least 1" in wrong.output
    monkeypatch.setenv("CELLOPS_DASHBOARD_MAX_KERNELS", "many")
    wrong = runner.invoke(cli, ["dashboard", "--no-browser"])
    assert wrong.exit_code == 2 and "CELLOPS_DASHBOARD_MAX_KERNELS is 'many'" in wrong.output
    monkeypatch.delenv("CELLOPS_DASHBOARD_MAX_KERNELS")
    wrong = runner.invoke(cli, ["dashboard", "--static", "--export"])
    assert wrong.exit_code == 2 and "choose one" in wrong.output
    shown = runner.invoke(cli, ["dashboard", "--help"])
    assert "--max-kernels N" in shown.output and "--refresh SECONDS" in shown.output
    assert "--cull-after SECONDS" in shown.output and "--static" in shown.output


def _visible(page, selector: str) -> str:
    return page.inner_text(f"section.cellops-page:not([hidden]) {selector}")


def test_static_mode_in_chromium(crowd_project: Path, browser, tmp_path: Path) -> None:
    port = free_port(0)
    args = [str(Path(sys.executable).with_name("cellops")), "dashboard", "--static",
            "--no-browser", "--port", str(port), "--model", "fraud", "--refresh", "1"]  # fmt: skip
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        process = subprocess.Popen(
            args, cwd=crowd_project, stdout=subprocess.PIPE, stderr=err, text=True
        )
    try:
        url = _line_starting(process, "drift dashboard (static, no kernels): ").split()[5]
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
        assert _get(f"http://127.0.0.1:{port}/?model=fraud")[0] == 403
        assert _get(f"http://127.0.0.1:{port}/?token=x{token}")[0] == 403
        # read-only: no kernel, no Voila in its process tree
        commands = _command_lines(process.pid)
        assert not any("ipykernel" in c or "voila" in c for c in commands.values()), commands

        context = browser.new_context(viewport={"width": 1300, "height": 2400})
        page = context.new_page()
        outside = []
        page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:"))
                else outside.append(r.url))  # fmt: skip
        page.goto(url)
        page.wait_for_selector('section.cellops-page[data-model="fraud"]:not([hidden])')
        assert page.eval_on_selector("#cellops-model", "s => s.value") == "fraud"
        chart = "section.cellops-page:not([hidden]) .cellops-share-chart"
        assert page.get_attribute(chart, "data-shares") == "0.0000,0.3333,0.5000"
        assert page.eval_on_selector_all(f"{chart} #drift-share-line use", "m => m.length") == 3
        table = _visible(page, ".cellops-columns")
        for column, score in LATEST_SCORES.items():
            assert column in table and f"{score:.4g}" in table
        assert "DRIFT: 3 of 6 columns drifted" in _visible(page, ".cellops-drift")
        assert "@champion = v1" in _visible(page, ".cellops-registry")
        assert "token" not in page.url  # the page took it off its address (a cookie holds it)

        # the column chooser, in plain JS
        shown = "section.cellops-page:not([hidden]) .cellops-distribution-box:not([hidden])"
        assert page.get_attribute(shown, "data-column") == "x0"
        page.select_option("section.cellops-page:not([hidden]) .cellops-column select", "x5")
        assert page.get_attribute(shown, "data-column") == "x5"
        assert "all values missing in current" in page.inner_text(shown)
        # the model chooser, and its choice in the address
        page.select_option("#cellops-model", "quiet")
        assert "no drift checks yet" in _visible(page, ".cellops-drift")
        assert "model=quiet" in page.url
        page.select_option("#cellops-model", "fraud")

        # a new drift check: the page shows it by itself, and the copy under reports/ too
        from cellops.monitoring.history import record_check
        from cellops.registry.store import open_store

        record_check(open_store(), "fraud", "1", _result(["x0", "x1", "x2", "x3", "x4"]),
                     current="data/day3.parquet", data_hash="h3")  # fmt: skip
        page.wait_for_function(
            f"() => document.querySelector('{chart}')?.dataset.shares.endsWith(',0.8333')",
            timeout=60_000,
        )
        export = (crowd_project / "reports" / "drift_dashboard.html").read_text()
        assert 'data-shares="0.0000,0.3333,0.5000,0.8333"' in export
        assert "<script src=" not in export and "cdn" not in export.lower()
        assert outside == []
        context.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0
