"""The JupyterLab panel's refresh against the drift dashboard's page, in one run.

One throw-away project: a notebook of `--steps` `%%step` cells run as a real `cellops run`
job (its steps' state, runs and a model it registers), the store filled up to `--runs` runs
with `log_batch`, and the dashboard's model with its drift checks (`bench_dashboard.build`).

- panel: a real `jupyter server` on 127.0.0.1 with a token and the `cellops_lab` extension,
  warm (a few refreshes first, not counted); one refresh is what the panel asks after a cell
  ran: POST steps (the notebook's live cells), GET models?path=NB and GET jobs?path=NB, one
  after the other, each read to its end;
- dashboard: `voila notebooks/drift_dashboard.ipynb` with one pre-heated kernel and a kernel
  per view (`start_server(..., bounded=False)`: the page whose ~1.4 s the issue quotes), a GET
  of the page read to its end, `--pause` seconds apart so the pool refills.

Goal: the panel's refresh p95 at most 1/20 of the dashboard page's time.

    PYTHONPATH=extension python benchmarks/bench_lab.py [--steps 50] [--runs 1000]
        [--refreshes 100] [--views 4] [--pause 20] [--keep]

A measurement, not a test: exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    clean_env,
    code_cell,
    finish_project,
    isolate_process,
    make_project,
    notebook_of,
    spread_ms,
    verdict,
)
from bench_dashboard import NOTEBOOK as DASHBOARD
from bench_dashboard import build as build_dashboard_model

GOAL = 1 / 20
REPO = Path(__file__).resolve().parents[1]
PANEL_NOTEBOOK = "panel.ipynb"


def write_notebook(root: Path, steps: int) -> list[dict[str, object]]:
    """`steps` step cells in a chain (each reads the one before), the last registers a model."""
    cells = [
        code_cell("%load_ext cellops\nimport cellops\nscale = 2", "c-load", ("parameters",)),
        code_cell("%%step s0 --metrics value\nvalue = scale * 1.0", "c-0"),
    ]
    for i in range(1, steps):
        cells.append(code_cell(f"%%step s{i} --metrics value\nvalue = value + {i}", f"c-{i}"))
    cells.append(
        code_cell(
            "from sklearn.linear_model import LogisticRegression\n"
            "X = [[0.0], [1.0], [2.0], [3.0]]\n"
            "model = LogisticRegression().fit(X, [0, 0, 1, 1])\n"
            'cellops.register_model(model, "panel_model", X, metrics={"value": value})',
            "c-register",
        )
    )
    (root / PANEL_NOTEBOOK).write_text(json.dumps(notebook_of(*cells), indent=1))
    return cells


def run_notebook_job(root: Path) -> str:
    from cellops.jobs.run import JobRequest, run_job

    result = run_job(JobRequest(root / PANEL_NOTEBOOK, progress=False, html=False))
    if not result.ok:
        raise SystemExit(f"the notebook's job failed: {result.failure.describe()}")
    return result.run_id


def fill_store(root: Path, total: int, job_run: str) -> int:
    """Runs in the notebook's experiment up to `total` in the store: step-like runs with
    params, metrics and tags, written with `log_batch`."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from cellops.config import default_tracking_uri

    client = MlflowClient(default_tracking_uri(root))
    experiments = [e.experiment_id for e in client.search_experiments()]
    have = len(client.search_runs(experiments, max_results=50000))
    experiment = client.get_run(job_run).info.experiment_id
    now = int(time.time() * 1000)
    for i in range(max(0, total - have)):
        run = client.create_run(
            experiment, run_name=f"s{i % 50}", start_time=now - 1000 * (total - i),
            tags={"cellops.kind": "step", "cellops.step": f"s{i % 50}",
                  "mlflow.parentRunId": job_run},
        )  # fmt: skip
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("value", float(i), now, 0), Metric("cellops.duration_s", 0.01, now, 0)],
            params=[Param("scale", "2")],
            tags=[RunTag("cellops.state", "executed")],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
    return len(client.search_runs(experiments, max_results=50000))


class LabServer:
    """`jupyter server` with the cellops_lab extension on the project, with a token."""

    def __init__(self, root: Path):
        from cellops.dashboards.server import free_port

        self.root, self.port, self.token = root, free_port(0), secrets.token_hex(24)
        extension = str(REPO / "extension")  # until the wheel ships cellops_lab
        env = clean_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extension, env.get("PYTHONPATH")]))
        config = root / "jupyter_server_config.json"
        config.write_text(json.dumps({"ServerApp": {"jpserver_extensions": {"cellops_lab": True}}}))
        self.log = open(root / "jupyter-server.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
             "--ip=127.0.0.1", "--allow-root", f"--ServerApp.root_dir={root}", f"--config={config}",
             f"--IdentityProvider.token={self.token}"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def call(self, method: str, route: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/cellops/api/{route}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"jupyter server exited; see {self.log.name}")
            try:
                self.call("GET", f"jobs?path={PANEL_NOTEBOOK}")
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"jupyter server did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def refresh(
    server: LabServer, live: list[dict[str, object]], pool: ThreadPoolExecutor | None = None
) -> tuple[float, dict]:
    """One refresh: the three requests one after the other, or (`pool`) at once, as a front
    end's `Promise.all` sends them."""
    calls = {
        "steps": ("POST", "steps", {"path": PANEL_NOTEBOOK, "cells": live}),
        "models": ("GET", f"models?path={PANEL_NOTEBOOK}", None),
        "jobs": ("GET", f"jobs?path={PANEL_NOTEBOOK}", None),
    }
    started = time.perf_counter()
    if pool is None:
        answers = {name: server.call(*call) for name, call in calls.items()}
    else:
        pending = {name: pool.submit(server.call, *call) for name, call in calls.items()}
        answers = {name: future.result() for name, future in pending.items()}
    return time.perf_counter() - started, answers


def measure_panel(
    root: Path, cells: list[dict[str, object]], refreshes: int
) -> tuple[list[float], list[float]]:
    """(sequential, concurrent) refresh times."""
    live = [{"id": c["id"], "source": c["source"]} for c in cells]
    server = LabServer(root)
    pool = ThreadPoolExecutor(3)
    try:
        server.wait_ready()
        for _ in range(5):  # warm: imports, the store's client, the file system's cache
            _, answer = refresh(server, live)
        states = [s["state"] for s in answer["steps"]["steps"]]
        print(f"    panel: {len(states)} steps ({states.count('fresh')} fresh), "
              f"{len(answer['models']['models'])} model(s), "
              f"{len(answer['jobs']['jobs'])} job(s)")  # fmt: skip
        sequential, concurrent = [], []
        for _ in range(refreshes):  # interleaved: both see the same load
            sequential.append(refresh(server, live)[0])
            concurrent.append(refresh(server, live, pool)[0])
        return sequential, concurrent
    finally:
        pool.shutdown()
        server.stop()


def measure_dashboard(root: Path, views: int, pause: float) -> list[float]:
    from cellops.config import load_settings
    from cellops.dashboards.server import (
        dashboard_url,
        free_port,
        new_token,
        start_server,
        wait_ready,
    )

    port, token = free_port(0), new_token()
    log = open(root / "voila.log", "w")  # noqa: SIM115
    process = start_server(  # one pre-heated kernel, one kernel per view: the page the issue timed
        load_settings(root), port, preheat=True, pool_size=1, notebook=DASHBOARD,
        token=token, bounded=False, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = dashboard_url(port, "bench", token)
    times = []
    try:
        wait_ready(process, port)
        time.sleep(pause)
        view_get(url)  # warm-up, not counted
        for _ in range(views):
            time.sleep(pause)
            times.append(view_get(url))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    return times


def view_get(url: str) -> float:
    """A GET of the dashboard's page read to its end (Voila streams it: the body ends once
    every cell has run)."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        body = response.read()
    elapsed = time.perf_counter() - started
    if b"widget-view+json" not in body:  # the last cell displayed the widgets: all cells ran
        print("    warning: the page came back without the dashboard's widgets")
    return elapsed


def p95(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=20)[-1] if len(seconds) >= 2 else seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="step cells in the notebook")
    parser.add_argument("--runs", type=int, default=1000, help="runs in the store")
    parser.add_argument("--refreshes", type=int, default=100, help="panel refreshes measured")
    parser.add_argument("--views", type=int, default=4, help="dashboard page views measured")
    parser.add_argument("--pause", type=float, default=20.0, help="seconds between page views")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()

    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    root = make_project("lab")
    isolate_process(root)
    try:
        started = time.perf_counter()
        cells = write_notebook(root, args.steps)
        job_run = run_notebook_job(root)
        build_dashboard_model(20)
        runs = fill_store(root, args.runs, job_run)
        print(f"project: a notebook of {args.steps} steps run as a job, {runs} runs in the "
              f"store, built in {time.perf_counter() - started:.1f} s")  # fmt: skip
        sequential, concurrent = measure_panel(root, cells, args.refreshes)
        page = measure_dashboard(root, args.views, args.pause)
        page_time = statistics.median(page)
        print("the panel's refresh (POST steps + GET models + GET jobs), warm server:")
        for name, times in (("one after another", sequential), ("at once", concurrent)):
            print(f"    {name:<17} {spread_ms(times)}   p95 {p95(times) * 1000:.1f} ms")
        print("the drift dashboard's page (pre-heated Voila, GET read to its end):")
        print(f"    {'':<17} {spread_ms(page)}")
        for name, times in (("one after another", sequential), ("at once", concurrent)):
            ratio = p95(times) / page_time
            print(f"ratio panel p95 ({name}) / dashboard page median = {ratio:.4f} "
                  f"(1/{1 / ratio:.0f}); goal <= 1/20: {verdict(ratio <= GOAL)}")  # fmt: skip
    finally:
        print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finish_project(root, args.keep)


if __name__ == "__main__":
    main()
