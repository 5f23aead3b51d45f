"""The `cellops_lab` server extension through a real Jupyter server (pytest-jupyter's `jp_fetch`,
token authentication on, no unauthenticated access), on a real project: a SQLite MLflow store
holding a model `fraud` with three versions, a gate and drift checks (made by a real cellops
session in a subprocess), real kernels for the step cells and real `cellops run` jobs.

Given a project, when the panel asks, then it sees what `cellops steps`, `cellops models` and
`cellops run` would say, with errors as JSON a person can act on.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient
from tornado.httpclient import HTTPResponse

from cellops.config import default_tracking_uri

from .conftest import fixture_path
from .jobs_helpers import GIT_ENV, commit

pytest_plugins = ["pytest_jupyter.jupyter_server"]

API = "cellops/api"
TRAIN = "train.ipynb"
JOB = "job.ipynb"

SETUP = """
from pathlib import Path

import pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import cellops
from cellops.monitoring.history import record_check
from cellops.registry.store import open_store
from cellops.store.notebook_info import NotebookInfo
from cellops.store.session import start_session

start_session(NotebookInfo(Path("train.ipynb").resolve(), "jupyter"))  # as its kernel would

X, y = make_classification(1500, 6, n_informative=4, random_state=0)
frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
train, test = frame.iloc[:1000], frame.iloc[1000:]
test.assign(label=y[1000:]).to_parquet("data/holdout.parquet")
fair = LogisticRegression().fit(train.iloc[:300], y[:300])
stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(train, y[:1000])
better = LogisticRegression().fit(train, y[:1000])
cellops.register_model(fair, "fraud", train)
print(cellops.promote("fraud").decision)
cellops.register_model(stump, "fraud", train)
cellops.register_model(better, "fraud", train)  # @challenger: v3
same = cellops.drift(train, test)
shifted = cellops.drift(train, test.assign(x0=test.x0 + 5, x1=test.x1 * 4))
store = open_store()
record_check(store, "fraud", "1", same, current="data/holdout.parquet", data_hash="a")
record_check(store, "fraud", "1", shifted, current="shifted", data_hash="b")
"""


def _notebook(cells: list[str], tags: dict[int, list[str]] | None = None) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for index, source in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source)
        if tags and index in tags:
            cell.metadata["tags"] = tags[index]
        nb.cells.append(cell)
    return nbformat.writes(nb)


def _clean_env() -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def lab_project(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Path:
    """A project with model `fraud` v1 (champion), v2 (worse), v3 (@challenger), its gate in
    pyproject.toml, two drift checks (the second drifted), and the job fixture notebook."""
    root = tmp_path_factory.mktemp("lab") / "proj"
    (root / "data").mkdir(parents=True)
    gate = '["f1 >= 0.5", "auc >= champion.auc - 0.01", "latency_p95_ms < 60000"]'
    (root / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.cellops]\n\n[tool.cellops.models.fraud]\n'
        f'gate = {gate}\nholdout = "data/holdout.parquet"\nlabel = "label"\n'
        "latency_samples = 20\n"
    )
    (root / ".gitignore").write_text(".cellops/\nreports/\n")
    (root / TRAIN).write_text(_notebook(["%load_ext cellops", "%%step train\nmodel = 1"]))
    (root / JOB).write_text(fixture_path("jobs", JOB).read_text())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    commit(root)
    db = Path(default_tracking_uri(root).removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    db.write_bytes(empty_mlflow_db.read_bytes())
    env = {**_clean_env(), **GIT_ENV}
    done = subprocess.run(
        [sys.executable, "-c", SETUP], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "promoted"
    return root


@pytest.fixture
def jp_root_dir(lab_project: Path) -> Path:  # the server's root is the project
    return lab_project


@pytest.fixture
def jp_server_config(monkeypatch: pytest.MonkeyPatch) -> dict:
    for name in ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER"):
        monkeypatch.delenv(name, raising=False)
    return {
        "ServerApp": {
            "jpserver_extensions": {"cellops_lab": True},
            "allow_unauthenticated_access": False,
        }
    }


def _json(response: HTTPResponse) -> dict:
    return json.loads(response.body)


async def _call(jp_fetch, method: str, route: str, body: dict | None = None, **kwargs):
    """`route` under the API ("steps?path=x"), answered whatever its status."""
    path, _, query = route.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&")) if query else None
    options = {"method": method, "raise_error": False, **kwargs}
    if method == "POST":
        options["body"] = json.dumps(body or {})
    return await jp_fetch(API, path, params=params, **options)


# -- authentication -----------------------------------------------------------------------------

ROUTES = [  # (method, route, body, status with the token)
    ("GET", f"steps?path={TRAIN}", None, 200),
    ("POST", "steps", {"path": TRAIN, "cells": [{"id": None, "source": "%load_ext cellops"}]}, 200),
    ("GET", f"runs?path={TRAIN}", None, 200),
    ("GET", "models", None, 200),
    ("GET", f"models?path={TRAIN}", None, 200),
    ("GET", "models/fraud", None, 200),
    ("POST", "models/fraud/promote", {"version": "1"}, 200),  # already champion: unchanged
    ("POST", "models/nobody/rollback", {}, 404),
    ("GET", "models/fraud/drift", None, 200),
    ("GET", f"parameters?path={JOB}", None, 200),
    ("GET", f"jobs?path={JOB}", None, 200),
    ("POST", "jobs", {"path": JOB, "parameters": {"aa": "3"}}, 400),  # refused: no job starts
    ("GET", "jobs/no-such-job", None, 404),
]


@pytest.mark.parametrize(("method", "route", "body", "status"), ROUTES)
async def test_every_route_needs_the_token(jp_fetch, method, route, body, status):
    # Given the server with authentication on, when a request has no token, then 403 JSON
    denied = await _call(jp_fetch, method, route, body, headers={"Authorization": ""})
    assert denied.code == 403
    assert _json(denied)["status"] == 403 and "not authenticated" in _json(denied)["message"]
    # when it has the token, then the route answers
    allowed = await _call(jp_fetch, method, route, body)
    assert allowed.code == status, allowed.body
    assert _json(allowed)  # JSON either way


def _cookies(response: HTTPResponse) -> dict[str, str]:
    found = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        found[name] = rest.split(";", 1)[0]
    return found


async def test_a_post_with_the_login_cookie_needs_the_xsrf_token(jp_fetch):
    # Given a browser logged in with the token (its login cookie and Jupyter's _xsrf cookie)
    first = await jp_fetch(
        "login", headers={"Authorization": ""}, raise_error=False, follow_redirects=False
    )
    assert first.code == 200
    cookies = _cookies(first)
    logged = await _call(jp_fetch, "GET", f"steps?path={TRAIN}")
    cookies.update(_cookies(logged))
    assert "_xsrf" in cookies and any(name.startswith("username-") for name in cookies)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = {"path": TRAIN, "cells": [{"id": None, "source": "%%step train\nmodel = 2"}]}
    # when it POSTs with the cookie alone, then 403
    bare = await _call(
        jp_fetch, "POST", "steps", body, headers={"Authorization": "", "Cookie": cookie}
    )
    assert bare.code == 403 and "xsrf" in _json(bare)["message"].lower()
    # when it sends the XSRF header as Jupyter's front end does, then the POST is answered
    headers = {"Authorization": "", "Cookie": cookie, "X-XSRFToken": cookies["_xsrf"]}
    sent = await _call(jp_fetch, "POST", "steps", body, headers=headers)
    assert sent.code == 200 and _json(sent)["steps"][0]["state"] == "never_run"


# -- steps ----------------------------------------------------------------------------------------


async def test_paths_outside_the_root_are_refused(jp_fetch, lab_project, tmp_path):
    outside = tmp_path / "secret.ipynb"
    outside.write_text(_notebook(["%load_ext cellops"]))
    link = lab_project / "link.ipynb"
    link.symlink_to(outside)
    try:
        for path in ("../secret.ipynb", str(outside), "link.ipynb", "data/../../secret.ipynb"):
            answer = await _call(jp_fetch, "GET", f"steps?path={path}")
            assert answer.code == 403, path
            assert "outside the server's root" in _json(answer)["message"]
        posted = await _call(jp_fetch, "POST", "jobs", {"path": "../secret.ipynb"})
        assert posted.code == 403
        missing = await _call(jp_fetch, "GET", "steps?path=nowhere.ipynb")
        assert missing.code == 404 and "nowhere.ipynb" in _json(missing)["message"]
        no_path = await _call(jp_fetch, "GET", "steps")
        assert no_path.code == 400 and "?path=" in _json(no_path)["message"]
    finally:
        link.unlink()


async def test_a_notebook_without_load_ext_says_how_to_start(jp_fetch, lab_project):
    (lab_project / "plain.ipynb").write_text(_notebook(["x = 1", "%%step a\ny = x + 1"]))
    answer = _json(await _call(jp_fetch, "GET", "steps?path=plain.ipynb"))
    assert answer["loaded"] is False and "%load_ext cellops" in answer["hint"]
    assert [(s["name"], s["state"], s["cell"]) for s in answer["steps"]] == [("a", "never_run", 1)]
    started = _json(await _call(jp_fetch, "GET", f"steps?path={TRAIN}"))
    assert started["loaded"] is True and started["hint"] is None
    assert started["store"] == default_tracking_uri(lab_project)


async def _kernel(notebook: Path):
    from jupyter_client.manager import AsyncKernelManager

    manager = AsyncKernelManager(kernel_name="python3")
    env = {**_clean_env(), "JPY_SESSION_NAME": str(notebook)}  # as Jupyter names the notebook
    await manager.start_kernel(cwd=str(notebook.parent), env=env)
    client = manager.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    return manager, client


async def _execute(client, code: str) -> None:
    reply = await client.execute_interactive(code, timeout=120, output_hook=lambda _msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]


async def test_a_step_that_just_ran_shows_at_once_and_live_edits_show_stale(jp_fetch, lab_project):
    # Given a notebook whose step cells a real kernel runs
    notebook = lab_project / "live.ipynb"
    cells = ["%load_ext cellops\nn = 3", "%%step load\nrows = list(range(n))",
             "%%step total --metrics size\nsize = len(rows)"]  # fmt: skip
    notebook.write_text(_notebook(cells))
    ids = [c["id"] for c in json.loads(notebook.read_text())["cells"]]
    before = _json(await _call(jp_fetch, "GET", "steps?path=live.ipynb"))
    assert [s["state"] for s in before["steps"]] == ["never_run", "never_run"]
    manager, client = await _kernel(notebook)
    try:
        for source in cells:
            await _execute(client, source)
        # when the panel asks right after the last cell (MLflow's records still on their way)
        ran = _json(await _call(jp_fetch, "GET", "steps?path=live.ipynb"))
        # then both steps are fresh, with what they recorded
        rows = {s["name"]: s for s in ran["steps"]}
        assert [s["state"] for s in ran["steps"]] == ["fresh", "fresh"]
        assert rows["total"]["metrics"] == {"size": 3.0}
        assert rows["load"]["cell"] == 1 and rows["load"]["cell_id"] == ids[1]
        assert rows["total"]["duration_s"] is not None
        # when the same step runs again, it is cached
        await _execute(client, cells[1])
        again = _json(await _call(jp_fetch, "GET", "steps?path=live.ipynb"))
        assert again["steps"][0]["state"] == "cached"
        await _execute(client, "%cellops flush")
        flushed = _json(await _call(jp_fetch, "GET", "steps?path=live.ipynb"))
        run_id = flushed["steps"][1]["run_id"]
        assert (
            MlflowClient(default_tracking_uri(lab_project)).get_run(run_id).info.run_name == "total"
        )
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    # when the browser holds an edit not saved yet, then the step (and the one below) is stale
    live = [{"id": ids[0], "source": cells[0]},
            {"id": ids[1], "source": "%%step load\nrows = list(range(n + 1))"},
            {"id": ids[2], "source": cells[2]}]  # fmt: skip
    edited = _json(await _call(jp_fetch, "POST", "steps", {"path": "live.ipynb", "cells": live}))
    states = [(s["state"], s["reason"]) for s in edited["steps"]]
    assert states == [("stale", "code changed"), ("stale", "upstream 'load' is stale")]
    # and a parameter changed in the browser makes the step that read it stale
    live[0]["source"], live[1]["source"] = "%load_ext cellops\nn = 4", cells[1]
    changed = _json(await _call(jp_fetch, "POST", "steps", {"path": "live.ipynb", "cells": live}))
    assert changed["steps"][0]["reason"] == "input changed: n"
    bad = await _call(jp_fetch, "POST", "steps", {"path": "live.ipynb", "cells": "x"})
    assert bad.code == 400 and '"cells"' in _json(bad)["message"]


# -- runs and the registry ------------------------------------------------------------------------


async def test_runs_and_models_of_a_notebook(jp_fetch, lab_project):
    runs = _json(await _call(jp_fetch, "GET", f"runs?path={TRAIN}"))["runs"]
    assert runs and all(r["start_time"] and r["status"] for r in runs)
    assert {r["kind"] for r in runs} == {"session"}
    models = _json(await _call(jp_fetch, "GET", f"models?path={TRAIN}"))["models"]
    assert [m["name"] for m in models] == ["fraud"]
    assert _json(await _call(jp_fetch, "GET", f"models?path={JOB}"))["models"] == []
    fraud = _json(await _call(jp_fetch, "GET", "models/fraud"))
    client = MlflowClient(default_tracking_uri(lab_project))
    aliases = {k: str(v) for k, v in client.get_registered_model("fraud").aliases.items()}
    assert fraud["aliases"] == aliases == {"champion": "1", "challenger": "3"}
    assert [v["version"] for v in fraud["versions"]] == ["3", "2", "1"]
    v1 = fraud["versions"][2]
    assert (
        v1["aliases"] == ["champion"]
        and v1["run_id"] == client.get_model_version("fraud", "1").run_id
    )
    assert v1["gate"]["passed"] is True
    conditions = v1["gate"]["conditions"]
    assert [c["passed"] for c in conditions] == [True, None, True]  # first model: relative skipped
    assert conditions[0]["text"] == "f1 >= 0.5" and conditions[0]["right"] == 0.5
    assert conditions[0]["left"] > 0.5
    assert fraud["versions"][0]["gate"] is None  # v3 was never judged


async def test_an_unknown_model_is_a_404_naming_it(jp_fetch, lab_project):
    routes = [("GET", "models/nobody"), ("GET", "models/nobody/drift"),
              ("POST", "models/nobody/promote"), ("POST", "models/nobody/rollback")]  # fmt: skip
    for method, route in routes:
        answer = await _call(jp_fetch, method, route, {})
        assert answer.code == 404, route
        message = _json(answer)["message"]
        assert message == (
            f"no model 'nobody' in {default_tracking_uri(lab_project)}; models there: fraud"
        )
    invalid = await _call(jp_fetch, "GET", "models/9lives")
    assert invalid.code == 400 and "invalid model name" in _json(invalid)["message"]


async def test_drift_history_oldest_first(jp_fetch):
    checks = _json(await _call(jp_fetch, "GET", "models/fraud/drift"))["checks"]
    assert [c["dataset_drift"] for c in checks] == [False, True]
    assert {"x0", "x1"} <= set(checks[1]["drifted_columns"])
    assert len(checks[1]["drifted_columns"]) > len(checks[0]["drifted_columns"])
    assert checks[1]["share"] > checks[0]["share"] and checks[0]["time"] <= checks[1]["time"]
    assert {c["version"] for c in checks} == {"1"}


async def test_gate_refusal_promotion_and_rollback_move_the_alias(jp_fetch, lab_project):
    client = MlflowClient(default_tracking_uri(lab_project))

    def champion() -> str:
        return str(client.get_registered_model("fraud").aliases["champion"])

    # Given v1 champion; when v2 (a worse model) is proposed, then the gate refuses with each side
    refused = await _call(jp_fetch, "POST", "models/fraud/promote", {"version": "2"})
    assert refused.code == 409
    answer = _json(refused)
    assert answer["status"] == 409 and "NOT promoted" in answer["message"]
    failing = [c for c in answer["conditions"] if c["passed"] is False]
    assert [c["text"] for c in failing] == ["auc >= champion.auc - 0.01"]
    assert failing[0]["left"] < failing[0]["right"]
    assert champion() == "1"
    # when the challenger (v3, better) is promoted, then @champion moves to it
    promoted = await _call(jp_fetch, "POST", "models/fraud/promote", {})
    assert promoted.code == 200, promoted.body
    assert {k: _json(promoted)[k] for k in ("model", "alias", "version", "previous")} == {
        "model": "fraud", "alias": "champion", "version": "3", "previous": "1"
    }  # fmt: skip
    assert champion() == "3"
    # when rolled back, then the champion is v1 again
    back = await _call(jp_fetch, "POST", "models/fraud/rollback", {})
    assert back.code == 200
    assert (_json(back)["version"], _json(back)["previous"]) == ("1", "3")
    assert champion() == "1"
    nothing = await _call(jp_fetch, "POST", "models/fraud/rollback", {})
    assert nothing.code == 400 and "first champion of fraud" in _json(nothing)["message"]


async def test_a_rollout_shows_in_the_models_answer(jp_fetch, lab_project):
    from cellops.config import load_settings
    from cellops.registry.store import RegistryStore
    from cellops.serving.rollout import TAG, abort, start

    client = MlflowClient(default_tracking_uri(lab_project))
    # Given fraud with a champion and a @challenger, and no rollout ever started
    assert str(client.get_registered_model("fraud").aliases["champion"]) == "1"
    client.set_registered_model_alias("fraud", "challenger", "3")
    assert _json(await _call(jp_fetch, "GET", "models/fraud"))["rollout"] is None
    store = RegistryStore(load_settings(lab_project))
    try:
        # when a 10% canary of the challenger starts (the state is a registry tag: no server)
        start("fraud", canary=10, store=store)
        # then the model's answer, and the list's, carry the split and the waiting rules
        rollout = _json(await _call(jp_fetch, "GET", "models/fraud"))["rollout"]
        assert rollout["active"] is True
        assert rollout["split"] == {"champion": 90.0, "canary": 10.0}
        assert (rollout["rollout"]["mode"], rollout["rollout"]["share"]) == ("canary", 10.0)
        assert (rollout["rollout"]["champion"], rollout["rollout"]["challenger"]) == ("1", "3")
        statuses = {r["condition"]: r["status"] for r in rollout["rules"]}
        assert statuses["canary.error_rate <= champion.error_rate + 0.01"] == "waiting"
        assert rollout["last_decision"]["action"] == "started"
        listed = _json(await _call(jp_fetch, "GET", f"models?path={TRAIN}"))["models"]
        assert listed[0]["rollout"]["split"] == rollout["split"]
        # when it is aborted, then the answer says so: no split, the last decision
        abort("fraud", reason="enough", store=store)
        ended = _json(await _call(jp_fetch, "GET", "models/fraud"))["rollout"]
        assert ended["active"] is False and ended["split"] is None
        assert ended["rollout"]["status"] == "aborted"
        assert ended["last_decision"]["action"] == "aborted"
        # a tag the panel cannot read is no rollout, never a failed answer
        client.set_registered_model_tag("fraud", TAG, "{not json")
        damaged = await _call(jp_fetch, "GET", "models/fraud")
        assert damaged.code == 200 and _json(damaged)["rollout"] is None
    finally:
        client.delete_registered_model_tag("fraud", TAG)


# -- jobs --------------------------------------------------------------------------------------


async def test_parameters_and_a_wrong_parameter_get_the_clis_message(jp_fetch):
    parameters = _json(await _call(jp_fetch, "GET", f"parameters?path={JOB}"))["parameters"]
    by_name = {p["name"]: p for p in parameters}
    assert (by_name["a"]["value"], by_name["a"]["type"]) == (1, "int")
    assert by_name["label"]["value"] == "x"
    wrong = await _call(jp_fetch, "POST", "jobs", {"path": JOB, "parameters": {"aa": "3"}})
    assert wrong.code == 400
    assert "has no parameter 'aa'. Did you mean 'a'?" in _json(wrong)["message"]
    typed = await _call(jp_fetch, "POST", "jobs", {"path": JOB, "parameters": {"a": "three"}})
    assert typed.code == 400 and "parameter 'a' takes an int" in _json(typed)["message"]


async def test_a_job_runs_and_its_progress_is_followed(jp_fetch, lab_project):
    started = await _call(jp_fetch, "POST", "jobs", {"path": JOB, "parameters": {"a": "3"}})
    assert started.code == 202, started.body
    job = _json(started)
    assert job["status"] in ("queued", "running") and job["parameters"] == {"a": "3"}
    seen = set()
    for _ in range(1200):  # a guard against a hang, not a timing assertion
        job = _json(await _call(jp_fetch, "GET", f"jobs/{job['id']}"))
        seen.add(job["status"])
        if job["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.25)
    assert job["status"] == "succeeded", job["message"]
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    assert job["finished"] and job["run_id"]
    run = MlflowClient(default_tracking_uri(lab_project)).get_run(job["run_id"])
    assert run.data.tags["cellops.job"] == job["id"] and run.data.params["a"] == "3"
    listed = _json(await _call(jp_fetch, "GET", f"jobs?path={JOB}"))["jobs"]
    assert listed[0]["id"] == job["id"] and listed[0]["status"] == "succeeded"
    everywhere = _json(await _call(jp_fetch, "GET", "jobs"))["jobs"]
    assert job["id"] in {j["id"] for j in everywhere}


# -- a slow or missing store ------------------------------------------------------------------


async def test_a_blocked_store_does_not_block_the_server(jp_fetch, lab_project):
    await _call(jp_fetch, "GET", "models/fraud")  # the client is connected
    # Given another connection holding the SQLite store's exclusive lock
    db = default_tracking_uri(lab_project).removeprefix("sqlite:///")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # when the panel asks for the model (it waits for the store) and then for the steps
        models = asyncio.ensure_future(_call(jp_fetch, "GET", "models/fraud"))
        await asyncio.sleep(0.5)
        steps = await _call(jp_fetch, "GET", f"steps?path={TRAIN}")
        # then the steps are answered while the model's request is still waiting
        assert steps.code == 200
        assert not models.done()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    answer = await models
    assert answer.code == 200 and _json(answer)["name"] == "fraud"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_an_unreachable_store_is_a_503_with_its_uri(jp_fetch, lab_project):
    # Given a project (under the root) whose tracking server does not answer
    folder = lab_project / "elsewhere"
    folder.mkdir(exist_ok=True)
    uri = f"http://127.0.0.1:{_closed_port()}"
    (folder / "pyproject.toml").write_text(f'[tool.cellops]\ntracking_uri = "{uri}"\n')
    (folder / "nb.ipynb").write_text(_notebook(["%load_ext cellops", "%%step a\nx = 1"]))
    where = "path=elsewhere/nb.ipynb"
    for route in (f"models?{where}", f"runs?{where}", f"jobs?{where}", f"models/fraud?{where}"):
        answer = await _call(jp_fetch, "GET", route)
        assert answer.code == 503, route
        body = _json(answer)
        assert body["uri"] == uri and body["message"].startswith(
            f"cannot reach the MLflow store at {uri}"
        )
    # the steps need no store: they are still answered
    steps = await _call(jp_fetch, "GET", "steps?path=elsewhere/nb.ipynb")
    assert steps.code == 200 and _json(steps)["store"] == uri


def test_the_extension_points_are_declared():
    import cellops_lab
    from cellops_lab.app import CellopsLabApp

    assert cellops_lab._jupyter_server_extension_points() == [
        {"module": "cellops_lab", "app": CellopsLabApp}
    ]
    assert cellops_lab._jupyter_labextension_paths() == [
        {"src": "labextension", "dest": "cellops-lab"}
    ]
    assert CellopsLabApp.name == "cellops_lab"
