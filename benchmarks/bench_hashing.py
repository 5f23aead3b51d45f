"""Content hashing of step files: cellops' stat cache + xxh3 against DVC and md5sum.

On one 200 MB file and a folder of 2,000 small files (the same files for both tools):

(a) deciding that an unchanged step reading them (`--files-in big.bin,small`) is cached: the
    step's plan (every input hashed, the cache key computed), and the whole cached `%%step`
    cell in a real IPython shell, against `dvc status` on the same files after `dvc add`;
    goal >= 5x faster.
(b) the first hash of the 200 MB file (no stat cache: every byte read, xxh3) against
    `md5sum`; goal >= 2x faster. The file is in the page cache for both.
(c) the value digest (a step's input key) of a 100 MB float64 DataFrame (1.6M x 8, made from a
    2-D array and column by column) and of frames with an object column of strings, against
    pandas' hash_pandas_object (what the digest used before); goal for the float frame < 100 ms.

    python benchmarks/bench_hashing.py [--reps 7] [--big-mb 200] [--files 2000] [--values-only]

A measurement, not a test: it prints figures and exits 0. Works in a throw-away project.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import isolate_process, make_project, remove_project, spread_ms, verdict

STEP_GOAL = 5.0
HASH_GOAL = 2.0


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True)
    return done.stdout.strip() or f"load average {os.getloadavg()}"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def write_data(root: Path, big_mb: int, files: int) -> None:
    block = os.urandom(1 << 20)
    with open(root / "big.bin", "wb") as fh:
        for i in range(big_mb):
            fh.write(block[i % 97 :] + block[: i % 97])  # every MiB differs
    small = root / "small"
    for i in range(files):
        folder = small / f"part{i // 200:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.txt").write_text(f"row {i}\n" * (1 + i % 50))


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--values-only", action="store_true", help="only (c), no project")
    args = parser.parse_args()
    if args.values_only:
        _value_digests(args.reps)
        return 0
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    here = os.getcwd()
    root = make_project("hashing")
    isolate_process(root)
    print(f"start:  {uptime()}  ({os.cpu_count()} CPUs)")
    try:
        _bench(root, args)
    finally:
        os.chdir(here)
        remove_project(root)
        shutil.rmtree(root.parent / f"{root.name}-remote", ignore_errors=True)
        print(f"end:    {uptime()}")
    return 0


def _bench(root: Path, args: argparse.Namespace) -> None:
    from cellops.data.project import init_project

    started = time.perf_counter()
    write_data(root, args.big_mb, args.files)
    print(f"data: big.bin {args.big_mb} MB, small/ {args.files} files "
          f"(written in {time.perf_counter() - started:.1f} s)")  # fmt: skip
    init_project(root, str(root.parent / f"{root.name}-remote"))
    add_s = timed(lambda: dvc(root, "add", "big.bin", "small").check_returncode())
    print(f"dvc add big.bin small: {add_s:.1f} s (DVC hashes and caches them once)")
    written = max(p.stat().st_mtime for p in [root / "big.bin", *root.rglob("small/**/*")])
    time.sleep(max(0.0, written + 2.2 - time.time()))  # the stat cache trusts files > 2 s old

    _first_hash(root, args.reps)
    _cached_step(root, args.reps)
    _value_digests(args.reps)


def _first_hash(root: Path, reps: int) -> None:
    from cellops.cache.hashing import file_digest

    big = root / "big.bin"
    file_digest(big)  # into the page cache, for both tools
    ours, md5sum = [], []
    for _ in range(reps):  # interleaved: load touches both alike
        ours.append(timed(lambda: file_digest(big)))
        md5sum.append(timed(lambda: subprocess.run(["md5sum", str(big)], capture_output=True)))
    ratio = sorted(md5sum)[len(md5sum) // 2] / sorted(ours)[len(ours) // 2]
    print("\n(b) first hash of big.bin (every byte read)")
    print(f"  cellops xxh3 (file_digest):   {spread_ms(ours)}")
    print(f"  md5sum:                       {spread_ms(md5sum)}")
    print(f"  ratio {ratio:.1f}x, goal >= {HASH_GOAL:.0f}x: {verdict(ratio >= HASH_GOAL)}")


def _cached_step(root: Path, reps: int) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from cellops.cache.statcache import FILE_NAME
    from cellops.steps.engine import StepSpec, plan_step
    from cellops.store.session import current_session

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "cellops")
    session = current_session()
    shell.run_cell("x = [1, 2, 3]").raise_error()
    cell = "%%step use --files-in big.bin,small\nn = len(x)"
    spec = StepSpec("use", "n = len(x)\n", files_in=["big.bin", "small"])

    (root / ".cellops" / FILE_NAME).unlink(missing_ok=True)
    cold_plan = timed(lambda: plan_step(session, spec, shell.user_ns))
    with contextlib.redirect_stdout(io.StringIO()):
        shell.run_cell(cell).raise_error()  # runs the step
        session.tracker.flush()
        first_hit = timed(lambda: shell.run_cell(cell).raise_error())  # md5s for the records
    session.tracker.flush()

    plans, cells, statuses = [], [], []
    for _ in range(reps):
        plans.append(timed(lambda: plan_step(session, spec, shell.user_ns)))
        with contextlib.redirect_stdout(io.StringIO()):
            cells.append(timed(lambda: shell.run_cell(cell).raise_error()))
        session.tracker.flush()
        statuses.append(timed(lambda: dvc(root, "status").check_returncode()))
    status = dvc(root, "status").stdout.strip()
    assert "up to date" in status, status
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print("\n(a) an unchanged step reading big.bin and small/ is cached")
    print(f"  plan (hash inputs, cache key), stat cache warm: {spread_ms(plans)}")
    print(f"  whole cached %%step cell (restore + records):    {spread_ms(cells)}")
    print(f"  dvc status on the same files:                   {spread_ms(statuses)}")
    print(f"  for reference: plan with a cold stat cache {cold_plan * 1000:.0f} ms (xxh3 of "
          f"every byte); first cached cell {first_hit * 1000:.0f} ms")  # fmt: skip
    in_process = _dvc_status_in_process(root, reps)
    print(f"  for reference: DVC's Python API, Repo.status() in a warm process: "
          f"{spread_ms(in_process)} (no interpreter start-up)")  # fmt: skip
    for what, xs in (("plan", plans), ("cached %%step cell", cells)):
        ratio = median(statuses) / median(xs)
        print(f"  dvc status / {what}: {ratio:.1f}x, goal >= {STEP_GOAL:.0f}x: "
              f"{verdict(ratio >= STEP_GOAL)}")  # fmt: skip
    shell.run_line_magic("unload_ext", "cellops")


def _value_digests(reps: int) -> None:
    import numpy as np
    import pandas as pd

    from cellops.cache.hashing import value_digest

    rng, rows = np.random.default_rng(0), 1_600_000
    from_2d = pd.DataFrame(rng.random((rows, 8)), columns=list("abcdefgh"))
    words = np.array([f"item-{i:07d}-{'x' * (i % 40)}" for i in range(rows)], dtype=object)
    frames = {
        "float64 1.6M x 8, from a 2-D array": from_2d,
        "float64 1.6M x 8, column by column": pd.DataFrame({c: from_2d[c].copy() for c in from_2d}),
        "7 float64 + 1 object column of strings": from_2d.iloc[:, :7].assign(s=words),
        "1 object column of 1.6M strings": pd.DataFrame({"s": words}),
    }
    print("\n(c) value digest of a DataFrame (median of reps)")
    for what, frame in frames.items():
        megabytes = frame.memory_usage(deep=True).sum() / 1e6
        ours = [timed(lambda f=frame: value_digest(f)) for _ in range(reps)]
        theirs = [timed(lambda f=frame: pd.util.hash_pandas_object(f)) for _ in range(3)]
        print(f"  {what} ({megabytes:.0f} MB): value_digest {spread_ms(ours)}; "
              f"hash_pandas_object {spread_ms(theirs)}")  # fmt: skip
        if "column by" not in what and "from a 2-D" in what:
            ok = sorted(ours)[len(ours) // 2] < 0.1
            print(f"  goal < 100 ms for the float frame: {verdict(ok)}")


def _dvc_status_in_process(root: Path, reps: int) -> list[float]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.status()  # imports and first use
        return [timed(repo.status) for _ in range(reps)]


if __name__ == "__main__":
    sys.exit(main())
