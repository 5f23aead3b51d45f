"""Page time of the Voila drift dashboard: Voila's default (a fresh kernel per page view)
against pre-heated kernels (`--preheat_kernel=True --pool_size=1`, as `cellops dashboard`).

One throw-away project (a registered model with its reference profile, `--checks` recorded
drift checks), served by `voila notebooks/drift_dashboard.ipynb` exactly as `cellops
dashboard` starts it, the only difference being preheat on or off; the two servers run one
after the other, never together. Each page view is measured twice over:

- browser: headless Chromium (`/usr/bin/chromium`) from navigation until the dashboard's
  widgets (the drift-share chart) are in the page;
- GET: a plain HTTP GET of the page read to its end (Voila streams it: the body ends once
  every cell has run), as the issue measured it.

Views are `--pause` seconds apart (a pre-heated pool refills in the background meanwhile:
a new kernel starts and runs the notebook up to its wait for a request); one warm-up view
per server is not counted.

    python benchmarks/bench_dashboard.py [--views 4] [--pause 20] [--checks 20] [--keep]

A measurement, not a test: exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import finish_project, isolate_process, make_project, spread_ms, verdict

GOAL = 1 / 3  # a pre-heated page view within a third of Voila's default
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "drift_dashboard.ipynb"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
FEATURES = [f"f{i}" for i in range(12)]


def build(checks: int) -> None:
    """A model `bench` with its reference profile, and `checks` recorded drift checks."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import cellops
    from cellops.monitoring.history import record_check
    from cellops.monitoring.profile import build_profile
    from cellops.monitoring.result import ColumnDrift, DriftResult
    from cellops.registry.store import open_store
    from cellops.store import session as session_module

    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(5000, len(FEATURES))), columns=FEATURES)
    y = (train["f0"] > 0).astype(int).to_numpy()
    cellops.register_model(LogisticRegression().fit(train, y), "bench", train.head(50),
                           reference=train)  # fmt: skip
    current = train.sample(2000, random_state=1) + 0.3
    profile = build_profile(current)
    store = open_store()
    for i in range(checks):
        drifted = set(FEATURES[: i % len(FEATURES)])
        result = DriftResult(
            [ColumnDrift(c, "numeric", "ks", 0.001 if c in drifted else 0.4, 0.05, c in drifted)
             for c in FEATURES], 0.5, "native", 5000, 2000,
        )  # fmt: skip
        record_check(store, "bench", "1", result, current=f"day{i}.parquet", data_hash=str(i),
                     current_profile=profile)  # fmt: skip
    session_module.end_session()


def view_browser(browser, url: str) -> float:
    page = browser.new_page()
    try:
        started = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_selector(".cellops-share-chart svg", timeout=180_000)
        return time.perf_counter() - started
    finally:
        page.close()


def view_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        body = response.read()
    elapsed = time.perf_counter() - started
    if b"widget-view+json" not in body:  # the last cell displayed the widgets: all cells ran
        print("    warning: the page came back without the dashboard's widgets")
    return elapsed


def measure(root: Path, preheat: bool, views: int, pause: float, browser) -> dict[str, list]:
    from cellops.config import load_settings
    from cellops.dashboards.server import (
        dashboard_url,
        free_port,
        new_token,
        start_server,
        wait_ready,
    )

    port, token = free_port(0), new_token()  # served as `cellops dashboard` serves it
    log = open(root / f"voila-{'preheat' if preheat else 'default'}.log", "w")  # noqa: SIM115
    process = start_server(
        load_settings(root), port, preheat=preheat, pool_size=1, notebook=NOTEBOOK,
        token=token, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = dashboard_url(port, "bench", token)
    times: dict[str, list] = {"browser": [], "get": []}
    try:
        wait_ready(process, port)
        time.sleep(pause)  # a pre-heated pool fills; the default server just idles as long
        view_browser(browser, url)  # warm-up: the browser's cache of Voila's static files
        for _ in range(views):
            time.sleep(pause)
            times["browser"].append(view_browser(browser, url))
            time.sleep(pause)
            times["get"].append(view_get(url))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=4, help="measured views per way and server")
    parser.add_argument("--pause", type=float, default=20.0, help="seconds between views")
    parser.add_argument("--checks", type=int, default=20, help="drift checks recorded")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    root = make_project("dashboard")
    isolate_process(root)
    try:
        started = time.perf_counter()
        build(args.checks)
        print(f"project: model 'bench' ({len(FEATURES)} columns), {args.checks} drift checks, "
              f"built in {time.perf_counter() - started:.1f} s")  # fmt: skip
        results = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for preheat in (False, True):
                name = "preheat + pool" if preheat else "default"
                results[name] = measure(root, preheat, args.views, args.pause, browser)
            browser.close()
        print(f"page views of the drift dashboard ({args.views} each, {args.pause:.0f} s apart):")
        for name, times in results.items():
            print(f"    {name:<15} browser (until widgets shown) {spread_ms(times['browser'])}")
            print(f"    {'':<15} GET (page read to its end)    {spread_ms(times['get'])}")
        for way in ("browser", "get"):
            base = statistics.median(results["default"][way])
            ours = statistics.median(results["preheat + pool"][way])
            ratio = ours / base
            print(f"    {way:<7} ratio preheated/default = {ratio:.2f} ({base / ours:.1f}x faster);"
                  f" goal <= {GOAL:.2f}: {verdict(ratio <= GOAL)}")  # fmt: skip
    finally:
        print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finish_project(root, args.keep)


if __name__ == "__main__":
    main()
