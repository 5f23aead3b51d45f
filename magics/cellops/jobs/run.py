"""One notebook run as a job: Papermill executes it; the job records it in MLflow.

The kernel's session run becomes the job run (the job's id and attempt reach the kernel as
environment variables), so its steps nest under it as usual. While the kernel works, this
process prepares the store; afterwards it adds what only it knows: the executed notebook and
its HTML copy, the reproducibility manifest, the outcome, and the metrics of the job's steps.

A failure in the user's code is final unless `retry_user_errors`; a kernel that died or a
timeout is transient and retried up to `retries` times, each attempt its own recorded run.

A notebook that names no kernel (no `kernelspec`, as `nbformat.v4.new_notebook()` and jupytext
write) runs on this environment's Python kernel, as Jupyter and nbconvert run it, and the
summary says so.
"""

from __future__ import annotations

import datetime
import os
import secrets
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._limits import param_text, tag_text
from .._process import environment
from ..config import Settings, load_settings
from ..errors import KernelNotFoundError
from ..steps.notebook import parse_step_line
from ..store.client import connect_checked
from ..store.notebook_info import NotebookInfo
from ..store.proxy import serve
from ..store.reaper import owner_tags, reap_dead_runs
from ..store.session import ensure_experiment, experiment_name_for
from .manifest import MANIFEST_ARTIFACT, build_manifest
from .params import NotebookParameters, check_parameters, inspect_parameters

REPRODUCTION_VAR = "CELLOPS_REPRODUCTION_OF"
"""Set by `cellops reproduce` for the job's kernel to the run it reproduces: the registry then
registers without aliases and runs the gate as a dry run (`registry/reproduction.py`)."""


@dataclass
class JobRequest:
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    allow_unknown: bool = False
    kernel_name: str | None = None
    cwd: Path | None = None
    job_id: str | None = None
    parent_run_id: str | None = None
    retries: int = 0
    retry_delay: float = 5.0
    retry_user_errors: bool = False
    cell_timeout: float | None = None
    progress: bool = True
    html: bool = True
    use_cache: bool = True
    reproduction_of: str | None = None  # the job run `cellops reproduce` runs again


@dataclass
class JobFailure:
    message: str
    transient: bool
    cell_index: int | None = None
    exec_count: int | None = None
    step: str | None = None
    ename: str = ""
    evalue: str = ""
    started: bool = True  # False: the notebook never ran a cell (its kernel did not start)

    def describe(self) -> str:
        if self.cell_index is None:
            return self.message
        where = f"cell {self.cell_index}"
        if self.exec_count:
            where += f" (In [{self.exec_count}])"
        if self.step:
            where += f", step '{self.step}'"
        return f"{where}: {self.ename}: {self.evalue}"


@dataclass
class Attempt:
    number: int
    run_id: str
    status: str
    output: Path
    failure: JobFailure | None = None


@dataclass
class JobResult:
    job_id: str
    notebook: Path
    parameters: dict[str, Any]
    attempts: list[Attempt]
    output_dir: Path
    html: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)  # step -> executed | cached | failed
    kernel: KernelChoice | None = None
    reproduction_of: str | None = None

    @property
    def run_id(self) -> str:
        return self.attempts[-1].run_id

    @property
    def ok(self) -> bool:
        return self.attempts[-1].status == "FINISHED"

    @property
    def failure(self) -> JobFailure | None:
        return self.attempts[-1].failure

    @property
    def skipped_steps(self) -> list[str]:
        return [name for name, state in self.steps.items() if state == "cached"]


@dataclass(frozen=True)
class KernelChoice:
    """The kernel a job runs on, and the language papermill writes the parameters cell in."""

    name: str
    language: str
    note: str = ""  # for the summary, when the notebook named no kernel


def new_job_id(notebook: Path) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{notebook.stem}-{stamp}-{secrets.token_hex(2)}"


def prepare(request: JobRequest, spec: NotebookParameters | None = None) -> dict[str, Any]:
    """Check the notebook, its parameters and the kernel before any kernel starts.

    `spec` is the notebook's inspection when the caller already has it (a sweep's points)."""
    spec = spec or inspect_parameters(request.notebook, request.kernel_name)
    checked = check_parameters(spec, request.parameters, request.allow_unknown)
    choose_kernel(spec, request.kernel_name)
    return checked


def choose_kernel(spec: NotebookParameters, requested: str | None = None) -> KernelChoice:
    """`-k`, else the notebook's kernelspec, else this environment's Python kernel (what
    Jupyter and nbconvert start for a notebook that names none); installed, or a usage error.

    Papermill also needs a language to write the parameters in: the notebook's, else the
    kernel's, else Python."""
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager, NoSuchKernel

    name = requested or spec.kernel_name or NATIVE_KERNEL_NAME
    manager = KernelSpecManager()
    try:
        kernelspec = manager.get_kernel_spec(name)
    except NoSuchKernel:
        raise KernelNotFoundError(_missing_kernel(name, requested, manager)) from None
    language = spec.language or kernelspec.language or "python"
    note = ""
    if requested is None and spec.kernel_name is None:
        note = f"no kernelspec in the notebook: ran with {name} ({_interpreter(kernelspec)})"
    return KernelChoice(name, language, note)


def _missing_kernel(name: str, requested: str | None, manager: Any) -> str:
    installed = ", ".join(sorted(manager.find_kernel_specs())) or "none"
    if requested:
        return (
            f"could not start the notebook: no kernel named {name!r} is installed; installed "
            f"kernels: {installed} (or leave out --kernel to use the notebook's own)"
        )
    return (
        f"could not start the notebook: it asks for kernel {name!r}, which is not installed "
        f"here; installed kernels: {installed}. Pass -k NAME to run it on one of them"
    )


def _interpreter(kernelspec: Any) -> str:
    """Which Python a kernelspec starts: jupyter_client runs `python` as this interpreter."""
    program = (kernelspec.argv or [""])[0]
    major, minor = sys.version_info[:2]
    ours = {"python", f"python{major}", f"python{major}.{minor}"}
    if program in ours or program == sys.executable:
        return "this environment"
    return program


def run_job(request: JobRequest, settings: Settings | None = None) -> JobResult:
    """Execute the notebook as a job, with retries; never raises for a failure in the notebook."""
    notebook = request.notebook.resolve()
    spec = inspect_parameters(request.notebook, request.kernel_name)
    parameters = prepare(request, spec)
    kernel = choose_kernel(spec, request.kernel_name)
    settings = settings or load_settings(notebook.parent)
    cwd = (request.cwd or settings.root).resolve()
    job_id = request.job_id or new_job_id(notebook)
    output_dir = settings.root / "reports" / "runs" / job_id
    output_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellops-job") as background:
        # MLflow's imports and the store's set-up overlap with the kernel's start
        store: Future[tuple[Any, str]] = background.submit(_open_store, settings, notebook)
        manifest = background.submit(
            build_manifest, notebook, settings.root, parameters, cwd, spec.defaults
        )
        exporter = background.submit(_html_exporter, notebook) if request.html else None
        attempts: list[Attempt] = []
        for number in range(1, request.retries + 2):
            output = output_dir / (
                f"{notebook.stem}.ipynb"
                if number == 1
                else f"{notebook.stem}.attempt{number}.ipynb"
            )
            failure = _execute(
                request, notebook, output, parameters, cwd, job_id, number,
                lambda: store.result()[0], settings.tracking_uri, kernel,
            )  # fmt: skip
            client, experiment_id = store.result()
            run_id = _finish_attempt(
                client, experiment_id, request, notebook, output,
                job_id, number, parameters, manifest.result(), failure, kernel,
            )  # fmt: skip
            attempts.append(
                Attempt(
                    number, run_id, "FINISHED" if failure is None else "FAILED", output, failure
                )
            )
            retryable = failure is not None and (failure.transient or request.retry_user_errors)
            if not retryable or number > request.retries:
                break
            time.sleep(request.retry_delay)
        result = JobResult(job_id, notebook, parameters, attempts, output_dir)
        result.kernel, result.reproduction_of = kernel, request.reproduction_of
        result.steps, result.metrics = _step_outcomes(client, result.run_id)
        if result.metrics:
            _log_metrics(client, result.run_id, result.metrics)
        if exporter is not None:
            result.html = _html_copy(attempts[-1].output, exporter.result())
            if result.html is not None:
                client.log_artifact(result.run_id, str(result.html), "notebook")
        reap_dead_runs(client)  # steps of a kernel that died are still RUNNING
        client.set_terminated(result.run_id, status=attempts[-1].status)
    return result


def _open_store(settings: Settings, notebook: Path) -> tuple[Any, str]:
    client = connect_checked(settings)
    reap_dead_runs(client)
    name = experiment_name_for(settings, NotebookInfo(notebook, "papermill"))
    return client, ensure_experiment(client, settings, name)


def _execute(
    request, notebook, output, parameters, cwd, job_id, number, client, uri, kernel
) -> JobFailure | None:  # fmt: skip
    """One attempt; the kernel writes to MLflow through `client()` (see `store_proxy`)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    env = {
        "CELLOPS_NOTEBOOK": str(notebook),
        "CELLOPS_JOB_ID": job_id,
        "CELLOPS_JOB_ATTEMPT": str(number),
        "CELLOPS_PARENT_RUN_ID": request.parent_run_id or "",
        "CELLOPS_CACHE": "1" if request.use_cache else "0",
        # a job started inside a reproduction is part of it: it inherits the variable
        REPRODUCTION_VAR: request.reproduction_of or os.environ.get(REPRODUCTION_VAR, ""),
    }
    engine_kwargs = {}
    if request.cell_timeout:
        engine_kwargs["execution_timeout"] = request.cell_timeout
    output.unlink(missing_ok=True)  # so a file left here cannot pass for this attempt's
    try:
        with serve(client, uri) as proxy, environment(**env, **proxy):
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                kernel_name=kernel.name,
                language=kernel.language,
                progress_bar=request.progress,
                cwd=str(cwd),
                **engine_kwargs,
            )
    except PapermillExecutionError as exc:
        step = None
        parsed = parse_step_line((exc.source or "").partition("\n")[0])
        if parsed:
            step = parsed[0]
        return JobFailure(
            f"{exc.ename}: {exc.evalue}", False, exc.cell_index, exc.exec_count, step,
            exc.ename, exc.evalue,
        )  # fmt: skip
    except Exception as exc:  # the kernel died, timed out or did not start: transient
        if not _any_cell_started(output):
            return JobFailure(_start_failure(kernel, exc), True, started=False)
        return JobFailure(f"{type(exc).__name__}: {exc}", True)
    return None


def _any_cell_started(output: Path) -> bool:
    """Whether papermill began a cell: it saves the notebook before the kernel starts and
    stamps each cell's `start_time` as it begins (at the end it marks every cell `completed`,
    started or not, so the status does not tell)."""
    import nbformat

    try:
        executed = nbformat.read(str(output), as_version=4)
    except Exception:  # not written: papermill stopped before the kernel
        return False
    return any(
        cell.get("metadata", {}).get("papermill", {}).get("start_time") for cell in executed.cells
    )


def _start_failure(kernel: KernelChoice, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"could not start the notebook (kernel {kernel.name}): {text[:1000]}"


def _find_session_run(client: Any, experiment_id: str, job_id: str, number: int) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        f"tags.`cellops.job` = '{job_id}' and tags.`cellops.attempt` = '{number}' "
        "and tags.`cellops.kind` = 'job'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _finish_attempt(
    client, experiment_id, request, notebook, output, job_id, number,
    parameters, manifest, failure, kernel,
) -> str:  # fmt: skip
    from mlflow.entities import Param, RunTag

    run_id = _find_session_run(client, experiment_id, job_id, number)
    if run_id is None:  # the notebook never loaded cellops, or its kernel died first
        tags = {"cellops.kind": "job", "cellops.job": job_id, "cellops.attempt": str(number)}
        tags |= owner_tags()
        tags["cellops.notebook"] = manifest["notebook"]
        if request.parent_run_id:
            tags["mlflow.parentRunId"] = request.parent_run_id
        run = client.create_run(experiment_id, tags=tags, run_name=f"{notebook.stem} job {job_id}")
        run_id = run.info.run_id
    existing = client.get_run(run_id).data.params
    params = [Param(k, param_text(v)) for k, v in parameters.items() if k not in existing]
    tags = [
        RunTag("cellops.job.status", "succeeded" if failure is None else "failed"),
        RunTag("cellops.job.output", str(output)),
        RunTag("cellops.job.kernel", kernel.name),
    ]
    if request.reproduction_of:
        tags.append(RunTag("cellops.reproduction_of", request.reproduction_of))
    if failure is not None:
        tags.append(RunTag("cellops.job.error", tag_text(failure.describe())))
        tags.append(RunTag("cellops.job.transient", str(failure.transient).lower()))
    client.log_batch(run_id, params=params, tags=tags)
    import json

    client.log_text(run_id, json.dumps(manifest, indent=1, default=str), MANIFEST_ARTIFACT)
    if output.exists():
        client.log_artifact(run_id, str(output), "notebook")
    client.set_terminated(run_id, status="FINISHED" if failure is None else "FAILED")
    return run_id


def _step_outcomes(client: Any, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
    """Each step's state in the job, and the job's metrics (the last step's value wins)."""
    run = client.get_run(run_id)
    steps = client.search_runs(
        [run.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`cellops.kind` = 'step'",
        order_by=["attributes.start_time ASC"],
        max_results=1000,
    )
    states, metrics = {}, {}
    for step in steps:
        states[step.data.tags.get("cellops.step", step.info.run_name)] = step.data.tags.get(
            "cellops.state", ""
        )
        metrics.update({k: v for k, v in step.data.metrics.items() if not k.startswith("cellops.")})
    return states, metrics


def _log_metrics(client: Any, run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])


def _html_exporter(notebook: Path) -> Any:
    """An HTMLExporter warmed up on the source notebook while the kernel works: nbconvert's
    imports, template compilation and lexers otherwise cost about a second after the run."""
    try:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter()
        exporter.from_filename(str(notebook))
        return exporter
    except Exception:  # _html_copy then starts afresh, as without the warm-up
        return None


def _html_copy(notebook: Path, exporter: Any = None) -> Path | None:
    """An HTML copy beside the executed notebook (nbconvert), for people without Jupyter."""
    if not notebook.exists():
        return None
    if exporter is None:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter()
    body, _ = exporter.from_filename(str(notebook))
    html = notebook.with_suffix(".html")
    tmp = html.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, html)
    return html
