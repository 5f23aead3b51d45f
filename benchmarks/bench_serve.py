"""Serving one small scikit-learn model: `cellops serve` against `mlflow models serve`.

One throw-away project, one model (a LogisticRegression on 6 float features, registered with
cellops, so both servers load the very same version from the same SQLite store); each server
runs alone, started as a user starts it (`mlflow models serve -m models:/bench@champion
--env-manager local`, the venv's bin on PATH; `cellops serve bench`), with cellops' prediction
log and metrics ON. The same client (http.client, keep-alive connections, threads) measures:

- start-up: from launching the command to the first 200 of /ready (cellops) or /ping (MLflow);
- one-row requests one at a time: p50 latency and requests per second;
- 8 concurrent clients: requests per second and p99 latency;
- the server's CPU per request (user + system of its process tree, psutil).

Then where cellops' remaining time per request goes: the app driven in-process (no HTTP) under
cProfile, and the parts timed alone.

    python benchmarks/bench_serve.py [--requests 1000] [--concurrent-requests 300] [--keep]

A measurement, not a test: it prints figures and the ratios, and exits 0.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import clean_env, finish_project, isolate_process, make_project, verdict

BIN = Path(sys.executable).parent
FEATURES = [f"x{i}" for i in range(6)]
CLIENTS = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def register(root: Path) -> None:
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import cellops

    X, y = make_classification(2000, 6, n_informative=4, random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    version = cellops.register_model(LogisticRegression().fit(frame, y), "bench", frame)
    client = MlflowClient(f"sqlite:///{root / '.cellops' / 'mlflow.db'}")
    client.set_registered_model_alias("bench", "champion", version.version)


class Running:
    def __init__(self, name: str, command: list[str], ready: str, root: Path, port: int):
        env = clean_env()
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / '.cellops' / 'mlflow.db'}"
        self.name, self.port = name, port
        started = time.perf_counter()
        with open(root / f"{name}.log", "w") as log:
            self.process = subprocess.Popen(
                command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{name} exited: {(root / f'{name}.log').read_text()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", ready)
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        self.startup = time.perf_counter() - started

    def cpu_seconds(self) -> float:
        import psutil

        root = psutil.Process(self.process.pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def body_of(i: int) -> bytes:
    row = [((i * 7 + j) % 13) / 6 - 1 for j in range(6)]
    return json.dumps({"dataframe_split": {"columns": FEATURES, "data": [row]}}).encode()


def client_loop(port: int, count: int, offset: int, latencies: list, errors: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"content-type": "application/json"}
    for i in range(count):
        body = body_of(offset + i)
        started = time.perf_counter()
        connection.request("POST", "/invocations", body, headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            errors.append(response.status)


def measure(server: Running, requests: int, concurrent: int) -> dict:
    warm: list = []
    client_loop(server.port, 100, 0, warm, [])
    figures: dict = {"startup": server.startup}
    latencies: list = []
    errors: list = []
    cpu = server.cpu_seconds()
    started = time.perf_counter()
    client_loop(server.port, requests, 1000, latencies, errors)
    elapsed = time.perf_counter() - started
    figures["cpu_ms_serial"] = (server.cpu_seconds() - cpu) * 1000 / requests
    figures["p50"] = statistics.median(latencies) * 1000
    figures["rps_serial"] = requests / elapsed
    latencies = []
    cpu = server.cpu_seconds()
    threads = [
        threading.Thread(
            target=client_loop, args=(server.port, concurrent, 10_000 * (k + 1), latencies, errors)
        )
        for k in range(CLIENTS)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    figures["cpu_ms_concurrent"] = (server.cpu_seconds() - cpu) * 1000 / (concurrent * CLIENTS)
    figures["rps_concurrent"] = concurrent * CLIENTS / elapsed
    figures["p99"] = statistics.quantiles(latencies, n=100)[98] * 1000
    figures["errors"] = len(errors)
    return figures


def profile_in_process(root: Path, requests: int) -> None:
    """The app without HTTP: Starlette called directly, as uvicorn calls it, under cProfile;
    then the parts of a request timed alone."""
    import asyncio
    import cProfile
    import pstats
    import tempfile
    import timeit

    from cellops.config import load_settings
    from cellops.serving import metrics as metrics_module

    metrics_module.use_folder(Path(tempfile.mkdtemp(prefix="cellops-bench-metrics-")))
    from cellops.serving.app import build_context, create_app
    from cellops.serving.log import Prediction
    from cellops.serving.model import load
    from cellops.serving.schema import parse_body
    from cellops.serving.source import AliasReader

    settings = load_settings(root)
    ref = AliasReader(settings, "bench", "champion").resolve()
    model = load(ref, settings.tracking_uri)
    context = build_context(settings, "bench", "champion", model)
    app = create_app(context)
    bodies = [body_of(i) for i in range(requests)]

    async def call(body: bytes) -> None:
        scope = {
            "type": "http", "method": "POST", "path": "/invocations", "raw_path": b"/invocations",
            "query_string": b"", "headers": [(b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())], "app": app,
        }  # fmt: skip
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(_message):
            return None

        await app(scope, receive, send)

    async def run_all() -> None:
        for body in bodies:
            await call(body)

    asyncio.run(run_all())  # warm
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    asyncio.run(run_all())
    profiler.disable()
    per_request = (time.perf_counter() - started) * 1e6 / requests
    print(
        f"\nin-process (no HTTP, under cProfile): {per_request:.0f} us a request; top by own time:"
    )
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:12]
    for (path, line, func), (_, calls, own, cumulative, _) in rows:
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if line else path
        print(f"  {own * 1e6 / requests:7.1f} us own {cumulative * 1e6 / requests:7.1f} us cum "
              f"{calls / requests:4.1f}x  {func} ({where})")  # fmt: skip
    body = bodies[0]
    batch, _ = parse_body(body, "application/json", model.schema)
    predictions, proba = model.predict(batch)
    served = context.serving.current
    parts = {
        "parse + check the JSON body": lambda: parse_body(body, "application/json", model.schema),
        "estimator predict + predict_proba": lambda: model.predict(batch),
        "prediction log append": lambda: context.log.append(
            served.served, Prediction("0" * 24, 0, 1.0, batch, predictions, proba)
        ),
        "metrics (counter, histogram, class)": lambda: context.metrics.observe(
            served.key, 200, 0.001, predictions
        ),
    }
    print("parts, timed alone (median of 5 x 2000):")
    for what, part in parts.items():
        seconds = min(timeit.repeat(part, number=2000, repeat=5)) / 2000
        print(f"  {seconds * 1e6:7.1f} us  {what}")
    context.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrent-requests", type=int, default=300, help="per client")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-rollout", action="store_true", help="skip the rollout figures")
    args = parser.parse_args()
    root = make_project("serve")
    isolate_process(root)
    register(root)
    from cellops.store import session as session_module

    session_module.end_session()
    results = {}
    try:
        for name in ("mlflow", "cellops"):
            port = free_port()
            if name == "mlflow":
                command = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/bench@champion",
                           "--env-manager", "local", "-p", str(port)]  # fmt: skip
                server = Running(name, command, "/ping", root, port)
            else:
                command = [str(BIN / "cellops"), "serve", "bench", "--port", str(port)]
                server = Running(name, command, "/ready", root, port)
            try:
                results[name] = measure(server, args.requests, args.concurrent_requests)
            finally:
                server.stop()
        report(results)
        logged = root / ".cellops" / "predictions" / "model=bench"
        import pandas as pd

        rows = len(pd.read_parquet(logged)) if logged.is_dir() else 0
        print(f"\nprediction log after the run: {rows} rows in {logged}")
        profile_in_process(root, 2000)
    finally:
        finish_project(root, args.keep)
    if not args.no_rollout:
        from rollout_costs import measure_rollouts

        print("\n== what a rollout costs the champion's traffic (issue 15), same client")
        measure_rollouts(args.requests, args.concurrent_requests, args.keep)


def report(results: dict) -> None:
    mlflow, ours = results["mlflow"], results["cellops"]
    rows = [
        ("start-up to ready (s)", "startup", "{:.2f}"),
        ("1 client: p50 (ms)", "p50", "{:.2f}"),
        ("1 client: req/s", "rps_serial", "{:.0f}"),
        ("1 client: server CPU per request (ms)", "cpu_ms_serial", "{:.2f}"),
        (f"{CLIENTS} clients: req/s", "rps_concurrent", "{:.0f}"),
        (f"{CLIENTS} clients: p99 (ms)", "p99", "{:.1f}"),
        (f"{CLIENTS} clients: server CPU per request (ms)", "cpu_ms_concurrent", "{:.2f}"),
        ("failed requests", "errors", "{:d}"),
    ]
    print(f"\n{'':44} {'mlflow serve':>13} {'cellops serve':>14} {'ratio':>7}")
    for label, key, form in rows:
        a, b = mlflow[key], ours[key]
        ratio = f"{b / a:6.2f}x" if a else "     -"
        print(f"{label:44} {form.format(a):>13} {form.format(b):>14} {ratio:>7}")
    throughput = ours["rps_concurrent"] / mlflow["rps_concurrent"]
    startup = ours["startup"] / mlflow["startup"]
    print(f"\n{CLIENTS}-client throughput {throughput:.2f}x mlflow's (goal >= 2x): "
          f"{verdict(throughput >= 2)}")  # fmt: skip
    print(f"{CLIENTS}-client p99 {ours['p99']:.1f} ms against {mlflow['p99']:.1f} ms (goal: no "
          f"worse): {verdict(ours['p99'] <= mlflow['p99'])}")  # fmt: skip
    print(f"start-up {startup:.2f}x mlflow's (goal <= 0.5x): {verdict(startup <= 0.5)}")


if __name__ == "__main__":
    main()
