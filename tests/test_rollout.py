"""Rollouts as a user runs them: `cellops rollout` on the project's real registry (SQLite store,
models registered with cellops, the champion promoted through the gate) and `cellops serve`
servers on 127.0.0.1 answering real HTTP requests. The tests run in order on one project:
a canary of v2 (split, stickiness, widening, two servers, a restart), a shadow of v2, a
scheduled widening then --widen 100 (v2 promoted through the gate), then a challenger v3
built to fail on a share of inputs (rolled back automatically, recorded in history). Under
pytest-xdist they stay on one worker in this order: `make test` distributes by file
(`--dist loadfile`).
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from . import rollout_models
from .serve_helpers import BIN, FEATURES, Server, clean_env, dataset, make_project, register_models

ROLLOUT_TABLE = """
[tool.cellops.models.fraud.rollout]
rules = ["canary.error_rate <= champion.error_rate + 0.02",
         "canary.latency_p95_ms <= champion.latency_p95_ms * 5 + 50",
         "shadow.agreement >= 0.5"]
window = "3s"
min_requests = 20
"""
SCHEDULE = "schedule = [50]\n"
N = 2000
SHARE = 10.0
# The canary's count among N random keys is Binomial(N, 0.10) (the hash of a random key is a
# uniform point of [0, 100)): its standard deviation is sqrt(N * 0.1 * 0.9) = 13.4 requests, 0.67
# points of share. The tolerance, 4 standard deviations (2.7 points), fails a correct split with
# probability 6e-5.
TOLERANCE = 4 * math.sqrt(N * 0.1 * 0.9) / N * 100


def cellops(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cellops"), *args], cwd=root, env=clean_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def state(root: Path):
    from cellops.config import load_settings
    from cellops.serving.rollout import read_state

    return read_state(load_settings(root), "fraud")


def end_rollout(project: Path) -> None:
    """Abort the rollout a test before left running (each test starts its own)."""
    found = state(project)
    if found is not None and found.running:
        ended = cellops(project, "rollout", "fraud", "--abort", "--reason", "the next test")
        assert ended.returncode == 0, ended.stderr


def rows(count: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.gauss(0, 1) for _ in FEATURES] for _ in range(count)]


def ask(client: httpx.Client, url: str, row: list[float], key: str | None = None) -> dict:
    headers = {"x-request-key": key} if key is not None else {}
    response = client.post(
        url + "/invocations", json={"dataframe_split": {"columns": FEATURES, "data": [row]}},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def variants(url: str, keys: list[str], row: list[float]) -> dict[str, str]:
    with httpx.Client(timeout=10) as client:
        return {key: ask(client, url, row, key)["variant"] for key in keys}


def wait_for(check, timeout: float = 30, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None if isinstance(value, pd.DataFrame) else value:
            return value
        time.sleep(every)
    return check()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Path:
    root = make_project(tmp_path_factory.mktemp("rollout") / "proj", empty_mlflow_db)
    with open(root / "pyproject.toml", "a") as fh:
        fh.write(ROLLOUT_TABLE)
    register_models(root)  # fraud v1 champion, v2 challenger; `plain` v1 champion
    return root


@pytest.fixture(scope="module")
def server(project: Path):
    running = Server(project, "fraud").start()
    yield running
    running.stop()


def follows(url: str, check) -> bool:
    """Until the server's answers show the rollout (the servers poll every 0.3 s)."""
    return bool(wait_for(check, timeout=20))


# -- a canary --------------------------------------------------------------------------------


def test_canary_share_is_sticky_widens_and_every_server_agrees(server, project, tmp_path):
    started = cellops(project, "rollout", "fraud", "--canary", "10")
    assert started.returncode == 0, started.stderr
    assert "canary 10% to v2" in started.stdout
    keys = [f"user-{random.getrandbits(64):016x}" for _ in range(N)]
    row = rows(1, 0)[0]
    assert follows(server.url, lambda: "canary" in variants(server.url, keys[:200], row).values())

    with httpx.Client(timeout=10) as client:
        first = {key: ask(client, server.url, row, key) for key in keys}
    on_canary = {k for k, answer in first.items() if answer["variant"] == "canary"}
    share = len(on_canary) / N * 100
    assert abs(share - SHARE) <= TOLERANCE, f"canary share {share:.2f}% of {N} random keys"
    assert {first[k]["version"] for k in on_canary} == {"2"}
    assert {a["version"] for k, a in first.items() if k not in on_canary} == {"1"}
    again = variants(server.url, keys[:500], row)  # sticky: the same key, the same variant
    assert again == {k: first[k]["variant"] for k in keys[:500]}

    # a second server on the same store (as a second worker or machine) splits alike
    other = Server(project, "fraud").start()
    try:
        seen = variants(other.url, keys[:500], row)
        assert seen == again, (state(project), other.output(), server.output())
    finally:
        other.stop()

    # widening keeps everyone who was on the canary
    widened = cellops(project, "rollout", "fraud", "--widen", "25")
    assert widened.returncode == 0, widened.stderr
    assert follows(
        server.url, lambda: state(project).share == 25 and _shown_share(server.url, keys, row) > 15
    )
    now = variants(server.url, keys, row)
    assert all(now[k] == "canary" for k in on_canary)
    assert (
        abs(sum(v == "canary" for v in now.values()) / N * 100 - 25)
        <= 4 * math.sqrt(N * 0.25 * 0.75) / N * 100
    )

    # a restarted server resumes the same split before its first answer
    server.stop()
    server.start()
    assert variants(server.url, keys[:500], row) == {k: now[k] for k in keys[:500]}

    status = cellops(project, "rollout", "fraud")
    assert status.returncode == 0, status.stderr
    assert "canary 25% -> v2" in status.stdout and "champion" in status.stdout


def _shown_share(url: str, keys: list[str], row: list[float]) -> float:
    found = variants(url, keys[:200], row)
    return sum(v == "canary" for v in found.values()) / len(found) * 100


def test_bad_rollout_commands_are_refused_with_what_to_type(server, project):
    del server
    below = cellops(project, "rollout", "fraud", "--widen", "20")
    assert below.returncode == 2 and "not above the current 25%" in below.stderr
    above = cellops(project, "rollout", "fraud", "--widen", "150")
    assert above.returncode == 2 and "over 100" in above.stderr
    second = cellops(project, "rollout", "fraud", "--shadow")
    assert second.returncode == 4 and "a rollout of fraud is running" in second.stderr
    assert "--abort" in second.stderr

    client = MlflowClient(f"sqlite:///{project / '.cellops' / 'mlflow.db'}")
    client.delete_registered_model_alias("plain", "challenger")
    none = cellops(project, "rollout", "plain", "--canary", "10")
    assert none.returncode == 2 and "no @challenger" in none.stderr

    # a challenger of `wide` that takes other columns than its champion
    code = (
        "import os, cellops, pandas as pd\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from tests.serve_helpers import dataset\n"
        "X, y = dataset()\n"
        "cellops.register_model(LogisticRegression().fit(X, y), 'wide', X)\n"
        "Z = X.rename(columns={'x5': 'amount'}).astype({'x4': 'int64'})\n"
        "cellops.register_model(LogisticRegression().fit(Z, y), 'wide', Z)\n"
    )
    made = subprocess.run(
        [sys.executable, "-c", code], cwd=project,
        env={**clean_env(), "PYTHONPATH": str(Path(__file__).parents[1])},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    client.set_registered_model_alias("wide", "champion", "1")
    differs = cellops(project, "rollout", "wide", "--canary", "10")
    assert differs.returncode == 2, differs.stderr
    for named in ("x5", "amount", "x4 is long, not double"):
        assert named in differs.stderr
    assert state(project).share == 25  # nothing of fraud's rollout changed


# -- a shadow --------------------------------------------------------------------------------


def test_shadow_never_changes_an_answer_and_logs_both_under_one_id(server, project):
    end_rollout(project)
    data = rows(300, 1)
    keys = [f"k{i}" for i in range(len(data))]
    assert follows(
        server.url, lambda: set(variants(server.url, keys[:100], data[0]).values()) == {"champion"}
    )
    with httpx.Client(timeout=10) as client:
        before = [ask(client, server.url, row, key) for row, key in zip(data, keys, strict=True)]
    started = cellops(project, "rollout", "fraud", "--shadow")
    assert started.returncode == 0, started.stderr
    with httpx.Client(timeout=10) as client:

        def shadowing():  # the server has read the rollout and loaded v2 once a copy counts
            ask(client, server.url, data[0], keys[0])
            return _stats_say(project, "shadow")

        assert wait_for(shadowing, timeout=60), "the server should start shadowing v2"
        during = [ask(client, server.url, row, key) for row, key in zip(data, keys, strict=True)]
    for old, new in zip(before, during, strict=True):
        assert (new["predictions"], new["version"], new["variant"]) == (
            old["predictions"],
            "1",
            "champion",
        )
    ids = {answer["request_id"] for answer in during}

    def logged():
        frame = _log(project)
        shadow = frame[(frame["variant"] == "shadow") & frame["request_id"].isin(ids)]
        return shadow if len(shadow) >= 250 else None

    shadow = wait_for(logged, timeout=30)
    assert shadow is not None, "the shadow's predictions should be logged"
    assert set(shadow["version"]) == {"2"}
    champion = _log(project)
    champion = champion[
        (champion["variant"] == "champion") & champion["request_id"].isin(set(shadow["request_id"]))
    ]
    assert set(champion["request_id"]) == set(shadow["request_id"])  # both, under one id
    status = wait_for(lambda: _stats_say(project, "shadow", 250), timeout=20)
    assert status, "cellops rollout should count the shadow's comparisons"
    agreement = status["variants"]["shadow"]["agreement"]
    assert 0.5 <= agreement <= 1.0
    shown = cellops(project, "rollout", "fraud")
    assert "shadow rollout" in shown.stdout and "agreement" in shown.stdout


def _stats_say(project: Path, variant: str, requests: int = 1):
    from cellops.config import load_settings
    from cellops.serving.status import rollout_status

    status = rollout_status("fraud", load_settings(project))
    found = status["variants"].get(variant) or {}
    return status if (found.get("requests") or 0) >= requests else None


def _log(project: Path) -> pd.DataFrame:
    folder = project / ".cellops" / "predictions" / "model=fraud"
    if not folder.is_dir():
        return pd.DataFrame(columns=["variant", "request_id", "version"])
    return pd.read_parquet(folder)


# -- widening by schedule, then to 100 -------------------------------------------------------


def test_schedule_widens_after_a_passing_window_and_100_promotes_through_the_gate(server, project):
    end_rollout(project)
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        text.replace("min_requests = 20\n", "min_requests = 20\n" + SCHEDULE)
    )
    try:
        assert cellops(project, "rollout", "fraud", "--canary", "10").returncode == 0
        data = rows(40, 2)

        def widened():
            with httpx.Client(timeout=10) as client:
                for i in range(200):
                    ask(client, server.url, data[i % len(data)], f"s{random.getrandbits(48)}")
            return state(project).share == 50

        assert wait_for(widened, timeout=60, every=0), "a passing window should widen to 50"
        assert state(project).last["by"] == "cellops serve (schedule)"
    finally:
        (project / "pyproject.toml").write_text(text)

    promoted = cellops(project, "rollout", "fraud", "--widen", "100")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "PROMOTED" in promoted.stdout and "gate" in promoted.stdout
    client = MlflowClient(f"sqlite:///{project / '.cellops' / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("fraud", "previous_champion").version) == "1"
    assert state(project).status == "promoted"

    def back_to_one_version():
        answers = [ask(httpx.Client(timeout=10), server.url, data[0], key) for key in "abc"]
        return {(a["variant"], a["version"]) for a in answers} == {("champion", "2")}

    assert follows(server.url, back_to_one_version)
    history = cellops(project, "history", "fraud")
    assert "rollout" in history.stdout and "widened 10% -> 50%" in history.stdout
    assert "promoted: the rollout ended" in history.stdout


# -- a canary that fails ---------------------------------------------------------------------


def test_a_failing_canary_is_rolled_back_within_one_window_and_callers_never_see_it(
    server, project
):
    import os

    import cellops as cellops_module
    from cellops.store import session as session_module

    frame, y = dataset()
    inner = LogisticRegression().fit(frame.iloc[:1000], y[:1000])
    flaky = rollout_models.Flaky(inner, threshold=0.8).fit(frame, y)
    cloudpickle.register_pickle_by_value(rollout_models)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        safe = frame[frame["x0"] <= 0.8].iloc[:50]
        cellops_module.register_model(flaky, "fraud", safe)  # v3, @challenger
    finally:
        session_module.end_session()
        os.chdir(cwd)
        cloudpickle.unregister_pickle_by_value(rollout_models)
    started = cellops(project, "rollout", "fraud", "--canary", "50")
    assert started.returncode == 0, started.stderr
    assert "v3" in started.stdout
    data = rows(400, 3)
    answers, statuses = [], set()
    with httpx.Client(timeout=10) as client:

        def on_canary():
            return {ask(client, server.url, data[0], f"w{i}")["variant"] for i in range(40)}

        assert follows(server.url, lambda: "canary" in on_canary())
        begun = time.monotonic()
        while state(project).status == "running" and time.monotonic() - begun < 60:
            for row in data[:100]:
                key = f"f{random.getrandbits(48)}"
                response = client.post(
                    server.url + "/invocations",
                    json={"dataframe_split": {"columns": FEATURES, "data": [row]}},
                    headers={"x-request-key": key},
                )  # fmt: skip
                statuses.add(response.status_code)
                answers.append((row, response.json()))
    final = state(project)
    assert final.status == "rolled back", final
    assert final.share == 0 and final.last["window"] <= 1  # within one window of its start
    assert statuses == {200}, "a failing canary never reaches the caller"
    failing = [answer for row, answer in answers if row[0] > 0.8]
    assert failing and all(a["variant"] == "champion" and a["version"] == "2" for a in failing)
    assert final.last["rules"][0]["rule"].startswith("canary.error_rate")
    sides = final.last["rules"][0]["sides"]
    assert "canary.error_rate = " in sides and "champion.error_rate + 0.02 = " in sides

    history = cellops(project, "history", "fraud")
    assert "rolled back" in history.stdout
    assert (
        "FAIL" in history.stdout
        and "canary.error_rate <= champion.error_rate + 0.02" in history.stdout
    )
    with httpx.Client(timeout=10) as client:  # every answer from the champion again
        assert {
            ask(client, server.url, row, f"z{i}")["variant"] for i, row in enumerate(data[:50])
        } == {"champion"}

    # the dashboard's serving section shows the rollout, its counts and the automatic decision
    from cellops.config import load_settings
    from cellops.dashboards.render import model_page
    from cellops.registry.store import RegistryStore

    section = model_page(RegistryStore(load_settings(project)), "fraud")["serving"]
    assert 'class="cellops-rollout"' in section and "rolled back" in section
    assert "canary.error_rate" in section and "last decision: rolled back" in section


def test_rules_read_the_gate_syntax_and_its_did_you_mean():
    from cellops.registry.gate import GateSyntaxError, UnknownMetricError
    from cellops.serving.rules import Rules

    rules = Rules(["canary.error_rate <= champion.error_rate + 0.01", "shadow.agreement >= 0.95"])
    window = {
        "canary": {"requests": 50, "error_rate": 0.2},
        "champion": {"requests": 500, "error_rate": 0.0},
    }
    verdict = rules.judge(window, "canary", 20)
    assert [r.status for r in verdict.results] == ["FAIL", "skipped"]
    assert verdict.failed[0].sides == "canary.error_rate = 0.2 <= champion.error_rate + 0.01 = 0.01"
    assert rules.judge(window, "canary", 100).results[0].status == "waiting"
    with pytest.raises(UnknownMetricError, match="did you mean 'canary.error_rate'"):
        Rules(["canary.eror_rate <= 0.1"])
    with pytest.raises(UnknownMetricError, match="did you mean 'shadow.agreement'"):
        Rules(["shadow.agrement >= 0.9"])
    with pytest.raises(GateSyntaxError) as caught:
        Rules(["canary.error_rate =< 0.1"])
    assert "'canary.error_rate =< 0.1'" in str(caught.value) and "column 19" in str(caught.value)
