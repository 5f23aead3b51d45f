"""A crowd opening the drift dashboard at once: `cellops dashboard` (bounded kernels, one shared
read of the store) against the dashboard as it was served before (plain Voila, one pre-heated
kernel, every view starting its own kernel that reads the store itself).

One throw-away project (a registered model with its reference profile, `--checks` recorded
drift checks). Each server is started as `cellops dashboard` starts it (token on, loopback),
warmed up (the pre-heated kernel ready; ours: its first snapshot read), then `--views` threads
GET the page at the same moment and read it to its last byte (Voila streams a page until its
last cell ran; a view waiting in line gets the shared data at once). Meanwhile the process tree
of the server is sampled every 0.2 s: its resident memory (sum of RSS) and its kernels. The
two servers run one after the other, never together.

Printed per server: p95 (nearest rank) and median time to the last byte, the peak memory of
the process tree, the kernels alive during the burst (most at once) and after it (at its end,
and once the cull time of closed views has passed), then the ratios against the goals of
issue 16 (p95 <= 1/10, peak memory <= 1/3).

    python benchmarks/bench_dashboard.py [--views 12] [--checks 20] [--keep]

A measurement, not a test: exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import finish_project, isolate_process, make_project, verdict

TIME_GOAL, MEMORY_GOAL = 1 / 10, 1 / 3
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "drift_dashboard.ipynb"
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


class TreeWatch(threading.Thread):
    """Samples the server's process tree: peak RSS sum, kernels now and at most."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_rss, self.peak_kernels = pid, 0, 0
        self.stop = threading.Event()

    def sample(self) -> tuple[int, int]:
        import psutil

        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, 0
        rss = kernels = 0
        for process in tree:
            try:
                rss += process.memory_info().rss
                kernels += "ipykernel_launcher" in " ".join(process.cmdline())
            except psutil.NoSuchProcess:
                continue
        return rss, kernels

    def run(self) -> None:
        while not self.stop.is_set():
            rss, kernels = self.sample()
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_kernels = max(self.peak_kernels, kernels)
            time.sleep(0.2)


def burst(url: str, views: int) -> list[tuple[float, bool]]:
    """`views` GETs at the same moment: (seconds to the last byte, got a live kernel)."""
    start = threading.Barrier(views)
    found: list[tuple[float, bool]] = []

    def view() -> None:
        start.wait()
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as response:
            body = response.read()
        found.append((time.perf_counter() - began, b'"kernelId"' in body))

    threads = [threading.Thread(target=view) for _ in range(views)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def measure(root: Path, bounded: bool, views: int) -> dict[str, object]:
    from cellops.config import load_settings
    from cellops.dashboards.server import (
        Limits,
        dashboard_url,
        free_port,
        new_token,
        snapshot_path,
        start_server,
        wait_ready,
    )

    settings = load_settings(root)
    limits = Limits.of(settings) if bounded else None
    port, token = free_port(0), new_token()
    name = "cellops" if bounded else "before"
    log = open(root / f"voila-{name}.log", "w")  # noqa: SIM115
    process = start_server(
        settings, port, preheat=True, pool_size=1, notebook=NOTEBOOK, token=token,
        limits=limits, bounded=bounded, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    watch = TreeWatch(process.pid)
    try:
        wait_ready(process, port, timeout=180,
                   snapshot=snapshot_path(settings, port) if bounded else None)  # fmt: skip
        deadline = time.monotonic() + 180
        while watch.sample()[1] < 1 and time.monotonic() < deadline:  # the pool's kernel
            time.sleep(0.5)
        time.sleep(15)  # the pre-heated kernel runs the notebook up to its wait for a request
        idle_rss = watch.sample()[0]
        watch.start()
        times = burst(dashboard_url(port, "bench", token), views)
        at_end = watch.sample()[1]
        cull = limits.cull_seconds if limits else 600
        after = None
        if limits:  # wait out the cull time of the closed views (plain Voila's is 600 s)
            time.sleep(cull + max(1, min(60, cull // 4)) + 5)
            after = watch.sample()[1]
        watch.stop.set()
        status = None
        if bounded:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/cellops/status",
                headers={"Authorization": f"token {token}"},
            )
            with urllib.request.urlopen(request) as response:
                status = json.loads(response.read())
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    seconds = [t for t, _ in times]
    return {
        "name": name, "times": seconds, "live": sum(live for _, live in times),
        "live_times": [t for t, live in times if live],
        "shared_times": [t for t, live in times if not live], "idle_rss": idle_rss,
        "peak_rss": watch.peak_rss, "peak_kernels": watch.peak_kernels, "at_end": at_end,
        "after": after, "cull": cull, "limits": limits, "status": status,
    }  # fmt: skip


def report(found: dict[str, object]) -> None:
    times = found["times"]
    mb = 2**20
    print(f"  {found['name']}: p95 {p95(times):6.2f} s, median {statistics.median(times):6.2f} s, "
          f"max {max(times):6.2f} s to the last byte; {found['live']} of {len(times)} views "
          "on a live kernel")  # fmt: skip
    if found["live_times"] and found["shared_times"]:
        live, shared = max(found["live_times"]), max(found["shared_times"])
        print(f"      live views: max {live:.2f} s; views answered from the shared data "
              f"(with their place in line): max {shared:.2f} s")  # fmt: skip
    idle, peak = found["idle_rss"] / mb, found["peak_rss"] / mb
    print(f"      process tree: {idle:7.0f} MB idle, peak {peak:7.0f} MB (+{peak - idle:.0f})")
    after = (f", {found['after']} after the cull time ({found['cull']:g} s)"
             if found["after"] is not None else f" (cull time {found['cull']:g} s)")  # fmt: skip
    print(f"      kernels alive: at most {found['peak_kernels']} during the burst, "
          f"{found['at_end']} at its end{after}")  # fmt: skip
    if found["limits"] is not None:
        limits = found["limits"]
        print(f"      bound {limits.max_kernels} kernels (sized to this machine), refresh "
              f"{limits.refresh_seconds:g} s; server's own count: {found['status']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=12, help="concurrent page views")
    parser.add_argument("--checks", type=int, default=20, help="drift checks recorded")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; load average at start: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    root = make_project("dashboard")
    isolate_process(root)
    try:
        started = time.perf_counter()
        build(args.checks)
        print(f"project: model 'bench' ({len(FEATURES)} columns), {args.checks} drift checks, "
              f"built in {time.perf_counter() - started:.1f} s")  # fmt: skip
        print(f"{args.views} concurrent views of the drift dashboard:")
        before = measure(root, bounded=False, views=args.views)
        report(before)
        ours = measure(root, bounded=True, views=args.views)
        report(ours)
        time_ratio = p95(ours["times"]) / p95(before["times"])
        memory_ratio = ours["peak_rss"] / before["peak_rss"]
        print(f"  p95 ratio cellops/before = {time_ratio:.3f} ({1 / time_ratio:.0f}x faster); "
              f"goal <= {TIME_GOAL:.2f}: {verdict(time_ratio <= TIME_GOAL)}")  # fmt: skip
        print(f"  peak memory ratio cellops/before = {memory_ratio:.3f}; "
              f"goal <= {MEMORY_GOAL:.2f}: {verdict(memory_ratio <= MEMORY_GOAL)}")  # fmt: skip
    finally:
        print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finish_project(root, args.keep)


if __name__ == "__main__":
    main()
