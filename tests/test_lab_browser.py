"""The lab extension in a real JupyterLab: `jupyter lab` on 127.0.0.1 with a token, looked at by
headless Chromium (Debian's /usr/bin/chromium through Python playwright), its notebook run in
the real kernel.

One scenario, in the order a person meets it: the step cells' badges go never run -> fresh ->
cached, an edit makes a cell stale with the reason; the panel shows what `cellops steps` prints;
Promote moves @champion (checked with MlflowClient) and a refused promotion shows the gate's
conditions with both sides. Opening a notebook never makes it dirty.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO
from .lab_helpers import (
    BIN,
    FOREIGN_ENV,
    badges,
    make_project,
    open_notebook,
    run_command,
    start_lab,
    trust,
    wait_kernel_idle,
    write_notebook,
)

MODEL = "lab-demo"
# the first promotion has no champion to compare with (the relative condition is skipped);
# the second must beat the champion by 0.5 accuracy, which it cannot
GATE = (
    f"\n[tool.cellops.models.{MODEL}]\n"
    'gate = ["accuracy >= 0.5", "accuracy >= champion.accuracy + 0.5"]\n'
    'holdout = "holdout.parquet"\nlabel = "target"\n'
)
CELLS = [
    "%load_ext cellops",
    "%%step load\nfrom sklearn.datasets import load_iris\n"
    "X, y = load_iris(return_X_y=True, as_frame=True)",
    "%%step train\nfrom sklearn.linear_model import LogisticRegression\nimport cellops\n"
    "model = LogisticRegression(max_iter=300).fit(X, y)\naccuracy = float(model.score(X, y))\n"
    "cellops.log_metric('accuracy', accuracy)\n"
    f"cellops.register_model(model, '{MODEL}', X.head(5), metrics={{'accuracy': accuracy}})",
]  # fmt: skip
ARTIFACTS = REPO / "reports" / "test-artifacts"
KERNEL_MS = 240_000  # a first run imports sklearn and MLflow and logs a model: generous


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path):
    from sklearn.datasets import load_iris

    root = make_project(tmp_path_factory.mktemp("lab") / "proj", empty_mlflow_db, GATE)
    load_iris(as_frame=True).frame.to_parquet(root / "holdout.parquet")  # the gate scores on it
    scratch = tmp_path_factory.mktemp("lab-scratch")
    long = ["%load_ext cellops", "%%step top\na = 1"] + [f"# filler {i}\n" * 12 for i in range(40)]
    trust(scratch, write_notebook(root / "pipeline.ipynb", CELLS),
          write_notebook(root / "plain.ipynb", ["x = 1", "print(x)"]),
          write_notebook(root / "long.ipynb", [*long, "%%step bottom\nb = a"]))  # fmt: skip
    # no "official Jupyter news?" toast over the page
    settings = scratch / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # full windowing: cells out of view are detached and re-rendered when scrolled back
    notebook_settings = scratch / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "full"})
    )
    server = start_lab(root, scratch)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:  # what the page showed when it failed
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failed.png"), full_page=True)
    context.close()


def _states(page) -> list[str | None]:
    return [b["state"] if b else None for b in badges(page)]


def _wait_states(page, expected: list[str | None], timeout: float = KERNEL_MS) -> None:
    page.wait_for_function(
        """expected => {
            const panel = window.jupyterapp.shell.currentWidget;
            if (!panel || !panel.content) { return false; }
            const states = panel.content.widgets.map(cell => {
                const badge = cell.node.querySelector('.cellops-badge');
                return badge ? badge.dataset.state : null;
            });
            return JSON.stringify(states) === JSON.stringify(expected);
        }""",
        arg=expected,
        timeout=timeout,
    )


def _is_dirty(page) -> bool:
    return page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty")


def _panel_rows(page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        ".cellops-steps [data-step]",
        """rows => rows.map(row => ({
            step: row.dataset.step,
            state: row.querySelector('.cellops-state').textContent.slice(1).trim(),
            metrics: row.querySelector('.cellops-metrics').textContent,
            run_id: (row.querySelector('[data-run-id]') || {dataset: {}}).dataset.runId || '',
        }))""",
    )


def _cli_rows(root: Path, notebook: str) -> list[dict[str, str]]:
    """`cellops steps NOTEBOOK`, its table read by the header's column positions."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    out = subprocess.run(
        [str(BIN / "cellops"), "steps", notebook], cwd=root, env=env, capture_output=True,
        text=True, check=True, timeout=120,
    ).stdout.splitlines()  # fmt: skip
    header = out[1]
    names = ["step", "state", "last duration (s)", "metrics", "run id", "why"]
    starts = [header.index(name) for name in names] + [None]
    rows = []
    for line in out[3:]:
        if not line.strip():
            break
        cells = [line[starts[i] : starts[i + 1]].strip() for i in range(len(names))]
        row = dict(zip(names, cells, strict=True))
        rows.append({"step": row["step"], "state": row["state"], "metrics": row["metrics"],
                     "run_id": row["run id"]})  # fmt: skip
    return rows


def _edit_cell(page, index: int, text: str) -> None:
    """Type at the end of a cell's code, as a person would."""
    editor = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type(text)


def _promote(page, version: str) -> None:
    row = f'.cellops-model[data-model="{MODEL}"] li[data-version="{version}"]'
    page.wait_for_selector(f"{row} .cellops-promote", timeout=60_000)
    page.click(f"{row} .cellops-promote")
    page.wait_for_selector(".jp-Dialog", timeout=10_000)
    page.click(".jp-Dialog .jp-mod-accept")


def _champion(root: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.cellops' / 'mlflow.db'}")
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def test_badges_panel_and_promotion_in_a_real_lab(lab, page):
    root = lab.root
    notebook_bytes = (root / "pipeline.ipynb").read_bytes()
    # Given the notebook opened in JupyterLab, with the cellops panel shown
    open_notebook(page, lab, "pipeline.ipynb")
    run_command(page, "cellops:show-steps")
    # Then its two step cells are marked never run, the %load_ext cell not at all
    _wait_states(page, [None, "never-run", "never-run"], timeout=30_000)
    tooltip = badges(page)[1]["tooltip"]
    assert "step 'load': never run" in tooltip and "run the cell" in tooltip
    # and marking them neither dirtied the notebook nor wrote it
    page.wait_for_timeout(1500)
    assert not _is_dirty(page)
    assert (root / "pipeline.ipynb").read_bytes() == notebook_bytes

    # When every cell runs in the kernel
    run_command(page, "notebook:run-all-cells")
    # Then both steps turn fresh, and the tooltip has the duration and the run id
    _wait_states(page, [None, "fresh", "fresh"])
    page.wait_for_function(
        "() => [...document.querySelectorAll('.cellops-badge')]"
        ".every(b => /run id: \\w+/.test(b.title))",
        timeout=30_000,
    )
    assert "last duration:" in badges(page)[2]["tooltip"]
    # and the panel lists the model the notebook registered, v1 as challenger
    page.wait_for_selector(f'.cellops-model[data-model="{MODEL}"] li[data-version="1"]',
                           timeout=60_000)  # fmt: skip

    # When the model's v1 is promoted from the panel (confirmed in the dialog)
    _promote(page, "1")
    # Then @champion points at v1 in the registry
    page.wait_for_selector(f'.cellops-model[data-model="{MODEL}"] .cellops-outcome.cellops-ok',
                           timeout=60_000)  # fmt: skip
    assert _champion(root) == "1"
    assert "v1" in page.inner_text(f'.cellops-model[data-model="{MODEL}"] .cellops-model-aliases')

    # When every cell runs again
    wait_kernel_idle(page)
    run_command(page, "notebook:run-all-cells")
    # Then both steps are restored from the cache
    _wait_states(page, [None, "cached", "cached"])
    wait_kernel_idle(page)
    # and the panel shows what `cellops steps` prints for the notebook
    page.wait_for_function(
        "() => [...document.querySelectorAll('.cellops-steps [data-step]')]"
        ".map(r => r.dataset.state).join() === 'cached,cached'",
        timeout=30_000,
    )
    page.wait_for_timeout(1500)  # the run ids of the restoring runs
    cli = _cli_rows(root, "pipeline.ipynb")
    assert [r["step"] for r in cli] == ["load", "train"]
    assert _panel_rows(page) == cli
    assert re.fullmatch(r"accuracy=0\.\d+", cli[1]["metrics"])

    # When the train cell is edited in the browser (not saved)
    _edit_cell(page, 2, "\nn_seen = len(X)")  # code, not a comment (comments do not count)
    # Then it turns stale, saying why, while load stays cached
    _wait_states(page, [None, "cached", "stale"], timeout=30_000)
    assert "why: code changed" in badges(page)[2]["tooltip"]
    assert "code changed" in page.inner_text('.cellops-steps [data-step="train"] .cellops-why')

    # When it runs (Ctrl+Enter, in place), registering v2 of the model as challenger
    page.keyboard.press("Control+Enter")
    _wait_states(page, [None, "cached", "fresh"])
    # and v2 is promoted from the panel
    page.wait_for_selector(f'.cellops-model[data-model="{MODEL}"] li[data-version="2"]',
                           timeout=60_000)  # fmt: skip
    _promote(page, "2")
    # Then the gate refuses, and the panel shows each condition with both of its sides
    refused = f'.cellops-model[data-model="{MODEL}"] .cellops-outcome.cellops-refused'
    page.wait_for_selector(refused, timeout=60_000)
    conditions = page.inner_text(refused)
    assert re.search(
        r"accuracy >= champion\.accuracy \+ 0\.5: 0\.\d+ vs 1\.\d+, failed", conditions
    )
    assert re.search(r"accuracy >= 0\.5: 0\.\d+ vs 0\.5, passed", conditions)
    assert _champion(root) == "1"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab_panel.png"), full_page=True)
    assert page.errors == []


def test_a_notebook_without_cellops_says_how_to_start(lab, page):
    # Given a notebook that never loads cellops, opened with the panel shown
    open_notebook(page, lab, "plain.ipynb")
    run_command(page, "cellops:show-steps")
    # Then the panel says how to start
    hint = page.wait_for_selector(".cellops-hint .cellops-message", timeout=30_000)
    assert "%load_ext cellops" in hint.inner_text()
    # and no cell has a badge, and the notebook stays clean
    assert badges(page) == [None, None]
    assert not _is_dirty(page)
    # and both commands are in the palette
    labels = page.evaluate(
        "() => ['cellops:run-as-job', 'cellops:show-steps']"
        ".map(id => window.jupyterapp.commands.label(id))"
    )
    assert labels == ["cellops: run notebook as job", "cellops: show steps"]
    # and the notebook's toolbar has their buttons
    toolbar = ".jp-NotebookPanel:visible .jp-NotebookPanel-toolbar"
    for name in ("cellops-run-as-job", "cellops-show-steps"):
        page.wait_for_selector(f'{toolbar} [data-jp-item-name="{name}"]', timeout=10_000)
    assert page.errors == []


def test_badges_survive_windowed_rendering(lab, page):
    # Given a long notebook in windowing mode "full" (cells are rendered as they come into
    # view), a step cell at its top and one at its end
    open_notebook(page, lab, "long.ipynb")
    last = 42
    page.wait_for_function(
        "n => window.jupyterapp.shell.currentWidget.content.widgets.length === n",
        arg=last + 1,
        timeout=60_000,
    )
    attached = (
        "i => { const c = window.jupyterapp.shell.currentWidget.content.widgets[i];"
        " return c.node.isConnected && !!c.node.querySelector('.cellops-badge'); }"
    )
    page.wait_for_function(attached, arg=1, timeout=60_000)
    for index in (last, 1, last):
        # When the notebook scrolls so the cell comes (back) into view
        page.evaluate(
            "i => window.jupyterapp.shell.currentWidget.content.scrollToItem(i, 'center')", index
        )
        # Then the cell is rendered with its badge
        page.wait_for_function(attached, arg=index, timeout=60_000)
    assert badges(page)[1]["state"] == badges(page)[last]["state"] == "never-run"
    assert not _is_dirty(page)
    assert page.errors == []
