"""What a `%%step` costs the user, against the same cell plain and a bare nested MLflow run.

Everything runs in one process, in a real IPython `InteractiveShell` with `%load_ext cellops`,
on the SQLite store of a temporary project. All variants run warm (the session run is open, a
first step ran, the MLflow fluent API made a run) and are interleaved round by round, each
round in a shuffled order, so drift of the machine touches them alike. Each round gives the
step a new input value, so every `%%step` repetition really executes; cache hits are measured
separately.

    python benchmarks/bench_step_overhead.py [--reps 30] [--profile]
        [--baseline REV|none] [--rounds 6] [--baseline-reps 15]

Then, against the previous cellops (`--baseline`, default `HEAD`: the last commit, right while
the change being measured is uncommitted; `8ac2115` is the commit before the step-engine
rework): the same trivial executed `%%step` in fresh processes, one running the code of a
`git worktree` of REV (`PYTHONPATH=<worktree>/magics`), one the working tree's, alternating
for `--rounds` rounds; each process warms up, then times `--baseline-reps` steps. The
worktree is removed at the end.

A measurement, not a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    clean_env,
    isolate_process,
    make_project,
    median_ms,
    remove_project,
    spread_ms,
    verdict,
)

GOAL = 1.5  # the step's latency may be at most 1.5x the bare MLflow run's
BASELINE_GOAL = 1.5  # ... and at most 1.5x the previous cellops's (9.8 ms before the rework)
BEFORE_REWORK_MS = 9.8
REPO = Path(__file__).resolve().parent.parent
WORKER_MARK = "BENCH-WORKER-RESULT "
BODY = "x = i * 2\nscore = x / 10"
STEP_CELL = f"%%step trivial --metrics score\n{BODY}"

# The peer: what a user writes to track the same cell with MLflow's fluent API, nested under a
# parent run, logging the params, metrics and tags cellops logs and the cell source as a text
# artifact. (cellops also writes a second small artifact, cellops/step.json; the peer does not.)
BARE_CELL = f"""\
with mlflow.start_run(run_name="trivial", nested=True):
    _t0 = time.perf_counter()
{textwrap.indent(BODY, "    ")}
    mlflow.log_params({{"i": i}})
    mlflow.log_metrics({{"score": score, "cellops.duration_s": time.perf_counter() - _t0}})
    mlflow.set_tags(_bench_tags)
    mlflow.log_text(_bench_source, "cellops/cell.py")
"""

# The same writes cellops makes for a step (create_run, one log_batch, the two texts,
# set_terminated), done inline with MlflowClient: what a step would cost without the thread.
SYNC_CELL = f"""\
_t0 = time.perf_counter()
{BODY}
_run = _bench_client.create_run(_bench_parent.info.experiment_id, run_name="trivial",
                                tags={{**_bench_tags, "mlflow.parentRunId": _bench_parent.info.run_id}})
_bench_client.log_batch(_run.info.run_id,
    metrics=[Metric("score", score, 0, 0), Metric("cellops.duration_s", time.perf_counter() - _t0, 0, 0)],
    params=[Param("i", str(i))], tags=[])
_bench_client.log_text(_run.info.run_id, _bench_source, "cellops/cell.py")
_bench_client.log_text(_run.info.run_id, _bench_step_json, "cellops/step.json")
_bench_client.set_terminated(_run.info.run_id)
"""  # noqa: E501


def run_cell(shell, code: str) -> float:
    """Seconds `shell.run_cell(code)` took; the cell's own output is swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        result = shell.run_cell(code)
        elapsed = time.perf_counter() - started
    result.raise_error()
    return elapsed


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="repetitions per variant")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the step cells (main thread)"
    )
    parser.add_argument(
        "--baseline", default="HEAD", metavar="REV",
        help="the previous cellops to compare with (a git revision), or 'none' (default: HEAD)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=6, help="baseline rounds (processes each)")
    parser.add_argument(
        "--baseline-reps", type=int, default=15, help="timed steps per baseline process"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.baseline_reps)
    reps = args.reps

    here = os.getcwd()
    root = make_project("overhead")
    isolate_process(root)
    print(f"project: {root} (temporary); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    try:
        _bench(root, reps, args.profile)
    finally:
        os.chdir(here)
        remove_project(root)
    if args.baseline.lower() != "none":
        compare_with_baseline(args.baseline, args.rounds, args.baseline_reps)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


def new_shell():
    """A real IPython shell with `%load_ext cellops`; the seconds the extension took to load."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # leave the user's IPython history alone
    shell = InteractiveShell.instance(config=config)
    started = time.perf_counter()
    shell.run_line_magic("load_ext", "cellops")
    return shell, time.perf_counter() - started


def _bench(root: Path, reps: int, profile: bool) -> int:
    shell, load_ext_s = new_shell()

    from mlflow.tracking import MlflowClient

    from cellops.store.session import current_session

    session = current_session()
    tracker = session.tracker
    client = MlflowClient(session.settings.tracking_uri)

    # -- warm-up: the first step waits for the session run (MLflow import, a new store) -------
    shell.user_ns["i"] = -1
    cold_step_s = run_cell(shell, STEP_CELL)
    cold_flush_s = timed(tracker.flush)
    for value in (-2, -3):
        shell.user_ns["i"] = value
        run_cell(shell, STEP_CELL)
        tracker.flush()

    # the peer logs exactly the tags cellops wrote on a step run (minus the ones MLflow sets)
    warm_run = client.search_runs(
        [session.run.experiment_id], "tags.`cellops.step` = 'trivial'", max_results=1
    )[0]
    tags = {
        k: v
        for k, v in warm_run.data.tags.items()
        if k not in ("mlflow.runName", "mlflow.parentRunId")
    }
    step_json = client.download_artifacts(warm_run.info.run_id, "cellops/step.json", str(root))
    shell.user_ns.update(
        _bench_tags=tags,
        _bench_source=STEP_CELL,
        _bench_step_json=Path(step_json).read_text(),
        _bench_client=client,
    )
    run_cell(
        shell,
        "import time, mlflow\n"
        "from mlflow.entities import Metric, Param\n"
        f"mlflow.set_tracking_uri({session.settings.tracking_uri!r})\n"
        f"mlflow.set_experiment(experiment_id={session.run.experiment_id!r})\n"
        "_bench_parent = mlflow.start_run(run_name='bare MLflow parent')\n",
    )
    for value in (-2, -3):
        shell.user_ns["i"] = value
        run_cell(shell, BARE_CELL)
        run_cell(shell, SYNC_CELL)
        run_cell(shell, BODY)

    # -- interleaved rounds: every variant once per round, in a shuffled order -----------------
    times: dict[str, list[float]] = {k: [] for k in ("plain", "step", "flush", "bare", "sync")}

    def step_then_flush() -> None:
        times["step"].append(run_cell(shell, STEP_CELL))
        times["flush"].append(timed(tracker.flush))

    variants = {
        "plain": lambda: times["plain"].append(run_cell(shell, BODY)),
        "step": step_then_flush,
        "bare": lambda: times["bare"].append(run_cell(shell, BARE_CELL)),
        "sync": lambda: times["sync"].append(run_cell(shell, SYNC_CELL)),
    }
    order = random.Random(0)
    for round_ in range(reps):
        shell.user_ns["i"] = round_  # a new input: the step's cache key is new, so it runs
        names = list(variants)
        order.shuffle(names)
        for name in names:
            variants[name]()

    # -- cache hits: the same inputs again ------------------------------------------------------
    hit, hit_flush = [], []
    for round_ in range(reps):
        shell.user_ns["i"] = round_
        hit.append(run_cell(shell, STEP_CELL))
        hit_flush.append(timed(tracker.flush))

    # -- back to back, as in a Papermill job: no pause for the writer thread to catch up -------
    def back_to_back(cell: str, offset: int, flush: bool) -> float:
        started = time.perf_counter()
        for k in range(reps):
            shell.user_ns["i"] = offset + k
            with contextlib.redirect_stdout(io.StringIO()):
                shell.run_cell(cell).raise_error()
        if flush:
            tracker.flush()
        return (time.perf_counter() - started) / reps

    b2b_step = back_to_back(STEP_CELL, 10_000, flush=True)
    b2b_bare = back_to_back(BARE_CELL, 10_000, flush=False)

    profile_text = None
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for k in range(reps):
            shell.user_ns["i"] = 20_000 + k
            run_cell(shell, STEP_CELL)
            tracker.flush()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        profile_text = out.getvalue()

    run_cell(shell, "mlflow.end_run()")
    tracker.flush()

    # -- did every repetition really do what it claims? (read back with MlflowClient) ----------
    step_runs = client.search_runs(
        [session.run.experiment_id],
        f"tags.`mlflow.parentRunId` = '{session.run.run_id}' and tags.`cellops.step` = 'trivial'",
        max_results=5000,
    )
    states: dict[str, int] = {}
    for run in step_runs:
        state = run.data.tags.get("cellops.state", "?")
        states[state] = states.get(state, 0) + 1
    expected_executed = 3 + reps + reps + (reps if profile else 0)

    shell.run_line_magic("unload_ext", "cellops")

    # -- report -------------------------------------------------------------------------------
    plain, step, flush, bare, sync = (times[k] for k in ("plain", "step", "flush", "bare", "sync"))
    durable = [s + f for s, f in zip(step, flush, strict=True)]
    hit_durable = [s + f for s, f in zip(hit, hit_flush, strict=True)]
    ratio = median_ms(step) / median_ms(bare)
    print()
    print(f"`%%step` overhead, trivial cell, medians of {reps} warm repetitions")
    print(f"  cell: {BODY!r}; the input i changes every round, so each %%step really executes")
    print()
    print(f"  {'plain cell (shell.run_cell)':<48}{spread_ms(plain)}")
    print(f"  {'%%step, executed: latency the user waits for':<48}{spread_ms(step)}")
    print(f"  {'  + until its records are durable (flush)':<48}{spread_ms(flush)}")
    print(f"  {'  = executed step, durable':<48}{spread_ms(durable)}")
    print(f"  {'%%step, cache hit: latency':<48}{spread_ms(hit)}")
    print(f"  {'  = cache hit, durable':<48}{spread_ms(hit_durable)}")
    print(f"  {'bare nested mlflow.start_run ... end_run':<48}{spread_ms(bare)}")
    print(f"  {'same writes as cellops, inline MlflowClient':<48}{spread_ms(sync)}")
    print()
    print("  ratios (medians)")
    goal = f"goal <= {GOAL}x: {verdict(ratio <= GOAL)}"
    print(f"    step latency / bare MLflow run     {ratio:6.2f}x   {goal}")
    print(f"    step durable / bare MLflow run     {median_ms(durable) / median_ms(bare):6.2f}x")
    print(f"    cache hit / bare MLflow run        {median_ms(hit) / median_ms(bare):6.2f}x")
    print(f"    step latency - plain cell          {median_ms(step) - median_ms(plain):6.1f} ms")
    print(f"    bare MLflow - plain cell           {median_ms(bare) - median_ms(plain):6.1f} ms")
    print()
    print(f"  back to back ({reps} cells, no pause between them, as in a Papermill job)")
    print(f"    %%step, per cell incl. the final flush   {b2b_step * 1000:8.1f} ms")
    print(f"    bare MLflow run, per cell               {b2b_bare * 1000:8.1f} ms")
    print(f"    ratio                                   {b2b_step / b2b_bare:8.2f}x")
    print()
    print("  one-off costs (not in the medians)")
    print(f"    %load_ext cellops                        {load_ext_s * 1000:8.1f} ms")
    print(f"    first %%step (waits for the session run) {cold_step_s * 1000:8.1f} ms")
    print(f"      + its flush                            {cold_flush_s * 1000:8.1f} ms")
    print()
    print(f"  check via MlflowClient: step runs by state {dict(sorted(states.items()))}")
    print(f"    expected executed={expected_executed} cached={reps}")
    if states.get("executed") != expected_executed or states.get("cached") != reps:
        print("    WARNING: the runs recorded do not match the repetitions; figures are suspect")
    print()
    print(
        "  How: every MLflow write of a step (create the run, one log_batch of params, metrics\n"
        "  and tags, the cell source and step.json as text artifacts, end the run) is queued to\n"
        "  ONE background thread (cellops.store.tracker.Tracker), in order. The cell returns once\n"
        "  the cache key is computed, the outputs are stored and the jobs are queued; the run\n"
        "  is written while the user reads the result. The queue is flushed before anything\n"
        "  reads the store back (a cache hit on a still-pending entry waits for its run id,\n"
        "  `%cellops status`, `%cellops flush`), when the kernel exits (atexit ends the\n"
        "  session and waits for every write) and, in a Papermill job, after every cell\n"
        "  (Papermill stops the kernel 2.5 s after the last cell, too soon to rely on atexit:\n"
        "  a job has nobody waiting on latency). A write that fails makes the next step refuse\n"
        "  to run until the store answers. 'durable' above is the honest total: latency plus\n"
        "  the time until the records are committed to SQLite."
    )
    if profile_text:
        print()
        print("  cProfile of %%step cells (main thread only; the writer thread is not profiled)")
        print(profile_text)
    return 0


# -- against the previous cellops: the same trivial step, each version in its own processes ---


def _worker(reps: int) -> int:
    """In a fresh process (run by `compare_with_baseline`): warm up, then time `reps` executed
    trivial steps (each flushed before the next, as in the rounds above) and the plain cell;
    print the figures as one JSON line. Whichever cellops `PYTHONPATH` gives is measured."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    root = make_project("overhead-worker")
    isolate_process(root)
    try:
        shell, load_ext_s = new_shell()
        from mlflow.tracking import MlflowClient

        import cellops
        from cellops.store.session import current_session

        session = current_session()
        tracker = session.tracker
        for value in (-1, -2, -3):  # warm-up: the session run, imports, a first step
            shell.user_ns["i"] = value
            run_cell(shell, STEP_CELL)
            tracker.flush()
            run_cell(shell, BODY)
        step, step_cpu, flush, plain = [], [], [], []
        for k in range(reps):
            shell.user_ns["i"] = k  # a new input: every step executes
            plain.append(run_cell(shell, BODY))
            cpu_started = time.thread_time()  # this (the main) thread's CPU: less load-bound
            step.append(run_cell(shell, STEP_CELL))
            step_cpu.append(time.thread_time() - cpu_started)
            flush.append(timed(tracker.flush))
        client = MlflowClient(session.settings.tracking_uri)
        runs = client.search_runs(
            [session.run.experiment_id], "tags.`cellops.step` = 'trivial'", max_results=1000
        )
        states: dict[str, int] = {}
        for run in runs:
            state = run.data.tags.get("cellops.state", "?")
            states[state] = states.get(state, 0) + 1
        shell.run_line_magic("unload_ext", "cellops")
        result = {
            "file": cellops.__file__,
            "step": step,
            "step_cpu": step_cpu,
            "flush": flush,
            "plain": plain,
            "load_ext": load_ext_s,
            "states": states,
        }
    finally:
        os.chdir(REPO)
        remove_project(root)
    print(WORKER_MARK + json.dumps(result))
    return 0


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _run_worker(code_dir: Path, reps: int) -> dict[str, object]:
    """One fresh process measuring the cellops under `code_dir` (its `magics` folder)."""
    env = {**clean_env(), "PYTHONPATH": str(code_dir / "magics")}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    command += ["--baseline-reps", str(reps)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [x for x in done.stdout.splitlines() if x.startswith(WORKER_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker for {code_dir} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len(WORKER_MARK) :])
    where = Path(result["file"]).resolve()
    if not where.is_relative_to((code_dir / "magics").resolve()):
        raise RuntimeError(f"the worker for {code_dir} imported cellops from {where}")
    return result


def compare_with_baseline(rev: str, rounds: int, reps: int) -> None:
    print()
    try:
        commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    except RuntimeError as exc:
        print(f"against the previous cellops: skipped, {exc}")
        return
    described = _git("log", "-1", "--format=%h %s", commit)
    dirty = _git("status", "--porcelain", "--", "magics")
    if not dirty and commit == _git("rev-parse", "HEAD"):
        print(f"note: magics/ has no uncommitted changes, so {rev} is the working tree's own")
        print("code (the figures below measure the noise); to compare with an older cellops,")
        print("pass --baseline COMMIT, e.g. the last commit before the change being measured")
    worktree = Path(tempfile.mkdtemp(prefix="cellops-baseline-"))
    worktree.rmdir()  # git creates it
    results: dict[str, list[dict[str, object]]] = {"baseline": [], "new": []}
    try:
        _git("worktree", "add", "--detach", "--quiet", str(worktree), commit)
        code = {"baseline": worktree, "new": REPO}
        for round_ in range(rounds):  # alternate which goes first
            order = ["baseline", "new"] if round_ % 2 == 0 else ["new", "baseline"]
            for which in order:
                results[which].append(_run_worker(code[which], reps))
    except RuntimeError as exc:
        print(f"against the previous cellops: stopped, {exc}")
        return
    finally:
        try:
            _git("worktree", "remove", "--force", str(worktree))
        except RuntimeError:
            shutil.rmtree(worktree, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=REPO, capture_output=True)
    _report_baseline(rev, described, dirty, worktree, results, rounds, reps)


def _report_baseline(rev, described, dirty, worktree, results, rounds, reps) -> None:
    def pooled(which: str, key: str) -> list[float]:
        return [x for r in results[which] for x in r[key]]

    def per_round(which: str) -> str:
        return ", ".join(f"{median_ms(r['step']):.1f}" for r in results[which])

    changed = len(dirty.splitlines())
    print(f"against the previous cellops: {rev} = {described}")
    print(f"  baseline code: a git worktree of it ({worktree}, removed), PYTHONPATH=<it>/magics")
    print(f"  new code: this working tree ({changed} uncommitted changes under magics/)")
    print(f"  {rounds} rounds of 2 fresh processes, alternating who goes first; each process")
    print(f"  warms up (3 steps), then times {reps} executed trivial steps (a new i each, flushed")
    print(f"  before the next): n={rounds * reps} per version")
    for which in ("baseline", "new"):
        files = {r["file"] for r in results[which]}
        print(f"  {which}: cellops imported from {', '.join(sorted(files))}")
    print()
    short = described.split()[0]
    for which, label in (
        ("baseline", f"previous cellops ({rev} {short})"),
        ("new", "working tree"),
    ):
        print(f"  {label}")
        rows = (
            ("%%step, executed: latency the user waits for", spread_ms(pooled(which, "step"))),
            ("  per-process medians", f"{per_round(which)} ms"),
            ("  its main thread's CPU time", spread_ms(pooled(which, "step_cpu"))),
            ("  + until its records are durable (flush)", spread_ms(pooled(which, "flush"))),
            ("plain cell", spread_ms(pooled(which, "plain"))),
        )
        for name, figure in rows:
            print(f"    {name:<46}{figure}")
        load = statistics.median(r["load_ext"] for r in results[which]) * 1000
        print(f"    {'%load_ext cellops (median of the processes)':<46}{load:8.1f} ms")
        states: dict[str, int] = {}
        for r in results[which]:
            for state, n in r["states"].items():
                states[state] = states.get(state, 0) + n
        expected = rounds * (reps + 3)
        ok = states == {"executed": expected}
        note = "" if ok else f"  WARNING: expected executed={expected}; figures are suspect"
        print(f"    {'check via MlflowClient: step runs by state':<46}{states}{note}")
    base, new = median_ms(pooled("baseline", "step")), median_ms(pooled("new", "step"))
    ratio = new / base
    print()
    goal = f"goal <= {BASELINE_GOAL}x: {verdict(ratio <= BASELINE_GOAL)}"
    round_ratios = [
        median_ms(n["step"]) / median_ms(b["step"])
        for b, n in zip(results["baseline"], results["new"], strict=True)
    ]
    print("  ratios (medians of the executed steps' latency)")
    print(f"    {'new / previous':<42}{ratio:6.2f}x   {goal}")
    print(f"    {'new - previous':<42}{new - base:+6.1f} ms")
    print(f"    {'per round':<42}{', '.join(f'{r:.2f}x' for r in round_ratios)}")
    cpu_ratio = median_ms(pooled("new", "step_cpu")) / median_ms(pooled("baseline", "step_cpu"))
    print(f"    {'main-thread CPU time, new / previous':<42}{cpu_ratio:6.2f}x   (less load-bound)")
    label = f"new / {BEFORE_REWORK_MS} ms (measured before the rework)"
    print(f"    {label:<42}{new / BEFORE_REWORK_MS:6.2f}x   (another day and load: for reference)")


if __name__ == "__main__":
    sys.exit(main())
