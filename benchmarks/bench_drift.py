"""Drift on 1M rows x 25 columns: Evidently's DataDriftPreset against cellops' native engine.

Data: 1M reference and 1M current rows, 20 numeric columns (5 of them shifted) and 5
categorical ones, made with seeded NumPy in this process and written to Parquet (row groups of
131,072 rows) in a temporary project. Each measurement runs in a fresh Python process, so
every peak memory (`ru_maxrss`) is of that work alone; from it is subtracted the peak of a
process that only makes the same imports.

(a) Evidently: the `evidently` engine (DataDriftPreset through Evidently 0.7's API, HTML saved)
    on the two DataFrames, read from Parquet beforehand (the read is not timed, its memory is).
(b) native from raw data: `cellops.drift(ref.parquet, cur.parquet)`, reading the files as the
    `cellops drift` command does (in row-group chunks).
(c) native from the stored reference profile: `cellops.drift(profile.json, cur.parquet)`; the
    profile is built beforehand with `build_profile(ref.parquet)` (timed separately).
Also: the imports each path needs (`import cellops.monitoring.api` against `import evidently`), and
the whole `cellops drift REF CUR` command.

    python benchmarks/bench_drift.py [--rows 1000000] [--reps 3] [--keep]

Evidently takes minutes on the full size; `--rows 100000` is a quick check. A measurement, not
a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import clean_env, finish_project, isolate_process, make_project, verdict

GOAL_SPEED = 100.0  # native from raw data at least 100x faster than Evidently
GOAL_PROFILE = 300.0  # native from the stored profile at least 300x faster
GOAL_MEMORY = 0.5  # native peak memory at most half of Evidently's
NUMERIC, CATEGORICAL, SHIFTED = 20, 5, 5
ROW_GROUP = 131_072
HERE = Path(__file__).resolve()


# -- the data ----------------------------------------------------------------------------------


def make_frame(rows: int, current: bool, seed: int):
    """20 numeric columns (f0-f4 shifted in current), 5 categorical (c0-c4), a few missing."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, int(current)])
    columns = {}
    for i in range(NUMERIC):
        shift = current and i < SHIFTED
        form = i % 4
        if form == 0:
            values = rng.normal(0.3 if shift else 0.0, 1.0, rows)
        elif form == 1:
            values = rng.lognormal(0.0, 0.8 if shift else 0.6, rows)
        elif form == 2:
            values = rng.uniform(0.0, 1.2 if shift else 1.0, rows)
        else:
            values = rng.poisson(55 if shift else 50, rows).astype("float64")
        if i == 7:  # some missing values
            values[rng.random(rows) < 0.02] = np.nan
        columns[f"f{i}"] = values
    for j in range(CATEGORICAL):
        k = (5, 12, 30, 80, 200)[j]
        weights = 1.0 / np.arange(1, k + 1)
        labels = np.array([f"c{j}_{v}" for v in range(k)], dtype=object)
        values = labels[rng.choice(k, rows, p=weights / weights.sum())]
        if j == 1:
            values[rng.random(rows) < 0.01] = None
        columns[f"c{j}"] = values
    return pd.DataFrame(columns)


def write_data(folder: Path, rows: int) -> tuple[Path, Path]:
    paths = []
    for current, name in ((False, "reference.parquet"), (True, "current.parquet")):
        frame = make_frame(rows, current, seed=2024)
        path = folder / name
        frame.to_parquet(path, row_group_size=ROW_GROUP, index=False)
        paths.append(path)
        del frame
    return paths[0], paths[1]


# -- the measured processes ----------------------------------------------------------------------

IMPORTS = {
    "evidently": [
        "pandas",
        "pyarrow.parquet",
        "scipy.stats",
        "cellops.monitoring.engines.evidently",
        "evidently",
        "evidently.presets",
    ],  # fmt: skip
    "native": [
        "pandas",
        "pyarrow.parquet",
        "scipy.stats",
        "cellops.monitoring.api",
        "cellops.monitoring.profile",
    ],  # fmt: skip
}


def timed(call: Callable[[], Any], out: dict) -> Any:
    """Run `call`; append its wall and CPU seconds (all threads) to out["seconds"], ["cpu"]."""
    cpu, started = _cpu(), time.perf_counter()
    value = call()
    out.setdefault("seconds", []).append(time.perf_counter() - started)
    out.setdefault("cpu", []).append(_cpu() - cpu)
    return value


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def child(mode: str, data: Path, reps: int) -> dict:
    """Run one measurement in this (fresh) process; the figures as a dict."""
    import importlib

    kind = "evidently" if mode.startswith("evidently") else "native"
    for name in IMPORTS[kind]:
        importlib.import_module(name)
    out: dict = {"mode": mode}
    reference, current = data / "reference.parquet", data / "current.parquet"
    profile_path = data / "profile.json"
    if mode == "evidently":
        import pandas as pd

        from cellops.monitoring.engines import get_engine

        engine = get_engine("evidently")
        started = time.perf_counter()
        frames = pd.read_parquet(reference), pd.read_parquet(current)
        out["read_s"] = time.perf_counter() - started
        result = timed(lambda: engine.run(frames[0], frames[1]), out)
        out["result"] = result.to_dict()
        out["report_bytes"] = Path(result.report_path).stat().st_size
    elif mode == "build-profile":
        from cellops.monitoring.profile import build_profile

        timed(lambda: build_profile(reference).save(profile_path), out)
        out["profile_bytes"] = profile_path.stat().st_size
    elif mode in ("native", "native-profile"):
        from cellops.monitoring.api import drift

        source = reference if mode == "native" else profile_path
        for _ in range(reps):
            result = timed(lambda: drift(source, current, engine="native"), out)
        out["result"] = result.to_dict()
        out["evidently_imported"] = "evidently" in sys.modules
    out["maxrss_mb"] = peak_mb()
    out["cpu_s"] = statistics.median(out.get("cpu", [0.0]))
    return out


def peak_mb() -> float:
    """This process's peak resident memory since its exec, in MB.

    Linux's VmHWM; `ru_maxrss` would also count the pages of the parent at fork time, since the
    kernel carries the old address space's peak over an exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str, data: Path, root: Path, reps: int = 1, rows: int = 0) -> dict:
    """Run `mode` in a fresh process (this one stays small: it never holds the data)."""
    args = [sys.executable, str(HERE), "--child", mode, "--data", str(data), "--reps", str(reps),
            "--rows", str(rows)]  # fmt: skip
    done = subprocess.run(args, cwd=root, env=clean_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed_command(
    args: list[str], root: Path, reps: int, ok: tuple[int, ...] = (0,)
) -> list[float]:
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        done = subprocess.run(args, cwd=root, env=clean_env(), capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if done.returncode not in ok:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


# -- the report ----------------------------------------------------------------------------------


def decisions(result: dict) -> dict[str, bool]:
    return {c["column"]: bool(c["drifted"]) for c in result["columns"]}


def compare(name: str, ours: dict, theirs: dict) -> bool:
    a, b = decisions(ours), decisions(theirs)
    differ = sorted(c for c in b if a.get(c) != b[c])
    tests = {c["column"]: c["test"] for c in ours["columns"]}
    same_test = all(tests.get(c["column"]) == c["test"] for c in theirs["columns"])
    print(f"    {name}: decisions {'IDENTICAL' if not differ else 'DIFFER on ' + str(differ)} "
          f"({sum(a.values())} of {len(a)} columns drifted; Evidently {sum(b.values())}); "
          f"same test per column: {'yes' if same_test else 'no'}")  # fmt: skip
    return not differ


def score_gap(ours: dict, theirs: dict) -> float:
    """The largest |score difference| over columns where both ran the same test."""
    mine = {c["column"]: c for c in ours["columns"]}
    gaps = [
        abs(mine[c["column"]]["score"] - c["score"])
        for c in theirs["columns"]
        if c["score"] is not None
        and mine[c["column"]]["score"] is not None
        and mine[c["column"]]["test"] == c["test"]
    ]
    return max(gaps, default=float("nan"))


def run(rows: int, reps: int, keep: bool) -> None:
    root = make_project("bench-drift")
    isolate_process(root)
    print(f"project: {root} (temporary); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cpus")  # fmt: skip
    try:
        data = root / "data"
        data.mkdir()
        started = time.perf_counter()
        measure("make-data", data, root, rows=rows)
        sizes = ", ".join(
            f"{p.name} {p.stat().st_size / 2**20:.0f} MB" for p in sorted(data.glob("*.parquet"))
        )
        print(f"data: {rows:,} + {rows:,} rows x {NUMERIC + CATEGORICAL} columns ({NUMERIC} "
              f"numeric, {SHIFTED} of them shifted; {CATEGORICAL} categorical), made in "
              f"{time.perf_counter() - started:.1f} s; {sizes}")  # fmt: skip
        runs = {f"{kind}-imports": measure(f"{kind}-imports", data, root) for kind in IMPORTS}
        runs["build"] = measure("build-profile", data, root)
        runs["native"] = measure("native", data, root, reps)
        runs["profile"] = measure("native-profile", data, root, reps)
        print("running Evidently ... ", end="", flush=True)
        runs["evidently"] = measure("evidently", data, root)
        print(f"{runs['evidently']['seconds'][0]:.1f} s")
        report_figures(runs, reps)
        report_startup(root, data)
    finally:
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
        finish_project(root, keep)


def report_figures(runs: dict, reps: int) -> None:
    ev, native, profile, build = (runs[k] for k in ("evidently", "native", "profile", "build"))
    over = {
        name: runs[name]["maxrss_mb"] - runs[kind]["maxrss_mb"]
        for name, kind in (("evidently", "evidently-imports"), ("native", "native-imports"),
                           ("profile", "native-imports"), ("build", "native-imports"))
    }  # fmt: skip
    t_ev = ev["seconds"][0]
    t_native, t_profile = (
        statistics.median(native["seconds"]),
        statistics.median(profile["seconds"]),
    )

    def line(label: str, seconds: float, name: str, note: str = "") -> None:
        cpu, peak = runs[name]["cpu_s"], runs[name]["maxrss_mb"]
        print(f"    {label:<40} {seconds:8.2f} s (cpu {cpu:7.2f} s)  peak {peak:6.0f} MB, "
              f"+{over[name]:5.0f} MB over imports{note}")  # fmt: skip

    print(f"\ntimes (each in its own process, after its imports; native: median of {reps})")
    line("(a) Evidently, from DataFrames", t_ev, "evidently",
         f" (+ {ev['read_s']:.1f} s reading Parquet, not timed)")  # fmt: skip
    best = {k: min(runs[k]["seconds"]) for k in ("native", "profile")}
    line(
        "(b) native, from the Parquet files", t_native, "native", f" (best {best['native']:.2f} s)"
    )
    line("(c) native, from the stored profile", t_profile, "profile",
         f" (best {best['profile']:.2f} s)")  # fmt: skip
    line("    building the profile (once)", build["seconds"][0], "build",
         f" (JSON {build['profile_bytes'] / 1024:.0f} KB)")  # fmt: skip
    print(f"    imports alone: {runs['evidently-imports']['maxrss_mb']:.0f} MB (Evidently's), "
          f"{runs['native-imports']['maxrss_mb']:.0f} MB (native); Evidently's HTML report "
          f"{ev['report_bytes'] / 2**20:.1f} MB")  # fmt: skip

    speed, speed_profile, memory = (
        t_ev / t_native,
        t_ev / t_profile,
        over["native"] / over["evidently"],
    )
    print("\nratios")
    print(f"    speed, native from raw data: {speed:6.0f}x Evidently's (cpu "
          f"{ev['cpu_s'] / native['cpu_s']:.0f}x); goal >= {GOAL_SPEED:.0f}x: "
          f"{verdict(speed >= GOAL_SPEED)}")  # fmt: skip
    print(f"    speed, native from profile:  {speed_profile:6.0f}x Evidently's (cpu "
          f"{ev['cpu_s'] / profile['cpu_s']:.0f}x); goal >= {GOAL_PROFILE:.0f}x: "
          f"{verdict(speed_profile >= GOAL_PROFILE)}")  # fmt: skip
    print(f"    peak memory over imports, native / Evidently: {memory:.2f} (from profile: "
          f"{over['profile'] / over['evidently']:.2f}); goal <= {GOAL_MEMORY}: "
          f"{verdict(memory <= GOAL_MEMORY)}")  # fmt: skip

    print("\ndecisions")
    compare("(b) native, raw data", native["result"], ev["result"])
    compare("(c) native, profile ", profile["result"], ev["result"])
    print(f"    largest score gap where the tests match: raw data "
          f"{score_gap(native['result'], ev['result']):.2g}, profile "
          f"{score_gap(profile['result'], ev['result']):.2g}")  # fmt: skip
    print(f"    Evidently imported by the native path: "
          f"{'YES' if native['evidently_imported'] else 'no'}")  # fmt: skip


def report_startup(root: Path, data: Path) -> None:
    py = sys.executable
    bare = statistics.median(timed_command([py, "-c", "pass"], root, 5))
    print(f"\nstart-up: a fresh process's wall time over a bare python ({bare * 1000:.0f} ms), "
          "median of 5")  # fmt: skip
    modules = ("cellops.cli", "cellops.monitoring.api", "evidently", "evidently.presets")
    times = {}
    for module in modules:
        times[module] = statistics.median(timed_command([py, "-c", f"import {module}"], root, 5))
        print(f"    import {module:<28} {(times[module] - bare) * 1000:8.0f} ms")
    ours = times["cellops.cli"] - bare
    print(
        f"    `import evidently` takes {(times['evidently'] - bare) / ours:.0f}x the imports of "
        "the `cellops drift` command (cellops.cli; the engine's own come when it runs)"
    )
    cli = Path(py).parent / "cellops"
    if cli.exists():
        command = [str(cli), "drift", str(data / "profile.json"), str(data / "current.parquet")]
        whole = timed_command(command, root, 3, ok=(0, 1))  # exit 1: dataset drift found
        print(f"    `cellops drift profile.json current.parquet`, the whole command: "
              f"{statistics.median(whole):.2f} s")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each data set")
    parser.add_argument("--reps", type=int, default=3, help="timed native runs (median shown)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "make-data":
            write_data(args.data, args.rows)
            figures = {}
        elif args.child.endswith("-imports"):
            import importlib

            for name in IMPORTS[args.child.removesuffix("-imports")]:
                importlib.import_module(name)
            figures = {"maxrss_mb": peak_mb()}
        else:
            figures = child(args.child, args.data, args.reps)
        print(json.dumps(figures))
        return 0
    run(args.rows, args.reps, args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
