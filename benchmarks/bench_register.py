"""Registering a model, and running the gate: cellops against MLflow's defaults.

(a) `cellops.register_model(model, name, X_sample)` against what a user writes with MLflow:
`mlflow.sklearn.log_model(model, name=..., input_example=...)` then `mlflow.register_model`,
with MLflow's defaults (so its pip requirements are inferred, in a subprocess). Same model
(a HistGradientBoostingClassifier, as notebooks/retrain.ipynb trains), same SQLite store, both
warm, interleaved. Both use the cloudpickle format: MLflow 3.17's default, skops, refuses tree
models unless their types are listed as trusted, and cellops always uses cloudpickle.

(b) The gate: a challenger and a champion scored on a 10,000-row holdout (quality metrics and
latency p50/p95 from 100 single-row predictions each), with the time split into loading both
versions, scoring, and timing.

    python benchmarks/bench_register.py [--reps 3] [--rows 10000]

A measurement, not a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import isolate_process, make_project, remove_project, spread_ms, verdict

GOAL = 20.0  # cellops.register_model at least 20x faster than log_model + register_model
GATE = ["f1 >= 0.5", "auc >= champion.auc - 0.01", "latency_p95_ms < 50"]


def make_data(rows: int, seed: int):
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(rows, 20, n_informative=8, weights=[0.9], random_state=seed)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(20)]), y


def train(X, y, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(X, y)


def mlflow_defaults(model, X) -> float:
    """log_model + register_model as MLflow's documentation shows them."""
    import mlflow
    import mlflow.sklearn

    started = time.perf_counter()
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=X.head(5), serialization_format="cloudpickle"
        )
        mlflow.register_model(info.model_uri, "bench_mlflow")
    return time.perf_counter() - started


def cellops_register(model, X) -> float:
    import cellops

    started = time.perf_counter()
    cellops.register_model(model, "bench_cellops", X_sample=X)
    return time.perf_counter() - started


@contextlib.contextmanager
def quiet():
    """MLflow prints progress and advice on every call; the figures are what matter here."""
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def bench_register(reps: int) -> None:
    import mlflow

    from cellops.config import load_settings

    mlflow.set_tracking_uri(load_settings().tracking_uri)
    X, y = make_data(5000, 0)
    model = train(X, y, 0)
    print("(a) registering a HistGradientBoostingClassifier (20 features, 5000 rows)")
    with quiet():
        warm = {"mlflow": mlflow_defaults(model, X), "cellops": cellops_register(model, X)}
    print(f"    first calls (imports, store set-up): mlflow {warm['mlflow']:.2f} s, "
          f"cellops {warm['cellops']:.2f} s")  # fmt: skip
    times: dict[str, list[float]] = {"mlflow": [], "cellops": []}
    for rep in range(reps):
        order = ["mlflow", "cellops"] if rep % 2 == 0 else ["cellops", "mlflow"]
        for name in order:
            with quiet():
                if name == "mlflow":
                    times[name].append(mlflow_defaults(model, X))
                else:
                    times[name].append(cellops_register(model, X))
    base, ours = statistics.median(times["mlflow"]), statistics.median(times["cellops"])
    print(f"    mlflow log_model + register_model (defaults)  {spread_ms(times['mlflow'])}")
    print(f"    cellops.register_model                        {spread_ms(times['cellops'])}")
    ratio = base / ours
    print(
        f"    ratio: cellops is {ratio:.1f}x faster; goal >= {GOAL:.0f}x: {verdict(ratio >= GOAL)}"
    )
    from cellops.registry.requirements import model_requirements

    print(f"    cellops' pinned requirements: {', '.join(model_requirements(model))}")


def bench_gate(reps: int, rows: int) -> None:
    import cellops
    from cellops.registry.evaluation import evaluate_gate
    from cellops.registry.scoring import latency, load_holdout, load_version, quality
    from cellops.registry.store import open_store

    X, y = make_data(5000 + rows, 1)
    train_X, train_y = X.iloc[:5000], y[:5000]
    holdout = X.iloc[5000:].assign(label=y[5000:])
    with quiet():
        cellops.register_model(train(train_X.iloc[:2000], train_y[:2000], 1), "gate_bench", train_X)
        cellops.promote("gate_bench", gate=["f1 >= 0"], holdout=holdout, label="label")
        cellops.register_model(train(train_X, train_y, 2), "gate_bench", train_X)
    store = open_store()
    print(f"\n(b) the gate: challenger and champion on a {rows:,}-row holdout, "
          f"{len(GATE)} conditions, 100 timed single-row predictions per model")  # fmt: skip
    total, loads, scores, timings = [], [], [], []
    for _ in range(reps):
        with quiet():
            started = time.perf_counter()
            result = evaluate_gate(
                store, "gate_bench", "2", gate=GATE, holdout=holdout, label="label",
                latency_samples=100,
            )  # fmt: skip
            total.append(time.perf_counter() - started)
            # the same work in parts
            started = time.perf_counter()
            pair = [load_version(store.client, store.uri, "gate_bench", v) for v in ("2", "1")]
            loads.append(time.perf_counter() - started)
            data = load_holdout(holdout, "label")
            started = time.perf_counter()
            for loaded in pair:
                quality(loaded, data.features[loaded.columns], data)
            scores.append(time.perf_counter() - started)
            started = time.perf_counter()
            latency([(v, data.features[v.columns]) for v in pair], 100)
            timings.append(time.perf_counter() - started)
    print(f"    evaluate_gate, whole                    {spread_ms(total)}")
    print(f"      load both versions from the registry  {spread_ms(loads)}")
    print(f"      quality metrics on {rows:>6,} rows x 2   {spread_ms(scores)}")
    print(f"      latency, 100 + 100 single-row calls   {spread_ms(timings)}")
    print("    last result:")
    for line in result.lines():
        print(f"      {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (median shown)")
    parser.add_argument("--rows", type=int, default=10000, help="holdout rows for the gate")
    args = parser.parse_args()
    root = make_project("bench-register")
    isolate_process(root)
    print(f"project: {root} (temporary); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cpus")  # fmt: skip
    try:
        bench_register(args.reps)
        bench_gate(args.reps, args.rows)
    finally:
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
        remove_project(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
