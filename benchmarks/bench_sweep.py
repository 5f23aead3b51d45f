"""A sweep of 8 CPU-bound jobs on 2 Dask workers against the same 8 run one after another.

Each job executes a notebook whose one `%%step` does about 5 s of single-threaded pure-Python
work, parameterized by `point` (1..8). The sequential side runs `cellops run NB -p point K` 8
times; the sweep side runs `cellops sweep NB -p point 1 ... 8 --workers 2` once. A `variant`
parameter (1 sequential, 2 sweep) gives the two sides different cache keys, so every step really
executes. BLAS/OpenMP threads are pinned to 1. Both commands run as subprocesses from the
virtual environment's `bin/`, in a temporary project.

    python benchmarks/bench_sweep.py [--seconds 5] [--points 8] [--workers 2] [--skip-fixed]

A measurement, not a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    GIT_ENV,
    clean_env,
    code_cell,
    finish_project,
    make_project,
    notebook_of,
    verdict,
)

GOAL = 1.7  # the sweep on 2 workers at least 1.7x faster than one job after another
BIN = Path(sys.executable).parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")  # fmt: skip
LOOP = """\
total = 0
for i in range(n):
    total += (i * point + variant) % 7
"""


def notebook(n: int) -> dict[str, object]:
    return notebook_of(
        code_cell("%load_ext cellops", "load"),
        code_cell(f"point = 1\nvariant = 0\nn = {n}  # loop length", "params", ("parameters",)),
        code_cell(f"%%step work --metrics total\n{LOOP}", "work"),
        code_cell('print(f"point={point} total={total}")', "show"),
    )


def calibrate(seconds: float) -> tuple[int, float]:
    """The loop length that takes `seconds` here (the loop runs at module level, as in a cell)."""
    code = compile(LOOP, "<loop>", "exec")
    probe = 1_000_000
    started = time.perf_counter()
    exec(code, {"n": probe, "point": 3, "variant": 0})
    rate = probe / (time.perf_counter() - started)
    return int(rate * seconds), rate


def env() -> dict[str, str]:
    return {**clean_env(), **dict.fromkeys(THREAD_VARS, "1")}


def command(name: str) -> list[str]:
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


def timed(args: list[str], root: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=root, env=env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")  # fmt: skip
    return elapsed


def write_notebook(root: Path, n: int) -> None:
    (root / "spin.ipynb").write_text(json.dumps(notebook(n), indent=1))
    (root / ".gitignore").write_text(".cellops/\nreports/\n")
    git_env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "notebook"], cwd=root, check=True, env=git_env)


def fixed_costs() -> dict[str, float]:
    """A kernel's start and stop, Dask's import and a 2-worker LocalCluster's start and close."""
    costs: dict[str, float] = {}
    from jupyter_client.manager import start_new_kernel

    for _ in range(2):  # the second start is the warm one
        started = time.perf_counter()
        manager, client = start_new_kernel(kernel_name="python3")
        costs["kernel start (ready)"] = time.perf_counter() - started
        started = time.perf_counter()
        client.stop_channels()
        manager.shutdown_kernel()
        costs["kernel stop"] = time.perf_counter() - started
    started = time.perf_counter()
    from dask.distributed import Client, LocalCluster

    costs["import dask.distributed"] = time.perf_counter() - started
    started = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, host="127.0.0.1")  # fmt: skip
    dask_client = Client(cluster)
    costs["LocalCluster(2 workers) start"] = time.perf_counter() - started
    started = time.perf_counter()
    dask_client.close()
    cluster.close()
    costs["LocalCluster close"] = time.perf_counter() - started
    return costs


def recorded(root: Path) -> dict[str, dict[str, object]]:
    """Per side: job runs by status, and the steps' `cellops.duration_s` (MlflowClient)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.cellops' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("spin")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    sweeps = {r.info.run_id: r for r in runs if r.data.tags.get("cellops.kind") == "sweep"}
    jobs = {r.info.run_id: r for r in runs if r.data.tags.get("cellops.kind") == "job"}
    sides: dict[str, dict[str, object]] = {}
    for run in runs:
        if run.data.tags.get("cellops.step") != "work":
            continue
        job = jobs.get(run.data.tags.get("mlflow.parentRunId", ""))
        if job is None or job.data.params.get("n") == "1000":  # the warm-up
            continue
        side = "sweep" if job.data.tags.get("mlflow.parentRunId") in sweeps else "sequential"
        entry = sides.setdefault(side, {"jobs": {}, "states": {}, "duration_s": []})
        entry["jobs"][job.info.status] = entry["jobs"].get(job.info.status, 0) + 1  # type: ignore[index,union-attr]
        state = run.data.tags.get("cellops.state", "?")
        entry["states"][state] = entry["states"].get(state, 0) + 1  # type: ignore[index,union-attr]
        entry["duration_s"].append(run.data.metrics.get("cellops.duration_s", float("nan")))  # type: ignore[union-attr]
    for sweep in sweeps.values():
        sides.setdefault("sweep", {})["parent"] = sweep.info.status
    return sides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU seconds per job's step")
    parser.add_argument("--points", type=int, default=8, help="jobs in the sweep")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers")
    parser.add_argument("--skip-fixed", action="store_true", help="skip the fixed costs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    for name in THREAD_VARS:
        os.environ[name] = "1"

    root = make_project("sweep")
    n, rate = calibrate(args.seconds)
    write_notebook(root, n)
    print(f"project: {root} (temporary); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"step loop: n = {n:,} ({rate / 1e6:.1f} M iterations/s here, ~{args.seconds:g} s)")
    points = [str(k) for k in range(1, args.points + 1)]
    try:
        # warm-up, not measured: the store, the experiment, the disk caches of both commands
        timed([*command("cellops"), "run", "spin.ipynb", "-p", "n", "1000", "--no-progress"], root)
        run = [*command("cellops"), "run", "spin.ipynb", "-p", "variant", "1", "--no-progress"]
        sequential = [timed([*run, "-p", "point", point], root) for point in points]
        sweep = timed([*command("cellops"), "sweep", "spin.ipynb", "-p", "point", *points,
                       "-p", "variant", "2", "--workers", str(args.workers), "--no-progress"],
                      root)  # fmt: skip
        costs = {} if args.skip_fixed else fixed_costs()
        sides = recorded(root)

        total = sum(sequential)
        ratio = total / sweep
        print()
        print(f"{args.points} jobs of ~{args.seconds:g} s single-threaded work each")
        print(f"  one after another (cellops run x{args.points})     {total:8.1f} s   "
              f"(per job: median {statistics.median(sequential):.1f} s)")  # fmt: skip
        print(f"  cellops sweep --workers {args.workers}                {sweep:8.1f} s")
        for side in ("sequential", "sweep"):
            entry = sides.get(side, {})
            durations = entry.get("duration_s") or []
            median = statistics.median(durations) if durations else float("nan")
            print(f"  {side:<10} jobs {entry.get('jobs')}, steps {entry.get('states')}, "
                  f"step duration_s median {median:.2f} s"
                  + (f", sweep run {entry['parent']}" if "parent" in entry else ""))  # fmt: skip
        if costs:
            print()
            print("  fixed costs (measured in this process)")
            for label, seconds in costs.items():
                print(f"    {label:<34}{seconds:7.2f} s")
        print()
        print(f"  sweep vs one after another: {ratio:.2f}x faster   "
              f"goal >= {GOAL}x on 2 cores: {verdict(ratio >= GOAL)}")  # fmt: skip
        if (os.cpu_count() or 0) < args.workers:
            print(f"  note: {os.cpu_count()} CPU(s) for {args.workers} workers")
    finally:
        finish_project(root, args.keep)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
