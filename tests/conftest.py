"""Shared fixtures: an isolated cellops project per test, and a real IPython shell in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
REPO = TESTS.parent


def fixture_path(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cellops project (a git repository with `[tool.cellops]`), as the cwd."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.cellops]\n')
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    monkeypatch.chdir(root)
    for name in ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def ip(project: Path, request: pytest.FixtureRequest):
    """A real IPython shell with cellops loaded; `ip.run_cell` re-raises the cell's error.

    Without `store`, the project's SQLite store starts as a copy of the pre-built schema, as
    `store` makes it (migrating a new store takes seconds)."""
    from IPython.core.interactiveshell import InteractiveShell

    from cellops.store import session as session_module

    if "store" not in request.fixturenames and not os.environ.get("MLFLOW_TRACKING_URI"):
        _copy_schema(project, request)

    shell = InteractiveShell.instance()
    shell.reset(new_session=True)
    shell.run_line_magic("load_ext", "cellops")
    yield shell
    shell.run_line_magic("unload_ext", "cellops")
    session_module.end_session()


def _copy_schema(project: Path, request: pytest.FixtureRequest) -> str:
    """The project's default SQLite store, made as a copy of the session's migrated schema."""
    from cellops.config import default_tracking_uri

    uri = default_tracking_uri(project)
    db = Path(uri.removeprefix("sqlite:///"))
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("empty_mlflow_db"), db)
    return uri


def run(shell, code: str):
    """Run a cell; raise its exception, as a test wants."""
    result = shell.run_cell(code)
    result.raise_error()
    return result


def python() -> str:
    return sys.executable


# -- the store a test runs against ---------------------------------------------------------------

STORES = ("sqlite", "server")


_server: dict = {}


def _uses_server(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return "mlflow_server" in getattr(item, "fixturenames", ()) or (
        callspec is not None and callspec.params.get("store") == "server"
    )


# Modules whose every test starts a kernel, a server, a browser, DVC or Evidently; elsewhere a
# test is slow when it uses a store or a shell (MLflow's SQLite store) or marks itself.
SLOW_MODULES = {
    "test_cell_output", "test_dashboard", "test_dashboard_burst", "test_data_dvc",
    "test_drift_agreement",
    "test_drift_monitor", "test_gallery", "test_jobs", "test_jobs_failures", "test_jobs_templates",
    "test_lab_browser", "test_lab_frontend", "test_lab_packaging", "test_lab_server",
    "test_notebooks", "test_reaper_sessions",
    "test_registry", "test_registry_cli", "test_serve", "test_served_monitor",
    "test_step_correctness", "test_rollout", "test_export",
}  # fmt: skip
SLOW_FIXTURES = {"ip", "store", "store_ip", "mlflow_server", "empty_mlflow_db"}


def _is_slow(item: pytest.Item) -> bool:
    module = item.path.stem if hasattr(item, "path") else ""
    return module in SLOW_MODULES or bool(SLOW_FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the marks added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tests (`pytest -m "not slow"` is the fast loop); tests on the MLflow server
    run last (in their order), so it starts while others run."""
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
    items.sort(key=_uses_server)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Launch the MLflow server in the background when a selected test will need it (not
    when only collecting)."""
    if session.config.option.collectonly:
        return
    if any(_uses_server(item) for item in session.items):
        from .mlflow_server import MlflowServer

        _server["server"] = server = MlflowServer()
        server.launch()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, for the module's browser tests (see tests/browser.py)."""
    from playwright.sync_api import sync_playwright

    from .browser import launch_chromium

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def mlflow_server():
    """A real `mlflow server` on 127.0.0.1 (HTTP store), started once per test session."""
    from .mlflow_server import MlflowServer

    server = _server.pop("server", None) or MlflowServer()
    try:
        server.launch()
        server.wait_ready()
        yield server.uri
    finally:
        server.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop a server that was launched but never used (deselected, or the run was cut short)."""
    server = _server.pop("server", None)
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with the schema already migrated, made once per session.

    Creating the schema takes seconds; a test copies this file instead of migrating again.
    """
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tracking URI a test runs against: the project's SQLite store, or the server.

    Request it before `ip` (or use `store_ip`), so MLFLOW_TRACKING_URI is set when cellops
    loads. Only the parameter "sqlite": `@pytest.mark.parametrize("store", ["sqlite"],
    indirect=True)`.
    """
    if request.param == "server":
        uri = request.getfixturevalue("mlflow_server")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        return uri
    return _copy_schema(project, request)


@pytest.fixture
def store_ip(store: str, request: pytest.FixtureRequest):
    """`ip`, loaded after `store` chose the tracking store."""
    return request.getfixturevalue("ip")
