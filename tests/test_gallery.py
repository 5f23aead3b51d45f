"""Notebooks somebody else wrote, adopted with `%%step` and nothing else: is the cache right?

Each notebook under `tests/fixtures/gallery/` is a public example (see its first cell). For each,
in a fresh cellops project and always in a fresh kernel:

1. the plain notebook (no `%load_ext cellops`, no `%%step` lines) runs: the reference;
2. cellops run 1: every step runs, and every cell shows what it showed in the plain run;
3. cellops run 2: every step is restored from the cache (its output begins with
   "cached: restored ... from run <id>" and its state file says "cached"), and every cell still
   shows what it showed in the plain run: printed text, warnings, values and figures;
4. after each edit of an early cell: exactly the steps whose results depend on it run again,
   the others are restored, and every cell shows what the plain edited notebook shows.

All problems of a notebook are collected and reported together, each naming the run, the cell
and what differs (a diff against the plain run). See `tests/gallery.py` for how runs are compared.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import gallery
from .gallery import Edit, Example


def editing(*changes: tuple[str, str], reruns: set[str]) -> Edit:
    """Replace each (old, new); `reruns`: the steps whose results depend on it."""
    return Edit(tuple(changes), frozenset(reruns))


EXAMPLES = [
    Example(
        "supervised_learning",
        (  # the global RNG, seeded in a plain cell and drawn from inside a step
            editing(
                ("randomly\nnp.random.seed(0)", "randomly\nnp.random.seed(1)"),
                reruns={"split", "knn", "knn_predict", "logistic", "svc"},
            ),
        ),
    ),
    Example(
        "compose_pipeline",
        (  # `pipe` is bound again by later steps: only the readers of this first one depend on it
            editing(
                (
                    "estimators = [('reduce_dim', PCA()), ('clf', SVC())]",
                    "estimators = [('reduce_dim', PCA(n_components=2)), ('clf', SVC())]",
                ),
                reruns={"build", "slice_first", "first_step", "by_name", "named_steps"},
            ),
        ),
    ),
    Example(
        "model_selection",
        (
            editing(
                ("svc = svm.SVC(C=1, kernel='linear')", "svc = svm.SVC(C=1, kernel='rbf')"),
                reruns={"svc", "folds", "kfold_scores", "cv_score", "cv_precision", "grid"}
                | {"best_score", "best_C", "test_score"},
            ),
        ),
    ),
    Example(
        "pandas_cookbook",
        (
            editing(  # a function of a plain cell, called by the one the step calls; and the file
                # a plain cell writes and a step reads (with no --files-in)
                ("    return x * (1 + y)", "    return x * (2 + y)"),
                ("np.random.randint(0, 5, (10, 5))", "np.random.randint(0, 9, (10, 5))"),
                reruns={"expanding", "read_csv"},
            ),
        ),
    ),
    Example(
        "python_random",
        (  # a class defined in the notebook
            editing(
                ("        exponent = -53", "        exponent = -54"),
                reruns={"full_random_class", "full_random", "full_expovariate"},
            ),
        ),
    ),
]


BARE_STEP_LINE = re.compile(r"%%step [A-Za-z_][A-Za-z0-9_.-]*\n")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_adopted_notebook_adds_only_load_ext_and_step_lines(example: Example):
    """The fixtures stay somebody else's code: one `%load_ext cellops` cell, bare `%%step NAME`
    first lines (no flags to help the engine), and no other mention of cellops."""
    cells = gallery.code_cells(gallery.load(example))
    assert cells[0].source == gallery.LOAD_EXT_CELL
    for cell in cells[1:]:
        body = (
            BARE_STEP_LINE.sub("", cell.source, count=1) if gallery.step_name(cell) else cell.source
        )
        assert "cellops" not in body, cell.source
        assert not any(line.startswith("%") for line in body.splitlines()), cell.source
    assert len(gallery.steps(gallery.load(example))) >= 2


@pytest.fixture(scope="module")
def plain_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """`plain(example, edits)`: the reference run of the plain notebook with its first `edits`
    edits applied. Those of every selected test are queued at once and run one after another
    on a background thread, while the tests run cellops (whose kernels mostly wait for MLflow
    to load)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plain-run")
    selected = [
        item.callspec.params["example"]
        for item in request.session.items
        if "plain_runs" in getattr(item, "fixturenames", ()) and hasattr(item, "callspec")
    ]

    def reference(example: Example, edits: int) -> gallery.Execution:
        where = tmp_path_factory.mktemp(f"plain-{example.name}-{edits}")
        run = gallery.run_plain(example, edits, where)
        labels = gallery.labels(gallery.load(example, edits))
        problems = gallery.plain_problems(run, labels)
        assert not problems, f"{example.name} (the reference!): " + "\n".join(problems)
        return run

    runs = {
        (example.name, edits): pool.submit(reference, example, edits)
        for example in selected
        for edits in range(len(example.edits) + 1)
    }
    yield lambda example, edits=0: runs[example.name, edits].result()
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the schema made once, copied
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_adopted_notebook_runs_and_restores_as_it_ran_plainly(
    example: Example, project: Path, store: str, plain_runs
):
    notebook = gallery.add_notebook(project, example)
    steps = set(gallery.steps(gallery.load(example)))
    report = gallery.Report(notebook.name)
    phases = [("cellops run 1, new project", 0, steps), ("cellops run 2, new kernel", 0, set())]
    for i, edit in enumerate(example.edits, 1):
        assert edit.reruns <= steps, f"edit {edit} names unknown steps {edit.reruns - steps}"
        phases.append((f"after edit {i}, {edit}", i, set(edit.reruns)))

    for phase, edits, fresh in phases:
        if edits:  # each edit phase applies its edit on top of the previous ones
            gallery.edit_notebook(notebook, example.edits[edits - 1])
        run = gallery.run_cellops(project, notebook)
        expected = plain_runs(example, edits)
        states = gallery.step_states(project, notebook)
        adopted = gallery.load(example, edits)
        if not report.check_run(phase, adopted, run, expected, states, fresh):
            break  # the run stopped (hung, or the kernel died): the next runs mean nothing

    assert not report.problems, report.text()
