"""The lab extension's front-end logic (extension/src/__tests__, jest): the state -> badge
mapping, the poll's backoff, the "Run as job" form values and the panel's error messages.

Run with the project's `jlpm` (JupyterLab's yarn) in extension/, as `jlpm test` does there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

EXTENSION = REPO / "extension"
BIN = Path(sys.executable).parent


def _jlpm(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "CI": "true"}
    return subprocess.run(
        [str(BIN / "jlpm"), *args], cwd=EXTENSION, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_jest_unit_tests_pass():
    # Given the extension's dev dependencies (installed by `pip install -e .`; the lockfile
    # makes a missing node_modules the same install)
    if not (EXTENSION / "node_modules" / ".bin" / "jest").exists():
        installed = _jlpm("install", timeout=600)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    # When jest runs the front end's unit tests
    result = _jlpm("test", "--ci", timeout=600)
    output = result.stdout + result.stderr
    # Then every suite passes, and there were tests to pass
    assert result.returncode == 0, output
    counts = re.search(r"Tests:\s+(?:\d+ skipped, )?(\d+) passed, (\d+) total", output)
    assert counts, output
    assert int(counts.group(1)) == int(counts.group(2)) >= 40, output
    for suite in ("state", "schedule", "params", "errors", "display"):
        assert f"src/__tests__/{suite}.spec.ts" in output, output
