"""`cellops export docker|kserve`: what runs `cellops serve` beyond this machine.

- `docker`: a build context: a Dockerfile (python slim of the version's recorded Python, a
  non-root user, `HEALTHCHECK` on /ready, entry point `cellops serve MODEL`), requirements.txt
  pinned from the version's recorded requirements (MLflow's requirements.txt of the model, with
  the packages `cellops serve` needs pinned at this machine's versions), cellops.toml (serve
  settings), and wheels/ where a cellops wheel goes when cellops is not on your index.
- `kserve`: a KServe `InferenceService` (serving.kserve.io/v1beta1) running that image as a
  custom container (`spec.predictor.containers`), readiness on /ready, liveness on /health,
  Prometheus scrape annotations, the prediction log on a persistent volume claim; with
  `--canary N` the new revision serves `@challenger` and gets `canaryTrafficPercent: N`.

The image serves from the registry: the container needs a tracking server it can reach
(MLFLOW_TRACKING_URI); the project's SQLite file is not reachable from a cluster.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import Settings
from ..errors import ExportError

PORT = 8080
LOG_MOUNT = "/var/lib/cellops/predictions"
# what `cellops serve` imports beyond the model's own requirements
SERVE_PACKAGES = (
    "uvicorn",
    "starlette",
    "orjson",
    "prometheus_client",
    "pyarrow",
    "pyyaml",
    "cloudpickle",
    "numpy",
)
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


@dataclass
class Export:
    folder: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: str = ""


def _local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def _version_folder(settings: Settings, name: str, alias: str) -> tuple[str, str, Any]:
    from .model import local_folder
    from .source import AliasReader

    ref = AliasReader(settings, name, alias).resolve()
    folder, temp = local_folder(ref, settings.tracking_uri)
    return ref.version, folder, temp


def pinned_requirements(folder: str, notes: list[str]) -> list[str]:
    """The version's recorded requirements, each pinned (an unpinned one at the version
    installed here), then what `cellops serve` needs that the model did not list."""
    path = Path(folder) / "requirements.txt"
    if not path.is_file():
        raise ExportError(
            f"the model version has no recorded requirements ({path} is missing): register it "
            "again with cellops.register_model, which records them"
        )
    lines, seen = [], set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _PIN.match(line)
        name = _canonical(match[1]) if match else line
        seen.add(name)
        if match and not match[3]:
            installed = _installed(match[1])
            if installed:
                line = f"{match[1]}{match[2] or ''}=={installed}"
                notes.append(
                    f"{match[1]} was not pinned by the model: pinned at {installed}, installed here"
                )
            else:
                notes.append(f"{match[1]} is not pinned and not installed here: left unpinned")
        lines.append(line)
    extra = [
        "",
        "# what `cellops serve` needs (pinned at the versions installed here)",
        f"cellops=={__version__}",
    ]
    for package in SERVE_PACKAGES:
        installed = _installed(package)
        if _canonical(package) not in seen and installed:
            extra.append(f"{_canonical(package)}=={installed}")
    return [
        "# the model version's recorded requirements (MLflow's requirements.txt)",
        *lines,
        *extra,
    ]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _python(folder: str) -> str:
    import yaml

    path = Path(folder) / "python_env.yaml"
    if path.is_file():
        found = str((yaml.safe_load(path.read_text()) or {}).get("python", ""))
        match = re.match(r"^(\d+)\.(\d+)", found)
        if match:
            return f"{match[1]}.{match[2]}"
    return "3.11"


def dockerfile(name: str, version: str, python: str, tracking_uri: str | None) -> str:
    env = [
        "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1",
        f"CELLOPS_SERVE_PREDICTIONS_ROOT={LOG_MOUNT}",
    ]  # fmt: skip
    if tracking_uri:
        env.append(f"MLFLOW_TRACKING_URI={tracking_uri}")
    probe = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/ready', timeout=2)"
    )
    lines = [
        f"# Written by `cellops export docker {name}` (v{version} was @champion then). The image",
        "# serves the registry's alias, so it follows promotions: MLFLOW_TRACKING_URI must name a",
        "# tracking server the container reaches (docker run -e MLFLOW_TRACKING_URI=...).",
        f"FROM python:{python}-slim",
        "ENV " + " \\\n    ".join(env),
        "WORKDIR /app",
        "COPY requirements.txt /tmp/build/requirements.txt",
        "COPY wheels/ /tmp/build/wheels/",
        " \\\n    && ".join(
            [
                "RUN pip install --no-cache-dir --find-links /tmp/build/wheels"
                " -r /tmp/build/requirements.txt",
                "rm -rf /tmp/build",
                "useradd --create-home --uid 10001 --user-group cellops",
                f"mkdir -p {LOG_MOUNT} /app/.cellops",
                "chown -R cellops:cellops /var/lib/cellops /app",
            ]
        ),
        "COPY --chown=cellops:cellops cellops.toml /app/cellops.toml",
        "USER 10001",
        f"EXPOSE {PORT}",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\\n"
        f'    CMD ["python", "-c", "{probe}"]',
        f'ENTRYPOINT ["cellops", "serve", "{name}", "--host", "0.0.0.0", "--port", "{PORT}"]',
        'CMD ["--alias", "champion"]',
    ]
    return "\n".join(lines) + "\n"


def export_docker(settings: Settings, name: str, out: Path | None = None,
                  tracking_uri: str | None = None) -> Export:  # fmt: skip
    """Write the build context of the image serving `name` into `out` (default
    deploy/docker/NAME under the project)."""
    from ..registry.store import check_model_name

    check_model_name(name)
    folder = Path(out) if out else settings.root / "deploy" / "docker" / name
    _check_folder(folder, ("Dockerfile", "requirements.txt", "cellops.toml", "wheels"))
    version, model_folder, temp = _version_folder(settings, name, "champion")
    export = Export(folder, version=version)
    try:
        requirements = pinned_requirements(model_folder, export.notes)
        python = _python(model_folder)
    finally:
        if temp is not None:
            temp.cleanup()
    uri = tracking_uri or (None if _local(settings.tracking_uri) else settings.tracking_uri)
    if uri is None:
        export.notes.append(
            f"the project's store ({settings.tracking_uri}) is on this machine: the image sets no "
            "MLFLOW_TRACKING_URI; pass one at run time (-e) or export with --tracking-uri URI"
        )
    poll = settings.serve.poll_seconds
    files = {
        "Dockerfile": dockerfile(name, version, python, uri),
        "requirements.txt": "\n".join(requirements) + "\n",
        "cellops.toml": (
            "# settings of `cellops serve` in the image\n"
            f"[tool.cellops.serve]\npoll_seconds = {poll}\n"
        ),
        "wheels/README.txt": (
            "Put a cellops wheel here when cellops is not on your package index:\n"
            "  pip wheel --no-deps -w wheels/ /path/to/cellops\n"
        ),
    }
    for relative, text in files.items():
        export.files.append(_write(folder / relative, text))
    return export


def inference_service(name: str, image: str, tracking_uri: str, canary: int | None = None,
                      log_claim: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The InferenceService document (a dict, as `kubectl apply` reads it as YAML)."""
    service = _dns_name(name)
    claim = log_claim or f"{service}-predictions"
    args = ["--alias", "challenger" if canary else "champion"]
    container = {
        "name": "kserve-container",
        "image": image,
        "args": args,
        "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
            {"name": "CELLOPS_SERVE_PREDICTIONS_ROOT", "value": LOG_MOUNT},
        ],
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": PORT},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "failureThreshold": 3,
        },  # fmt: skip
        "livenessProbe": {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [{"name": "predictions", "mountPath": LOG_MOUNT}],
    }
    predictor: dict[str, Any] = {
        "minReplicas": 1,
        "containers": [container],
        "volumes": [{"name": "predictions", "persistentVolumeClaim": {"claimName": claim}}],
    }
    if canary:
        predictor["canaryTrafficPercent"] = int(canary)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": service,
            "labels": {
                "app.kubernetes.io/name": service,
                "app.kubernetes.io/managed-by": "cellops",
            },
            "annotations": {
                "serving.kserve.io/enable-prometheus-scraping": "true",
                "prometheus.kserve.io/port": str(PORT),
                "prometheus.kserve.io/path": "/metrics",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": "/metrics",
                "cellops/model": name,
            },
        },
        "spec": {"predictor": predictor},
    }


def export_kserve(
    settings: Settings,
    name: str,
    *,
    image: str | None = None,
    canary: int | None = None,
    out: Path | None = None,
    tracking_uri: str | None = None,
    log_claim: str | None = None,
) -> Export:
    """Write the InferenceService of `name` (default deploy/kserve/NAME[-canary].yaml)."""
    import yaml

    from ..registry.store import check_model_name

    check_model_name(name)
    if canary is not None and not 0 < canary < 100:
        raise ExportError(f"--canary {canary} is not between 1 and 99: e.g. --canary 10")
    uri = tracking_uri or (None if _local(settings.tracking_uri) else settings.tracking_uri)
    if uri is None:
        raise ExportError(
            f"the project's store ({settings.tracking_uri}) is a file on this machine, which a "
            "cluster cannot reach: give the tracking server the pods use, e.g. "
            "--tracking-uri http://mlflow.mlflow.svc:5000"
        )
    version, _, temp = _version_folder(settings, name, "challenger" if canary else "champion")
    if temp is not None:
        temp.cleanup()
    folder = Path(out) if out else settings.root / "deploy" / "kserve"
    document = inference_service(
        name, image or f"cellops-{_dns_name(name)}:{__version__}", uri, canary, log_claim
    )
    path = folder / f"{_dns_name(name)}{'-canary' if canary else ''}.yaml"
    text = (
        f"# Written by `cellops export kserve {name}{f' --canary {canary}' if canary else ''}`: "
        f"serves @{'challenger' if canary else 'champion'} (v{version} then).\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    export = Export(folder, [_write(path, text)], version=version)
    if canary:
        export.notes.append(
            f"apply it over the running {_dns_name(name)} InferenceService: KServe sends {canary}% "
            "to the new revision (@challenger); promote in the registry (`cellops promote "
            f"{name}`), then apply the manifest without --canary"
        )
    return export


def _dns_name(name: str) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (text or "model")[:63].rstrip("-")


def _check_folder(folder: Path, ours: tuple[str, ...]) -> None:
    if folder.is_file():
        raise ExportError(f"{folder} is a file: give a folder with --out")
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name not in ours)
        if others:
            raise ExportError(
                f"{folder} holds other files ({', '.join(others[:5])}): give an empty or new "
                "folder with --out"
            )


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
    return path
