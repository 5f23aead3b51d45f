"""What a rollout costs the champion's traffic: one `cellops serve` measured three ways in one run.

One throw-away project, a champion and a challenger (two LogisticRegressions on 6 float
features, registered with cellops); one server (prediction log and metrics ON), the same client
as benchmarks/bench_serve.py (http.client, keep-alive, threads), measured

- champion only (no rollout),
- under `cellops rollout bench --canary 10` (requests without a key: 10% at random),
- under `cellops rollout bench --shadow` (the challenger predicts a copy of every request),

for: one-row requests one at a time (p50, requests per second) and 8 concurrent clients
(requests per second, p99). Goals of issue 15: a 10% canary costs at most 5% of the
champion-only throughput with 8 clients; a shadow adds at most 10% to the champion's p50 with
one client at a time; under saturation the shadow's work is real CPU on the same cores, so its
8-client throughput is reported too, with the share of copies the bounded queue dropped.

`benchmarks/bench_serve.py` runs it after the serving figures (the issue asks for one run);
alone:

    python benchmarks/rollout_costs.py [--requests 1000] [--concurrent-requests 300] [--keep]

A measurement, not a test: it prints figures and the ratios, and exits 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import clean_env, finish_project, isolate_process, make_project, verdict
from bench_serve import BIN, FEATURES, Running, free_port, measure


def register(root: Path) -> None:
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import cellops

    X, y = make_classification(2000, 6, n_informative=4, random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    first = cellops.register_model(LogisticRegression().fit(frame, y), "bench", frame)
    client = MlflowClient(f"sqlite:///{root / '.cellops' / 'mlflow.db'}")
    client.set_registered_model_alias("bench", "champion", first.version)
    cellops.register_model(LogisticRegression(C=0.1).fit(frame[:1500], y[:1500]), "bench", frame)


def rollout(root: Path, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "cellops"), "rollout", "bench", *args], cwd=root, env=clean_env(),
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(done.stderr)
    # the server polls every 0.5 s; at a rollout's start it loads the challenger and opens the
    # registry client in the background (importing MLflow: seconds of CPU): not measured here
    time.sleep(8)


def dropped(root: Path) -> tuple[int, int]:
    from cellops.config import load_settings
    from cellops.serving.status import rollout_status

    shadow = rollout_status("bench", load_settings(root))["variants"].get("shadow") or {}
    return int(shadow.get("requests") or 0), int(shadow.get("dropped") or 0)


def measure_rollouts(requests: int, concurrent_requests: int, keep: bool = False) -> None:
    """Champion only, a 10% canary and a shadow on one server; prints the figures."""
    root = make_project("rollout")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "bench"\n\n[tool.cellops]\n\n[tool.cellops.serve]\npoll_seconds = 0.5\n'
        "\n[tool.cellops.models.bench.rollout]\nrules = []\nmin_requests = 1000000\n"
    )  # no rule judges: the measurement must not be cut short by a rollback
    isolate_process(root)
    register(root)
    port = free_port()
    server = Running("cellops", [str(BIN / "cellops"), "serve", "bench", "--port", str(port)],
                     "/ready", root, port)  # fmt: skip
    results = {}
    try:
        results["champion only"] = measure(server, requests, concurrent_requests)
        rollout(root, "--canary", "10")
        results["canary 10%"] = measure(server, requests, concurrent_requests)
        rollout(root, "--abort")
        rollout(root, "--shadow")
        results["shadow"] = measure(server, requests, concurrent_requests)
        shadowed, lost = dropped(root)
    finally:
        server.stop()
        finish_project(root, keep)
    report(results, shadowed, lost)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrent-requests", type=int, default=300, help="per client")
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    measure_rollouts(options.requests, options.concurrent_requests, options.keep)


def report(results: dict, shadowed: int, lost: int) -> None:
    print(f"{'':<15}{'p50 1 client':>14}{'req/s 1 client':>16}{'req/s 8 clients':>17}{'p99 8':>9}")
    for name, f in results.items():
        print(
            f"{name:<15}{f['p50']:>11.2f} ms{f['rps_serial']:>16.0f}{f['rps_concurrent']:>17.0f}"
            f"{f['p99']:>6.1f} ms" + (f"  ({f['errors']} errors)" if f["errors"] else "")
        )
    base, canary, shadow = results["champion only"], results["canary 10%"], results["shadow"]
    cost = 1 - canary["rps_concurrent"] / base["rps_concurrent"]
    print(
        f"\ncanary 10%, 8 clients: {canary['rps_concurrent'] / base['rps_concurrent']:.1%} of the "
        f"champion-only throughput, a cost of {max(cost, 0):.1%} (goal: at most 5%): "
        f"{verdict(cost <= 0.05)}"
    )
    added = shadow["p50"] / base["p50"] - 1
    print(
        f"shadow, one client at a time: p50 {added:+.1%} over champion-only (goal: at most +10%): "
        f"{verdict(added <= 0.10)}"
    )
    saturated = 1 - shadow["rps_concurrent"] / base["rps_concurrent"]
    total = shadowed + lost
    share = lost / total if total else 0.0
    print(
        f"shadow under saturation (8 clients): costs {saturated:.1%} of the throughput; the "
        f"challenger predicted {shadowed:,} copies, {lost:,} dropped ({share:.1%}) by the "
        "bounded queue (its predictions are real CPU on the same 2 cores)"
    )


if __name__ == "__main__":
    main()
