"""A real `jupyter lab` on 127.0.0.1 for the browser tests and the badge benchmark: a cellops
project in a temporary folder, the server started as a user would (with a token), and headless
Chromium (Debian's /usr/bin/chromium through Python playwright) looking at it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import nbformat
from jupyter_server.utils import url_path_join

BIN = Path(sys.executable).parent
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
FOREIGN_ENV = ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER")


def make_project(root: Path, empty_db: Path | None, extra_toml: str = "") -> Path:
    """A cellops project (git repository with `[tool.cellops]`) with its SQLite store made
    from the pre-migrated `empty_db` (None: cellops migrates a new one)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "demo"\n\n[tool.cellops]\n{extra_toml}'
    )
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    if empty_db is not None:
        db = root / ".cellops" / "mlflow.db"
        db.parent.mkdir(exist_ok=True)
        shutil.copyfile(empty_db, db)
    return root


def write_notebook(path: Path, sources: list[str]) -> Path:
    """A notebook of code cells (each with its nbformat id) on the venv's python3 kernel, with
    the metadata JupyterLab would add on opening it (the kernel's language_info), so that a
    notebook that turns dirty on opening was changed by something else."""
    import platform

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"
    }  # fmt: skip
    notebook.metadata["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
        "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3", "version": platform.python_version(),
    }  # fmt: skip
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


def lab_env(scratch: Path) -> dict[str, str]:
    """The environment of the test's `jupyter` commands: the venv first, Jupyter's config,
    data (the notebook trust database) and runtime files in `scratch`, no outside store."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_CONFIG_DIR"] = str(scratch / "config")
    env["JUPYTER_DATA_DIR"] = str(scratch / "data")
    env["JUPYTER_RUNTIME_DIR"] = str(scratch / "runtime")
    return env


def trust(scratch: Path, *notebooks: Path) -> None:
    """`jupyter trust`: else JupyterLab marks each cell `trusted: false`, dirtying the file."""
    subprocess.run([str(BIN / "jupyter"), "trust", *map(str, notebooks)], env=lab_env(scratch),
                   check=True, capture_output=True, timeout=60)  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Lab:
    """A running `jupyter lab`: its process, address and token."""

    process: subprocess.Popen
    port: int
    token: str
    root: Path
    log_path: Path
    _log: IO[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, *parts: str) -> str:
        return url_path_join(self.base, *parts) + f"?token={self.token}"

    def notebook_url(self, path: str) -> str:
        return self.url("lab", "tree", path)

    def api(self, route: str, **query: str) -> Any:
        """GET a cellops route with the token (for the tests' own checks)."""
        from urllib.parse import urlencode

        url = url_path_join(self.base, "cellops", "api", route) + "?" + urlencode(query)
        request = urllib.request.Request(url, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log()}")
            try:
                with urllib.request.urlopen(self.url("api", "status"), timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not answer in {timeout} s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def start_lab(root: Path, scratch: Path) -> Lab:
    """`jupyter lab` on 127.0.0.1 serving `root`, with a token; its settings, workspaces and
    runtime files in `scratch` (nothing from the user's ~/.jupyter)."""
    import secrets

    scratch.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(24)
    env = lab_env(scratch)
    env["JUPYTER_TOKEN"] = token  # read by the server; never on its command line
    command = [
        str(BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={scratch / 'settings'}",
        f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the tests run commands
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log_path = scratch / "lab.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed by Lab.stop
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    lab = Lab(process, port, token, root, log_path, log)
    try:
        lab.wait_ready()
    except Exception:
        lab.stop()
        raise
    return lab


def open_notebook(page: Any, lab: Lab, path: str, timeout: float = 120_000) -> None:
    """Open `path` in JupyterLab and wait for its kernel to be idle."""
    page.goto(lab.notebook_url(path), wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout)
    wait_kernel_idle(page, timeout)


def wait_kernel_idle(page: Any, timeout: float = 120_000) -> None:
    page.wait_for_function(
        """() => {
            const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const kernel = panel && panel.sessionContext && panel.sessionContext.session
                && panel.sessionContext.session.kernel;
            return kernel && kernel.status === 'idle';
        }""",
        timeout=timeout,
    )


def run_command(page: Any, command: str, args: dict | None = None) -> Any:
    """Run a JupyterLab command, as a menu item or a shortcut would."""
    return page.evaluate(
        "([id, args]) => window.jupyterapp.commands.execute(id, args)", [command, args or {}]
    )


def badges(page: Any) -> list[dict[str, Any]]:
    """Every cell's badge: its index, state, text and tooltip (None where there is none)."""
    return page.evaluate(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            return panel.content.widgets.map((cell, index) => {
                const badge = cell.node.querySelector('.cellops-badge');
                return badge ? {index, state: badge.dataset.state, text: badge.textContent,
                                tooltip: badge.title} : null;
            });
        }"""
    )
