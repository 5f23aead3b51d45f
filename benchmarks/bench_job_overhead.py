"""What `cellops run` costs over plain `papermill` on the same small notebook.

Both commands run as subprocesses from the virtual environment's `bin/`, in the same
temporary project, on a 4-cell notebook (`%load_ext cellops`, a parameters cell, one tiny
`%%step`, a print). Papermill runs the notebook's `%%step` too, so the difference is what the
job adds: parameter checks, the manifest, the job run's records, the executed notebook and its
HTML copy as artifacts. After one warm-up each (the SQLite store exists), the two alternate;
every run gets a new `seed`, so its step really executes.

    python benchmarks/bench_job_overhead.py [--reps 5] [--profile]

`--profile` also runs `cellops run` once under `python -X importtime` and once under cProfile
and prints where the job process spends its time. A measurement, not a test: exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
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
    spread_ms,
    verdict,
)

GOAL = 1.3  # `cellops run` within 1.3x the plain papermill command
BIN = Path(sys.executable).parent


NOTEBOOK = notebook_of(
    code_cell("%load_ext cellops", "load"),
    code_cell("seed = 0\nscale = 2.0", "params", ("parameters",)),
    code_cell("%%step tiny --metrics score\nscore = (seed + 1) * scale", "tiny"),
    code_cell('print(f"score={score}")', "show"),
)
EMPTY = notebook_of(code_cell("pass", "empty"))


def command(name: str) -> list[str]:
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


CPU_SECONDS: list[float] = []  # CPU time (user + sys) of each `timed` command and its kernel


def timed(args: list[str], root: Path, env: dict[str, str] | None = None) -> float:
    """Wall seconds of the command; its CPU seconds, with its waited-for children (the kernel),
    are appended to CPU_SECONDS: a figure that load on the machine disturbs much less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, cwd=root, env=env or clean_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def cellops_run(seed: int) -> list[str]:
    return [*command("cellops"), "run", "small.ipynb", "-p", "seed", str(seed), "--no-progress"]


def papermill_run(seed: int, output: str) -> list[str]:
    return [*command("papermill"), "small.ipynb", output, "-p", "seed", str(seed),
            "--no-progress-bar", "--log-level", "ERROR"]  # fmt: skip


def write_notebooks(root: Path) -> None:
    (root / "small.ipynb").write_text(json.dumps(NOTEBOOK, indent=1))
    (root / "empty.ipynb").write_text(json.dumps(EMPTY, indent=1))
    (root / ".gitignore").write_text(".cellops/\nreports/\nout/\n")
    (root / "out").mkdir()
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "notebooks"], cwd=root, check=True, env=env)


def recorded(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Job runs by status and step runs by state, read back with MlflowClient."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.cellops' / 'mlflow.db'}")
    jobs: dict[str, int] = {}
    steps: dict[str, int] = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            tags = run.data.tags
            if tags.get("cellops.kind") == "job":
                jobs[run.info.status] = jobs.get(run.info.status, 0) + 1
            elif tags.get("cellops.kind") == "step":
                state = tags.get("cellops.state", "?")
                steps[state] = steps.get(state, 0) + 1
    return jobs, steps


def profile(root: Path, seed: int) -> None:
    """Where one `cellops run` spends its time: imports (-X importtime) and cProfile."""
    print()
    print("profile of one `cellops run` (job process only; the kernel is another process)")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / "cellops"), *cellops_run(seed)[1:]],
        cwd=root, env=clean_env(), capture_output=True, text=True,
    )  # fmt: skip
    top: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # a top-level import, cumulative microseconds
            name = match.group(3).split(".")[0]
            top[name] = top.get(name, 0) + int(match.group(1))
    total = sum(top.values())
    print(f"  imports: {total / 1e6:.2f} s in all (top-level packages, cumulative, incl. threads)")
    for name, micros in sorted(top.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {name:<28}{micros / 1e6:7.2f} s")

    stats_file = Path(tempfile.mkdtemp(prefix="cellops-prof-")) / "run.prof"
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(stats_file), str(BIN / "cellops"),
         *cellops_run(seed + 1)[1:]],
        cwd=root, env=clean_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    stats = pstats.Stats(str(stats_file))
    wanted = {
        "prepare (papermill import, inspection)": "cellops/jobs/run.py:prepare",
        "parameter_defaults": "cellops/jobs/params.py:parameter_defaults",
        "_execute (papermill: kernel, cells)": "cellops/jobs/run.py:_execute",
        "Future.result (background wait)": "concurrent/futures/_base.py:result",
        "_finish_attempt": "cellops/jobs/run.py:_finish_attempt",
        "_step_outcomes": "cellops/jobs/run.py:_step_outcomes",
        "_html_copy (nbconvert)": "cellops/jobs/run.py:_html_copy",
        "reap_dead_runs": "cellops/reaper.py:reap_dead_runs",
    }
    found: dict[str, float] = {}
    for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        key = f"{filename}:{function}"
        for label, suffix in wanted.items():
            if key.endswith(suffix):
                found[label] = found.get(label, 0.0) + row[3]  # cumulative seconds
    whole = max(row[3] for row in stats.stats.values())  # type: ignore[attr-defined]
    print(f"  cProfile, main thread, cumulative seconds (whole process {whole:.2f} s):")
    for label in wanted:
        print(f"    {label:<40}{found.get(label, 0.0):7.2f} s")
    print("  top 15 by cumulative time:")
    stats.sort_stats("cumulative").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each command")
    parser.add_argument("--profile", action="store_true", help="profile one `cellops run`")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()

    root = make_project("jobs")
    write_notebooks(root)
    print(f"project: {root} (temporary); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    try:
        seed = 1
        # warm-up, not measured: creates the store, the experiment, the kernel's caches
        timed(papermill_run(seed, "out/warm.ipynb"), root)
        timed(cellops_run(seed + 1), root)
        seed += 2
        ours: list[float] = []
        plain: list[float] = []
        ours_cpu: list[float] = []
        plain_cpu: list[float] = []
        for rep in range(args.reps):  # alternate, and swap which goes first each round
            order = ("cellops", "papermill") if rep % 2 == 0 else ("papermill", "cellops")
            for which in order:
                if which == "cellops":
                    ours.append(timed(cellops_run(seed), root))
                    ours_cpu.append(CPU_SECONDS[-1])
                else:
                    plain.append(timed(papermill_run(seed, f"out/plain-{rep}.ipynb"), root))
                    plain_cpu.append(CPU_SECONDS[-1])
                seed += 1
        # fixed costs, for reading the figures
        empty = timed([*command("papermill"), "empty.ipynb", "out/empty.ipynb",
                       "--no-progress-bar", "--log-level", "ERROR"], root)  # fmt: skip
        cli_help = timed([*command("cellops"), "run", "--help"], root)
        python = timed([sys.executable, "-c", "pass"], root)
        jobs, steps = recorded(root)

        ratio = statistics.median(ours) / statistics.median(plain)
        extra = statistics.median(ours) - statistics.median(plain)
        print()
        print(f"a 4-cell notebook (one tiny %%step), {args.reps} runs each, alternating")
        print(f"  papermill small.ipynb out.ipynb -p seed N   {spread_ms(plain)}")
        print(f"  cellops run small.ipynb -p seed N           {spread_ms(ours)}")
        print(f"  difference of medians                       {extra * 1000:8.1f} ms")
        cpu_ratio = statistics.median(ours_cpu) / statistics.median(plain_cpu)
        print(f"  CPU time, command + kernel (median)         papermill "
              f"{statistics.median(plain_cpu):.2f} s, cellops run "
              f"{statistics.median(ours_cpu):.2f} s ({cpu_ratio:.2f}x)")  # fmt: skip
        print()
        print("  fixed costs (one run each)")
        print(f"    python -c pass                            {python * 1000:8.1f} ms")
        print(f"    cellops run --help (CLI start)            {cli_help * 1000:8.1f} ms")
        print(f"    papermill on a 1-cell notebook            {empty * 1000:8.1f} ms")
        print()
        print(f"  check via MlflowClient: job runs by status {jobs}; step runs by state {steps}")
        goal = f"goal <= {GOAL}x: {verdict(ratio <= GOAL)}"
        print(f"  cellops run vs papermill: {ratio:.2f}x   {goal}")
        if args.profile:
            profile(root, seed)
    finally:
        finish_project(root, args.keep)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
