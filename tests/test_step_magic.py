"""`%%step` in a real IPython shell, checked through `MlflowClient`.

The tests marked with the `store` fixture run twice: on the project's SQLite store and on a
real `mlflow server` on loopback (HTTP store, artifacts proxied by the server).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from mlflow.tracking import MlflowClient

from cellops.store.session import current_session

from .conftest import run
from .mlflow_server import free_port

SIDE_EFFECT = """\
def side_effect(tag):
    with open("ran.log", "a") as fh:
        fh.write(tag + "\\n")
"""


# -- helpers ------------------------------------------------------------------------------------


def ran(tag: str) -> int:
    """How many times a cell called `side_effect(tag)`: proof that it ran, or did not."""
    log = Path("ran.log")
    return log.read_text().splitlines().count(tag) if log.exists() else 0


def client_for_session():
    session = current_session()
    session.tracker.flush()
    return session, MlflowClient(session.settings.tracking_uri)


def step_runs(step: str | None = None) -> list:
    """This session's step runs (oldest first), read back with MlflowClient."""
    session, client = client_for_session()
    query = f"tags.`mlflow.parentRunId` = '{session.run.run_id}'"
    if step is not None:
        query += f" and tags.`cellops.step` = '{step}'"
    runs = client.search_runs([session.run.experiment_id], query, max_results=1000)
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.end_time or 0))


def states(step: str) -> list[str]:
    return [r.data.tags["cellops.state"] for r in step_runs(step)]


def artifact_text(client: MlflowClient, run_id: str, path: str, tmp: Path) -> str:
    dest = tmp / run_id
    dest.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dest))).read_text()


def usage_error(shell, code: str, **kwargs) -> UsageError:
    result = shell.run_cell(code, **kwargs)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    return result.error_in_exec


sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)

CACHED = re.compile(
    r"cached: restored (?P<names>.+) from run (?P<run>[0-9a-f]+) \(saved [\d.]+ s\)"
)


# -- 1. what a step run records ----------------------------------------------------------------


def test_step_run_records_cell_inputs_outputs_params_metrics(store, store_ip, tmp_path):
    ip = store_ip
    run(ip, "import cellops\nn = 3\nrate = 0.5\nlabel = 'x'\nlayers = [8, 16]\ndata = [1, 2, 3]")
    body = (
        "# scale the data\n"
        "values = [v * rate for v in data][:n]\n"
        "total = sum(values)\n"
        "cellops.log_metric('inner', 7.0)\n"
        "tag = label + '!'"
    )
    run(ip, f"%%step train --params layers --metrics total\n{body}")
    assert ip.user_ns["total"] == 3.0

    session, client = client_for_session()
    (found,) = step_runs()
    step = client.get_run(found.info.run_id)
    assert step.info.run_name == "train"
    assert step.info.status == "FINISHED"
    tags = step.data.tags
    assert tags["mlflow.parentRunId"] == session.run.run_id
    assert tags["cellops.state"] == "executed"
    assert tags["cellops.step"] == "train"
    # scalar inputs, and the declared --params (`data`, a list, is an input but no param)
    assert step.data.params == {"n": "3", "rate": "0.5", "label": "x", "layers": "[8, 16]"}
    metrics = step.data.metrics
    assert metrics["total"] == 3.0
    assert metrics["inner"] == 7.0
    assert metrics["cellops.duration_s"] >= 0

    assert artifact_text(client, step.info.run_id, "cellops/cell.py", tmp_path).strip() == body
    described = json.loads(artifact_text(client, step.info.run_id, "cellops/step.json", tmp_path))
    assert set(described["inputs"]) == {"n", "rate", "label", "layers", "data"}
    assert set(described["outputs"]) == {"values", "total", "tag"}
    digests = [*described["inputs"].values(), *described["outputs"].values()]
    assert all(isinstance(d, str) and len(d) >= 16 for d in digests)
    assert described["key"] == tags["cellops.key"]
    if store.startswith("http"):  # artifacts went through the server's proxy, over HTTP
        location = client.get_experiment(step.info.experiment_id).artifact_location
        assert location.startswith("mlflow-artifacts:")


# -- 2. the cache ------------------------------------------------------------------------------


def test_unchanged_step_is_restored_not_run(store_ip, capsys):
    ip = store_ip
    run(ip, SIDE_EFFECT + "n = 4")
    code = "%%step squares\nside_effect('squares')\nsquares = [i * i for i in range(n)]"
    run(ip, code)
    assert ran("squares") == 1
    del ip.user_ns["squares"]
    capsys.readouterr()

    run(ip, code)
    assert ran("squares") == 1  # the cell did not run
    assert ip.user_ns["squares"] == [0, 1, 4, 9]
    shown = CACHED.search(capsys.readouterr().out)
    assert shown is not None and shown["names"] == "squares"

    first, second = step_runs("squares")
    assert first.data.tags["cellops.state"] == "executed"
    assert second.data.tags["cellops.state"] == "cached"
    assert second.data.tags["cellops.cached_from"] == first.info.run_id == shown["run"]
    assert second.info.status == "FINISHED"


def test_code_input_and_upstream_changes_run_the_step_again(store_ip):
    ip = store_ip
    run(ip, SIDE_EFFECT + "n = 2\nk = 1")
    code = "%%step squares\nside_effect('squares')\nsquares = [i * i for i in range(n)]"
    run(ip, code)
    run(ip, "n = 3")
    run(ip, code)
    assert ran("squares") == 2
    assert ip.user_ns["squares"] == [0, 1, 4]

    run(ip, code + "  # only a comment")  # normalized code: still a hit
    assert ran("squares") == 2
    run(ip, code.replace("i * i", "i ** 2"))
    assert ran("squares") == 3
    assert states("squares") == ["executed", "executed", "cached", "executed"]

    upstream = "%%step base\nside_effect('base')\nm = k * 10"
    downstream = "%%step down\nside_effect('down')\nz = m + 1"
    run(ip, upstream)
    run(ip, downstream)
    run(ip, upstream)
    run(ip, downstream)
    assert (ran("base"), ran("down")) == (1, 1)
    run(ip, "k = 2")
    run(ip, upstream)
    run(ip, downstream)
    assert (ran("base"), ran("down")) == (2, 2)
    assert ip.user_ns["z"] == 21
    assert states("down") == ["executed", "cached", "executed"]


def test_force_runs_again_and_no_cache_never_caches(store_ip):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    code = "%%step once\nside_effect('once')\nx = 1"
    run(ip, code)
    run(ip, code.replace("once\n", "once --force\n", 1))
    assert ran("once") == 2
    run(ip, code)  # --force refreshed the cache: a hit again
    assert ran("once") == 2

    nocache = "%%step every --no-cache\nside_effect('every')\ny = 2"
    run(ip, nocache)
    run(ip, nocache)
    run(ip, nocache.replace(" --no-cache", ""))  # nothing was stored for it
    assert ran("every") == 3
    assert states("once") == ["executed", "executed", "cached"]
    assert states("every") == ["executed", "executed", "executed"]


# -- 3. the cache survives a kernel restart ----------------------------------------------------

KERNEL_SCRIPT = """\
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "cellops")
shell.run_cell({side_effect!r} + "n = 5").raise_error()
shell.run_cell({cell!r}).raise_error()
print("squares =", shell.user_ns["squares"])
shell.run_line_magic("unload_ext", "cellops")
"""


def _kernel(project: Path, cell: str) -> str:
    script = KERNEL_SCRIPT.format(side_effect=SIDE_EFFECT, cell=cell)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@sqlite_only
def test_cache_survives_a_kernel_restart(store, project):
    cell = "%%step squares\nside_effect('squares')\nsquares = [i * i for i in range(n)]"
    first = _kernel(project, cell)
    second = _kernel(project, cell)
    assert "squares = [0, 1, 4, 9, 16]" in first and "cached:" not in first
    assert "squares = [0, 1, 4, 9, 16]" in second
    shown = CACHED.search(second)
    assert shown is not None
    assert ran("squares") == 1

    client = MlflowClient(f"sqlite:///{project / '.cellops' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("proj/interactive")
    runs = client.search_runs([experiment.experiment_id], "tags.`cellops.step` = 'squares'")
    by_state = {r.data.tags["cellops.state"]: r for r in runs}
    assert sorted(by_state) == ["cached", "executed"]
    executed, cached = by_state["executed"], by_state["cached"]
    assert cached.data.tags["cellops.cached_from"] == executed.info.run_id == shown["run"]
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 2  # one session run per kernel


# -- 4. failures -------------------------------------------------------------------------------


def test_exception_fails_the_run_and_reaches_the_user_unchanged(store_ip, tmp_path):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    code = "%%step boom\nside_effect('boom')\npartial = 1\nraise ValueError('bad value 42')"
    for _ in range(2):
        error = ip.run_cell(code).error_in_exec
        assert type(error) is ValueError and str(error) == "bad value 42"
    assert ran("boom") == 2  # nothing was cached from the failed run

    session, client = client_for_session()
    runs = step_runs("boom")
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    assert [r.data.tags["cellops.state"] for r in runs] == ["failed", "failed"]
    traceback = artifact_text(client, runs[0].info.run_id, "cellops/traceback.txt", tmp_path)
    assert "ValueError: bad value 42" in traceback


def test_keyboard_interrupt_kills_the_run(store_ip):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    code = "%%step slow\nside_effect('slow')\nresult = 1\nraise KeyboardInterrupt"
    for _ in range(2):
        assert isinstance(ip.run_cell(code).error_in_exec, KeyboardInterrupt)
    assert ran("slow") == 2
    runs = step_runs("slow")
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"]
    assert [r.data.tags["cellops.state"] for r in runs] == ["killed", "killed"]


# -- 5. an output that cannot be stored ----------------------------------------------------------


@sqlite_only
def test_unserializable_output_warns_runs_and_is_not_cached(store_ip, capsys):
    ip = store_ip
    run(ip, SIDE_EFFECT + "import threading")
    code = "%%step locked\nside_effect('locked')\nlock = threading.Lock()\ncount = 3"
    run(ip, code)
    err = capsys.readouterr().err
    assert "not cached" in err and "lock" in err
    run(ip, code)
    assert ran("locked") == 2
    runs = step_runs("locked")
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert [r.data.tags["cellops.state"] for r in runs] == ["executed", "executed"]


# -- 6. a corrupted cache object -----------------------------------------------------------------


@sqlite_only
def test_corrupted_cache_object_is_reported_and_the_step_reruns(store_ip, project, capsys):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    code = "%%step stored\nside_effect('stored')\nitems = list(range(1000))"
    run(ip, code)
    current_session().tracker.flush()
    objects = [p for p in (project / ".cellops" / "objects").rglob("*") if p.is_file()]
    objects = [p for p in objects if "tmp" not in p.relative_to(project).parts]
    assert objects
    for path in objects:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    del ip.user_ns["items"]
    capsys.readouterr()

    run(ip, code)
    assert "does not match its hash" in capsys.readouterr().err
    assert ran("stored") == 2
    assert ip.user_ns["items"] == list(range(1000))
    run(ip, code)  # the re-run stored a good copy
    assert ran("stored") == 2
    assert states("stored") == ["executed", "executed", "cached"]


# -- 7. usage errors -----------------------------------------------------------------------------


def test_pre_run_usage_errors_run_nothing_and_record_nothing(store_ip, capsys):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    body = "side_effect('bad')\nx = 1"

    error = usage_error(ip, f"%%step s1 --bogus\n{body}")
    for flag in ("--inputs", "--outputs", "--params", "--metrics", "--files-in", "--files-out",
                 "--no-cache", "--force"):  # fmt: skip
        assert flag in str(error)
    assert "--bogus" in str(error)
    assert "'ghost'" in str(usage_error(ip, f"%%step s2 --inputs ghost\n{body}"))
    assert "invalid step name '9-lives'" in str(usage_error(ip, f"%%step 9-lives\n{body}"))
    message = str(usage_error(ip, f"%%step s3 --files-in data/missing.csv\n{body}"))
    assert "data/missing.csv" in message and "does not exist" in message

    ip.run_cell("%%step dup\ny = 1", cell_id="a").raise_error()
    message = str(usage_error(ip, f"%%step dup\n{body}", cell_id="b"))
    assert "another cell already defines step 'dup'" in message

    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert out.err.count("UsageError") == 5
    assert ran("bad") == 0 and "x" not in ip.user_ns
    assert [r.info.run_name for r in step_runs()] == ["dup"]


def test_files_out_not_written_fails_the_step(store_ip):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    code = "%%step writer --files-out result.txt\nside_effect('writer')\nw = 1"
    for _ in range(2):
        message = str(usage_error(ip, code))
        assert "did not write result.txt" in message
    assert ran("writer") == 2
    runs = step_runs("writer")
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]


# -- 8. an unreachable store ---------------------------------------------------------------------


def test_unreachable_store_fails_before_the_cell_runs(project, monkeypatch, request):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # no back-off on close
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    ip = request.getfixturevalue("ip")
    run(ip, SIDE_EFFECT)
    message = str(usage_error(ip, "%%step s\nside_effect('s')\nx = 1"))
    assert uri in message and "cannot reach" in message
    assert ran("s") == 0 and "x" not in ip.user_ns


# -- 9. two processes on one SQLite store --------------------------------------------------------

WRITER_SCRIPT = """\
import sys, time
from pathlib import Path

import mlflow  # imported before the barrier, so both processes write at the same time
from IPython.core.interactiveshell import InteractiveShell

me = sys.argv[1]
Path(f"ready-{{me}}").touch()
deadline = time.monotonic() + 60
while len(list(Path(".").glob("ready-*"))) < 2:
    if time.monotonic() > deadline:
        sys.exit("the other writer never started")
    time.sleep(0.01)
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "cellops")
for i in range({steps}):
    shell.run_cell(f"%%step {{me}}_{{i}}\\nvalue_{{i}} = {{i}} * 2").raise_error()
shell.run_line_magic("unload_ext", "cellops")
"""


def test_two_processes_share_one_sqlite_store(project):
    """Both create the store too: a new project's schema is made under a file lock."""
    steps = 6
    script = WRITER_SCRIPT.format(steps=steps)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, name],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    client = MlflowClient(f"sqlite:///{project / '.cellops' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("proj/interactive")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    sessions = [r for r in runs if r.data.tags.get("cellops.kind") == "session"]
    step_names = sorted(r.info.run_name for r in runs if r.data.tags.get("cellops.kind") == "step")
    assert len(sessions) == 2
    assert step_names == sorted(f"{p}_{i}" for p in "ab" for i in range(steps))
    assert {r.info.status for r in runs} == {"FINISHED"}


# -- 10. the fluent API --------------------------------------------------------------------------


def test_fluent_api_logs_to_the_step_inside_and_the_session_outside(store_ip, tmp_path):
    ip = store_ip
    run(ip, "import cellops")
    run(
        ip,
        "cellops.log_param('where', 'session')\n"
        "cellops.log_metric('outside', 1.5)\n"
        "with open('note_out.txt', 'w') as fh:\n"
        "    fh.write('outside note')\n"
        "cellops.log_artifact('note_out.txt')\n"
        "outside_ref = cellops.current_run()",
    )
    run(
        ip,
        "%%step fluent\n"
        "cellops.log_param('where', 'step')\n"
        "cellops.log_metric('inside', 2.5, step=3)\n"
        "with open('note_in.txt', 'w') as _fh:\n"
        "    _fh.write('inside note')\n"
        "cellops.log_artifact('note_in.txt', 'extra')\n"
        "inside_ref = cellops.current_run()",
    )
    session, client = client_for_session()
    inside, outside = ip.user_ns["inside_ref"], ip.user_ns["outside_ref"]
    (step,) = step_runs("fluent")
    assert (inside.kind, inside.name, inside.run_id) == ("step", "fluent", step.info.run_id)
    assert (outside.kind, outside.run_id) == ("session", session.run.run_id)

    assert step.data.params["where"] == "step"
    assert "outside" not in step.data.metrics
    [point] = client.get_metric_history(step.info.run_id, "inside")
    assert (point.value, point.step) == (2.5, 3)
    assert artifact_text(client, step.info.run_id, "extra/note_in.txt", tmp_path) == "inside note"

    parent = client.get_run(session.run.run_id)
    assert parent.data.params["where"] == "session"
    assert parent.data.metrics["outside"] == 1.5
    assert "inside" not in parent.data.metrics
    assert artifact_text(client, parent.info.run_id, "note_out.txt", tmp_path) == "outside note"


# -- 11. %cellops status -------------------------------------------------------------------------


@sqlite_only
def test_status_table_shows_fresh_cached_stale_failed(store_ip):
    ip = store_ip
    run(ip, "k = 2")
    upstream, downstream = "%%step a\nm = k * 10", "%%step b\nz = m + 1"
    run(ip, upstream)
    run(ip, downstream)
    ip.run_cell("%%step bad\nraise RuntimeError('no')")

    def table() -> dict[str, str]:
        frame = ip.run_line_magic("cellops", "status")
        assert {"state", "run id"} <= set(frame.columns)
        return frame["state"].to_dict()

    assert table() == {"a": "fresh", "b": "fresh", "bad": "failed"}
    run(ip, upstream)
    assert table()["a"] == "cached"
    run(ip, "k = 3")
    assert table() == {"a": "stale", "b": "stale", "bad": "failed"}
    step_ids = {r.info.run_id for r in step_runs()}
    frame = ip.run_line_magic("cellops", "status")
    assert set(frame["run id"]) <= step_ids


# -- 12. files -----------------------------------------------------------------------------------


@sqlite_only
def test_files_in_content_is_part_of_the_key(store_ip, project):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    (project / "data.csv").write_text("a,b\n1,2\n")
    code = "%%step read --files-in data.csv\nside_effect('read')\ntext = open('data.csv').read()"
    run(ip, code)
    run(ip, code)
    assert ran("read") == 1
    (project / "data.csv").write_text("a,b\n3,4\n")
    run(ip, code)
    assert ran("read") == 2 and ip.user_ns["text"] == "a,b\n3,4\n"
    assert states("read") == ["executed", "cached", "executed"]


@sqlite_only
def test_files_out_is_restored_on_a_cache_hit(store_ip, project):
    ip = store_ip
    run(ip, SIDE_EFFECT)
    code = (
        "%%step write --files-out out/result.txt\n"
        "side_effect('write')\n"
        "from pathlib import Path\n"
        "Path('out').mkdir(exist_ok=True)\n"
        "Path('out/result.txt').write_text('result 7')"
    )
    run(ip, code)
    (project / "out" / "result.txt").unlink()
    run(ip, code)
    assert ran("write") == 1
    assert (project / "out" / "result.txt").read_text() == "result 7"
    assert states("write") == ["executed", "cached"]
