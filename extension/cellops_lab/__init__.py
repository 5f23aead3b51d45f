"""cellops in JupyterLab: the server extension (REST API under `/cellops/api/`) and the lab
extension's assets (`labextension/`, built from `extension/src/`)."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import CellopsLabApp

    return [{"module": "cellops_lab", "app": CellopsLabApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "cellops-lab"}]
