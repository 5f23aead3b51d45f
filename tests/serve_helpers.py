"""What the serving tests share: a project with registered models, and `cellops serve` (or
`mlflow models serve`) run as a subprocess on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

BIN = Path(sys.executable).parent
FEATURES = [f"x{i}" for i in range(6)]
GATE = '["f1 >= 0.5"]'
SERVE_TABLE = """
[tool.cellops.serve]
poll_seconds = 0.3
log_batch_seconds = 0.2
log_rotate_seconds = 1.0
max_body_bytes = 20000
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_project(root: Path, template_db: Path) -> Path:
    """A cellops project (git, `[tool.cellops]` with a gate for `fraud` and quick serve
    settings), its store a copy of the migrated schema."""
    root.mkdir(parents=True)
    (root / "data").mkdir()
    frame, y = dataset()
    frame.iloc[1000:].assign(label=y[1000:]).to_parquet(root / "data" / "holdout.parquet")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.cellops]\n'
        f'\n[tool.cellops.models.fraud]\ngate = {GATE}\nholdout = "data/holdout.parquet"\n'
        f'label = "label"\nlatency_samples = 5\n{SERVE_TABLE}'
    )
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    (root / ".cellops").mkdir()
    shutil.copyfile(template_db, root / ".cellops" / "mlflow.db")
    return root


def dataset() -> tuple[pd.DataFrame, list]:
    X, y = make_classification(1500, 6, n_informative=4, random_state=0)
    return pd.DataFrame(X, columns=FEATURES), y


def register_models(root: Path) -> None:
    """fraud v1 (champion, through the gate), fraud v2 (challenger, better), and `plain`: a
    model registered without a sample, so without a signature (alias champion)."""
    import cellops
    from cellops.store import session as session_module

    frame, y = dataset()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cellops.register_model(LogisticRegression().fit(frame.iloc[:300], y[:300]), "fraud", frame)
        assert cellops.promote("fraud").promoted
        cellops.register_model(
            LogisticRegression().fit(frame.iloc[:1000], y[:1000]), "fraud", frame
        )
        plain = LogisticRegression().fit(frame.to_numpy()[:300], y[:300])
        cellops.register_model(plain, "plain")
        session_module.end_session()
    finally:
        os.chdir(cwd)
        session_module.end_session()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.cellops' / 'mlflow.db'}")
    client.set_registered_model_alias("plain", "champion", "1")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CELLOPS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `mlflow models serve` needs it
    env.update(extra)
    return env


class Server:
    """`cellops serve ...` in a subprocess; `url` once /ready answers."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [str(BIN / "cellops"), "serve", *args, "--port", str(self.port)]
        self.log = root / f"serve-{self.port}.log"
        self.env = env or clean_env()
        self.process: subprocess.Popen | None = None

    def start(self, ready: str = "/ready", timeout: float = 60) -> Server:
        with open(self.log, "w") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                self.args, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            try:
                if httpx.get(self.url + ready, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {timeout} s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)


def split(rows: list[list[float]]) -> dict:
    return {"dataframe_split": {"columns": FEATURES, "data": rows}}


def wait_until(check, timeout: float = 20, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()  # falsy, or None, until done (a frame counts as done)
        done = bool(value) if isinstance(value, (bool, int, list, set, str)) else value is not None
        if done or time.monotonic() > deadline:
            return value
        time.sleep(every)
