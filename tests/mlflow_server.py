"""A real `mlflow server` on loopback for the tests that run against an HTTP store.

The server is the venv's own `mlflow server`: a SQLite backend and, since `--serve-artifacts`
is on by default in MLflow 3, artifacts proxied through the server (`mlflow-artifacts:/`) into
`--artifacts-destination`, so clients upload `log_text`/`log_artifact` over HTTP. The job
runner (huey consumers) is switched off: the tests do not use it and it forks eight processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` in its own process group, so stopping it stops its workers too."""

    def __init__(self, folder: Path | None = None, port: int | None = None):
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="cellops-mlflow-server-"))
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = self.folder / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server and wait until it answers; return its URI."""
        self.launch()
        self.wait_ready()
        return self.uri

    def launch(self) -> None:
        """Start the server process without waiting for it (it takes seconds to come up)."""
        if self._process is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).parent / "mlflow"
        command = [
            str(mlflow), "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"),
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"mlflow server exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health in time:\n{tail}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self._terminate(process)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        try:  # the group this server was started in: the CLI and its uvicorn worker
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
