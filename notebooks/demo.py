"""`make demo`: the quickstart twice with Papermill (the second run is cached), then the
retraining notebook as a `cellops run` job, then the drift loop on data shifted on purpose:
`cellops monitor` checks it against the champion's stored profile and, once the drift has
persisted, retrains on it through the gate. Last, `cellops serve` serves a champion, a small
client sends it shifted traffic and its labels, `cellops monitor --served` retrains on what was
served and promotes, and the server answers with the new version without a restart.

The repository is itself a cellops project (`[tool.cellops]` in its pyproject.toml), so the
runs, the cache and the executed notebooks land in this checkout: `.cellops/` and `reports/`.
Usage: `python notebooks/demo.py` from anywhere (the Makefile runs it from the repo root).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
    if code == 0:
        code = _serving_loop()
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


SERVED_MODEL = "fraud_served"
SERVED_NOTEBOOK = "notebooks/retrain_served.ipynb"
SERVED_FEATURES = ["amount", "country", "home_country", "channel", "category"]
ROWS_PER_REQUEST = 200
# the demo makes the server's log visible within seconds (the defaults: a file a minute)
SERVE_ENV = {"CELLOPS_SERVE_LOG_BATCH_SECONDS": "0.5", "CELLOPS_SERVE_LOG_ROTATE_SECONDS": "2",
             "CELLOPS_SERVE_POLL_SECONDS": "1"}  # fmt: skip


def _serving_loop() -> int:
    """Part 4: serve the champion, send it shifted traffic and its labels, let the monitor
    retrain on what was served, and watch the server switch to the new version."""
    print("== Serving: cellops serve, its prediction log, and the loop on served traffic ==")
    print(f"-- {SERVED_MODEL}: a fraud model on the transaction fields a client sends")
    print(f"   ({SERVED_NOTEBOOK}), trained on data/transactions.parquet\n")
    if _show("run", SERVED_NOTEBOOK, "--no-progress") != 0:
        return 1
    traffic = _read_parquet(REPO / "data" / "current.parquet")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = REPORTS / "serve.log"
    print(f"$ cellops serve {SERVED_MODEL} --port {port}   (its output: {_relative(log)})")
    with open(log, "w") as out:
        server = subprocess.Popen(
            [*_cellops(), "serve", SERVED_MODEL, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=_serve_env(),
        )  # fmt: skip
    try:
        return _against(server, base, log, traffic)
    finally:
        _stop(server)


def _against(server: subprocess.Popen, base: str, log: Path, traffic: Any) -> int:
    """The client's side of part 4, with the server running."""
    ready = _wait_ready(server, base, log)
    if ready is None:
        return 1
    pid = _pid(base)
    print(f"ready: {SERVED_MODEL} v{ready['version']} (@{ready['alias']}), pid {pid}\n")
    print(f"-- a client sends the {len(traffic):,} shifted transactions of data/current.parquet")
    print(f"   ({ROWS_PER_REQUEST} rows a request, MLflow's dataframe_split format), then their")
    print("   labels as they become known (POST /feedback)")
    requests, versions, started = [], set(), time.perf_counter()
    for start in range(0, len(traffic), ROWS_PER_REQUEST):
        chunk = traffic.iloc[start : start + ROWS_PER_REQUEST]
        split = chunk[SERVED_FEATURES].to_dict(orient="split", index=False)
        answer = _post(f"{base}/invocations", {"dataframe_split": split})
        requests.append((answer["request_id"], chunk["is_fraud"].tolist()))
        versions.add(answer["version"])
    took = time.perf_counter() - started
    print(f"   {len(requests)} requests in {took:.1f} s, answered by version {', '.join(versions)}")
    labels = [{"request_id": rid, "row": row, "label": int(label)}
              for rid, values in requests for row, label in enumerate(values)]  # fmt: skip
    for start in range(0, len(labels), 5000):
        _post(f"{base}/feedback", {"labels": labels[start : start + 5000]})
    print(f"   {len(labels):,} labels sent\n")
    if not _wait_logged(len(traffic)):
        return 1
    print("-- the champion judged on its labelled served traffic: its metrics from the labels")
    _show("monitor", "--model", SERVED_MODEL, "--performance", "f1 >= 0.5", "--min-labels",
          "1000", "--since", "1h", quiet=False)  # fmt: skip
    print("-- the served inputs against the champion's training data; drift -> retrain on the")
    print("   labelled served rows, through the gate")
    before = _champion()
    code = _show("monitor", "--model", SERVED_MODEL, "--served", "--since", "1h",
                 "--share-threshold", "0.3", "--consecutive", "1", "--retrain", SERVED_NOTEBOOK,
                 "-p", "label_column", "label")  # fmt: skip
    after = _champion()
    if code not in (0, 1):
        return 1
    if after == before:
        print(f"the champion is still v{before} (no drift, or the gate kept it): nothing to switch")
        return 0
    return _wait_switch(base, after, pid)


def _wait_switch(base: str, version: str, pid: int, timeout: float = 60.0) -> int:
    """The server polls the alias: wait until it answers with `version`, in the process that
    answered before (`pid`)."""
    started = time.perf_counter()
    print(f"-- the gate moved @champion to v{version}; the server polls the alias and reloads")
    while time.perf_counter() - started < timeout:
        current = _get(f"{base}/version")
        if str(current["version"]) == str(version):
            row = _read_parquet(REPO / "data" / "current.parquet").iloc[:1][SERVED_FEATURES]
            split = row.to_dict(orient="split", index=False)
            answer = _post(f"{base}/predict", {"dataframe_split": split})
            same = "the same process" if current["pid"] == pid else f"now pid {current['pid']}"
            print(f"   a new request is answered by v{answer['version']}, without a restart "
                  f"({same}, pid {pid}, as before the promotion)\n")  # fmt: skip
            return 0
        time.sleep(0.5)
    print(f"   the server still answers with v{_get(f'{base}/version')['version']} after "
          f"{timeout:.0f} s; its log: {_relative(REPORTS / 'serve.log')}")  # fmt: skip
    return 1


def _serve_env() -> dict[str, str]:
    env = {**os.environ, **SERVE_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CELLOPS_NOTEBOOK", None)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(server: subprocess.Popen, base: str, log: Path, timeout: float = 120.0) -> Any:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            print(f"cellops serve exited with code {server.returncode}; its output:")
            print(log.read_text()[-3000:])
            return None
        try:
            return _get(f"{base}/ready")
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    print(f"cellops serve was not ready after {timeout:.0f} s; its output: {_relative(log)}")
    return None


def _wait_logged(rows: int, timeout: float = 60.0) -> bool:
    """The server writes its log in the background: wait until the rows are readable."""
    from cellops.errors import NoServedTrafficError
    from cellops.serving.traffic import read_served

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with contextlib.suppress(NoServedTrafficError):
            served = read_served(SERVED_MODEL, "1h")
            if served.rows >= rows and served.labels >= rows:
                print(f"the prediction log holds them: {served.describe()}\n")
                return True
        time.sleep(0.5)
    print(f"the prediction log did not show {rows:,} labelled rows after {timeout:.0f} s")
    return False


def _champion() -> str | None:
    from mlflow.tracking import MlflowClient

    from cellops.config import load_settings

    client = MlflowClient(load_settings(REPO).tracking_uri)
    try:
        return str(client.get_model_version_by_alias(SERVED_MODEL, "champion").version)
    except Exception:
        return None


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.terminate()  # uvicorn finishes the requests in flight and flushes the log
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    how = (
        "cleanly"
        if server.returncode in (0, -signal.SIGTERM)
        else f"(exit code {server.returncode})"
    )
    print(f"server stopped {how}; what it served is in .cellops/predictions/model={SERVED_MODEL}/")


def _pid(base: str) -> int:
    return int(_get(f"{base}/version")["pid"])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _post(url: str, payload: Any) -> Any:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _read_parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


def _show(*arguments: str, quiet: bool = True) -> int:
    """Run a cellops command; `quiet` hides the kernel's own log lines on stderr, unless the
    command could not run (exit code 2 or more: then stderr holds why)."""
    shown = " ".join(f"'{a}'" if " " in a else a for a in arguments)
    print(f"$ cellops {shown}", flush=True)
    done = subprocess.run(
        [*_cellops(), *arguments], cwd=REPO, stderr=subprocess.PIPE if quiet else None, text=True
    )
    if quiet and done.returncode >= 2 and done.stderr:
        print(done.stderr.rstrip())
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
