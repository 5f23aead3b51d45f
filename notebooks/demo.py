"""`make demo`: the quickstart twice with Papermill (the second run is cached), then the
retraining notebook as a `cellops run` job, then the drift loop on data shifted on purpose:
`cellops monitor` checks it against the champion's stored profile and, once the drift has
persisted, retrains on it through the gate.

The repository is itself a cellops project (`[tool.cellops]` in its pyproject.toml), so the
runs, the cache and the executed notebooks land in this checkout: `.cellops/` and `reports/`.
Usage: `python notebooks/demo.py` from anywhere (the Makefile runs it from the repo root).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
REPORTS = REPO / "reports"
LABEL = NOTEBOOK.relative_to(REPO).as_posix()


def main() -> int:
    from cellops.config import load_settings

    settings = load_settings(NOTEBOOK.parent)
    REPORTS.mkdir(exist_ok=True)
    # Papermill's Python API gives the kernel no hint of which notebook it runs (its CLI does):
    # CELLOPS_NOTEBOOK names it, as `cellops run` does, so the runs are filed under it.
    os.environ["CELLOPS_NOTEBOOK"] = str(NOTEBOOK)
    if _forget_earlier_cache(settings):
        print("(the cache held the quickstart's steps from an earlier demo: cleared, so run 1")
        print(" does the work again; the runs it recorded stay in the store)\n")

    print(f"Running {LABEL} twice with Papermill, in {REPO}\n")
    runs = []
    for number in (1, 2):
        output = REPORTS / f"quickstart-run{number}.ipynb"
        print(f"run {number}: ", end="", flush=True)
        result = _execute(output)
        if result is None:
            return 1
        runs.append(result)
        print(_describe(result, output))

    first, second = runs
    print(
        f"\nsecond run: {first['wall'] / second['wall']:.1f}x faster for the whole notebook "
        f"(kernel start-up and imports included),\n"
        f"            {first['steps'] / max(second['steps'], 1e-3):.1f}x faster for the five "
        "steps"
    )
    print("\nThe steps, as `cellops steps notebooks/quickstart.ipynb` shows them:\n")
    _print_steps_table()
    print("\nOpen every run, step, param and metric in MLflow's UI:\n")
    print(f"  {_ui_pointer(settings, LABEL)}\n")
    executed = [_relative(REPORTS / f"quickstart-run{n}.ipynb") for n in (1, 2)]
    print(f"The executed notebooks: {executed[0]} and {executed[1]}")
    code = _retraining_job()
    if code == 0:
        _in_mlflow(settings)
    return code


def _in_mlflow(settings: Any) -> None:
    """The demo's end: where what it recorded is in MLflow's UI, on its run tables (MLflow 3
    opens an experiment on its GenAI overview, where cellops' runs do not show)."""
    pages = [
        (LABEL, "the quickstart's sessions and their steps"),
        ("notebooks/retrain.ipynb", "the retraining jobs and their steps"),
        ("models:/fraud@champion", "the champion model version"),
    ]
    print("\n== What the demo recorded, in MLflow's UI ==")
    for target, what in pages:
        print(f"  {_ui_pointer(settings, target)}\n      {what}")
    print("(`cellops ui TARGET` starts MLflow's UI on this store and opens the page; Ctrl-C")
    print(" stops it. `cellops ui` alone opens the runs of the notebook run last.)")


def _ui_pointer(settings: Any, target: str) -> str:
    """The page's link when MLflow's UI for this store is known (a running `cellops ui`,
    `mlflow_ui_url`, a tracking server), else the `cellops ui` command that opens it."""
    import dataclasses

    from cellops.errors import CellopsError
    from cellops.store.links import ui_base_url
    from cellops.store.ui_server import resolve_target

    base = ui_base_url(settings)
    if base:
        absolute = str(REPO / target) if target.endswith(".ipynb") else target
        try:
            return dataclasses.replace(resolve_target(settings, absolute), base=base).url
        except CellopsError:
            pass  # not recorded after all: the command says so when run
    return f"cellops ui {target}"


def _retraining_job() -> int:
    """Part 2: notebooks/retrain.ipynb as a job, through the promotion gate, three times."""
    data = REPO / "data" / "transactions.parquet"
    print("\n== Retraining jobs and the promotion gate of model 'fraud' ==")
    print("   (the gate is [tool.cellops.models.fraud] in pyproject.toml)\n")
    if not data.exists():
        print(f"$ python notebooks/make_data.py   (writes {_relative(data)})")
        made = subprocess.run([sys.executable, str(REPO / "notebooks" / "make_data.py")], cwd=REPO)
        if made.returncode != 0:
            return made.returncode
    cycle = [
        ("a strongly regularized logistic regression (C=0.01)",
         ["-p", "model_kind", "logreg", "-p", "C", "0.01"]),
        ("the same, badly under-fitted (C=0.0001): the gate should refuse it",
         ["-p", "model_kind", "logreg", "-p", "C", "0.0001"]),
        ("gradient-boosted trees: better by the gate's margin, so promoted",
         ["-p", "model_kind", "hist_gb"]),
    ]  # fmt: skip
    for what, parameters in cycle:
        print(f"-- {what}")
        if _show("run", "notebooks/retrain.ipynb", *parameters, "--no-progress") != 0:
            return 1
    print("-- a bad promotion is undone in one command")
    _show("rollback", "fraud", "--reason", "demo: undo the last promotion", quiet=False)
    print("-- the audit trail (also in the MLflow UI, experiment cellops-registry-events)")
    _show("history", "fraud", "-n", "8", quiet=False)
    code = _drift_loop()
    print("(run `make demo` again and the models are judged against the champion it left)")
    return code


def _drift_loop() -> int:
    """Part 3: new transactions that drift; the monitor retrains once the drift persists."""
    current = "data/current.parquet"
    print("== Drift: the closed loop drift -> retraining job -> gate ==")
    print("   (each check is a run in the MLflow experiment cellops-drift/fraud)\n")
    print("-- next month's transactions, shifted on purpose (bigger amounts, more online and")
    print("   foreign): a drift the monitor should see against the champion's training data")
    made = subprocess.run(
        [sys.executable, "notebooks/make_data.py", "--rows", "20000", "--shift", "1.0",
         "--seed", "11", "--out", current],
        cwd=REPO,
    )  # fmt: skip
    if made.returncode != 0:
        return made.returncode
    monitor = ["monitor", "--model", "fraud", "--current", current, "--share-threshold", "0.3",
               "--consecutive", "2", "--retrain", "notebooks/retrain.ipynb"]  # fmt: skip
    print("\n-- check 1: drift, but it has to persist for 2 checks before retraining")
    first = _show(*monitor, quiet=False)
    if first == 2:  # a usage error, shown above: e.g. a champion from before profiles existed
        print("(the drift loop needs a champion registered with its reference profile: start")
        print(" from a clean store with `rm -rf .cellops data reports/runs`, then `make demo`)")
        return 0
    if first not in (0, 1):
        return 1
    print("-- check 2 (e.g. the next day, same data): 2 drifted checks in a row -> retrain on")
    print("   the new data, and the gate decides whether the new model replaces the champion")
    if _show(*monitor) not in (0, 1):  # 1: the gate refused the new model, shown above
        return 1
    print("-- the champion now, against the same data (a new champion: trained on it)")
    checked = _show("drift", "--model", "fraud", "--current", current, "--share-threshold", "0.3",
                    quiet=False)  # fmt: skip
    if checked not in (0, 1):  # 1: dataset drift (the gate kept the old champion)
        return 1
    return 0


def _show(*arguments: str, quiet: bool = True) -> int:
    """Run a cellops command; `quiet` hides the kernel's own log lines on stderr."""
    shown = " ".join(f"'{a}'" if " " in a else a for a in arguments)
    print(f"$ cellops {shown}")
    done = subprocess.run(
        [*_cellops(), *arguments], cwd=REPO, stderr=subprocess.DEVNULL if quiet else None
    )
    print()
    return done.returncode


def _cellops() -> list[str]:
    script = Path(sys.executable).with_name("cellops")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import cellops.cli as c; c.main()"]


def _forget_earlier_cache(settings: Any) -> bool:
    """Drop the cache entries of the quickstart's last steps, so run 1 starts cold."""
    from cellops.cache.index import StepCache
    from cellops.steps.state import load_step_states

    cache = StepCache(settings.cache_dir)
    keys = [state["key"] for state in load_step_states(settings, LABEL).values()]
    known = [key for key in keys if cache.lookup(key) is not None]
    for key in known:
        cache.forget(key)
    return bool(known)


def _execute(output: Path) -> dict[str, Any] | None:
    """Run the notebook; its summary, or None (with the reason printed) when it failed."""
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel

    log = output.with_suffix(".log")
    started = time.perf_counter()
    try:
        with _kernel_stderr_to(log):
            nb = papermill.execute_notebook(
                str(NOTEBOOK),
                str(output),
                kernel_name="python3",
                cwd=str(REPO),
                progress_bar=False,
            )
    except papermill.PapermillExecutionError as exc:
        print(f"failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
        print(f"  the executed notebook shows the error: {_relative(output)}")
        print(f"  the kernel's log: {_relative(log)}")
        return None
    except NoSuchKernel:
        print("no 'python3' Jupyter kernel; install one with: python -m pip install ipykernel")
        return None
    wall = time.perf_counter() - started
    step_cells = [
        cell
        for cell in nb.cells
        if cell.cell_type == "code" and cell.source.lstrip().startswith("%%step")
    ]
    cached = sum(
        "cached: restored" in "".join(out.get("text", "")) for c in step_cells for out in c.outputs
    )
    steps = sum(cell.metadata.get("papermill", {}).get("duration") or 0.0 for cell in step_cells)
    return {"wall": wall, "steps": steps, "n_steps": len(step_cells), "cached": cached}


@contextlib.contextmanager
def _kernel_stderr_to(log: Path) -> Iterator[None]:
    """Send what the kernel prints on stderr (it inherits ours) to a log, not the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "w") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _describe(run: dict[str, Any], output: Path) -> str:
    n, cached = run["n_steps"], run["cached"]
    if cached == 0:
        what = f"{n} steps executed"
    elif cached == n:
        what = f"{n} steps restored from the cache"
    else:
        what = f"{n - cached} steps executed, {cached} restored from the cache"
    return f"{run['wall']:5.1f} s   {what} in {run['steps']:.1f} s   -> {_relative(output)}"


def _print_steps_table() -> None:
    done = subprocess.run(
        [*_cellops(), "steps", str(NOTEBOOK)], cwd=REPO, capture_output=True, text=True
    )
    text = done.stdout if done.returncode == 0 else done.stderr
    print("\n".join(f"  {line}" for line in text.rstrip().splitlines()))


def _relative(path: Path) -> str:
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
