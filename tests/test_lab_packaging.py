"""One wheel holds the lab extension: built from this tree (hatch-jupyter-builder runs `jlpm`),
it carries the prebuilt assets and the config that enables the server extension as shared
data, and it works where no Node exists: installed into a fresh venv whose PATH has no `node`,
`jupyter labextension list` and `jupyter server extension list` show both enabled.

The fresh venv borrows the dependencies (jupyterlab, mlflow, ...) from the project's venv
through a `.pth` line, so nothing is downloaded; its own prefix holds only the wheel's files,
so what the listings find under `share/` and `etc/` can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

LAB = "share/jupyter/labextensions/cellops-lab"
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/cellops_lab.json"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    (found,) = out.glob("cellops-*.whl")
    return found


def test_the_wheel_holds_the_prebuilt_extension_and_the_server_config(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        data = next(n.split(".data/data/")[0] + ".data/data/" for n in names if ".data/data/" in n)
        package = json.loads(archive.read(f"{data}{LAB}/package.json"))
        config = json.loads(archive.read(f"{data}{SERVER_CONFIG}"))
        schema = json.loads(archive.read(f"{data}{LAB}/schemas/cellops-lab/plugin.json"))
    assert package["name"] == "cellops-lab"
    # the bundle JupyterLab loads is in the wheel, under the name the metadata gives
    entry = package["jupyterlab"]["_build"]["load"]
    assert f"{data}{LAB}/{entry}" in names
    assert f"{data}{LAB}/static/style.js" in names
    assert f"{data}{LAB}/install.json" in names
    assert config == {"ServerApp": {"jpserver_extensions": {"cellops_lab": True}}}
    assert {"pollInterval", "mlflowUiUrl"} <= set(schema["properties"])
    assert "cellops_lab/__init__.py" in names and "cellops/__init__.py" in names
    # built output only: no sources, no node_modules
    assert not [n for n in names if "node_modules" in n or n.endswith(".ts")]


def test_the_wheel_works_in_a_fresh_venv_without_node(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(
        subprocess.run([str(python), "-c", where], check=True, capture_output=True,
                       text=True).stdout.strip()
    )  # fmt: skip
    # the dependencies, from the project's venv (after the fresh venv's own packages)
    (site / "borrowed.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n"
    )
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)  # fmt: skip
    env = {
        "PATH": str(venv / "bin"),  # no /usr/bin: no node, no jlpm
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    assert shutil.which("node", path=env["PATH"]) is None

    def listing(code: str) -> str:
        done = subprocess.run([str(python), "-c", code], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)

    # what `jupyter labextension list` and `jupyter server extension list` run
    labs = listing("import sys; sys.argv = ['jupyter-labextension', 'list']\n"
                   "from jupyterlab.labextensions import main; main()")  # fmt: skip
    assert re.search(r"cellops-lab v[\d.]+ enabled\s+OK \(python, cellops\)", labs), labs
    assert str(venv / "share" / "jupyter" / "labextensions") in labs, labs
    servers = listing(
        "import sys; sys.argv = ['jupyter-server-extension', 'list']\n"
        "from jupyter_server.extension.serverextension import main; main()"
    )
    assert re.search(r"cellops_lab enabled", servers), servers
    assert re.search(r"cellops_lab\s+OK", servers), servers
    # and the import comes from the wheel, not from the work tree
    where = listing("import cellops_lab; print(cellops_lab.__file__)")
    assert str(venv) in where and str(REPO) not in where, where
    assert os.path.isfile(venv / SERVER_CONFIG)
