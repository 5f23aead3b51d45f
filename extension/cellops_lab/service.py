"""The one service the handlers reach: the cellops core, called off tornado's event loop.

Every method is a coroutine that runs its work (files, MLflow) on the service's thread pool
(`run_in_executor`), so a slow or stuck store holds a worker thread, never the loop that
answers JupyterLab. Notebook paths are taken relative to the server's root and refused when
they lead outside it. Failures come out as `LabError(status, message, **extra)`: a user's
mistake 400, an unknown model, job or notebook 404, a refused promotion 409, an unreachable
or damaged store 503 (with its URI).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tornado.ioloop import IOLoop

from . import views
from .jobs import JobBook, LabJob, job_from_run

T = TypeVar("T")
RECENT = 20  # runs and jobs listed
STORE_MODULES = ("mlflow", "requests", "urllib3", "sqlalchemy", "sqlite3")
log = logging.getLogger("cellops_lab")


class LabError(Exception):
    """An answer other than 200: its HTTP status, a message a person can act on, extra fields."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

    def body(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, **self.extra}


class LabService:
    def __init__(self, root_dir: str | Path, max_workers: int = 4):
        self.root = Path(root_dir).expanduser().resolve()
        self.executor = ThreadPoolExecutor(max_workers, thread_name_prefix="cellops-lab")
        self.jobs = JobBook()
        self._stores: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        call = functools.partial(_answer_errors, work, *args)
        return await IOLoop.current().run_in_executor(self.executor, call)

    # -- the routes' work ---------------------------------------------------------------------

    async def steps(self, path: str | None, live: list[dict[str, Any]] | None = None) -> dict:
        return await self._run(self._steps, path, live)

    async def runs(self, path: str | None) -> dict:
        return await self._run(self._runs, path)

    async def models(self, path: str | None) -> dict:
        return await self._run(self._models, path)

    # `path` (optional) names a notebook whose project's registry to use (default: the
    # project holding the server's root)

    async def model(self, name: str, path: str | None = None) -> dict:
        return await self._run(self._model, name, path)

    async def promote(self, name: str, version: str | None, path: str | None = None) -> dict:
        return await self._run(self._promote, name, version, path)

    async def rollback(self, name: str, reason: str | None = None, path: str | None = None) -> dict:
        return await self._run(self._rollback, name, reason, path)

    async def drift(self, name: str, path: str | None = None) -> dict:
        return await self._run(self._drift, name, path)

    async def parameters(self, path: str | None) -> dict:
        return await self._run(self._parameters, path)

    async def list_jobs(self, path: str | None) -> dict:
        return await self._run(self._list_jobs, path)

    async def start_job(self, path: str | None, parameters: Any) -> dict:
        return await self._run(self._start_job, path, parameters)

    async def job(self, job_id: str) -> dict:
        return await self._run(self._job, job_id)

    # -- notebooks and projects ---------------------------------------------------------------

    def notebook(self, path: str | None) -> Path:
        """The notebook at `path` (relative to the server's root), or a LabError."""
        if not path or not isinstance(path, str):
            raise LabError(400, "give the notebook's path, relative to the server's root: ?path=NB")
        if "\0" in path:
            raise LabError(400, f"{path!r} is not a path")
        found = (self.root / path).resolve()
        if not found.is_relative_to(self.root):
            raise LabError(
                403, f"{path} is outside the server's root {self.root}; open a notebook under it"
            )
        if found.suffix != ".ipynb":
            raise LabError(400, f"{path} is not a notebook (.ipynb file)")
        if not found.is_file():
            raise LabError(404, f"there is no notebook {path} under the server's root")
        return found

    def _settings(self, start: Path | None = None) -> Any:
        from cellops.config import load_settings

        return load_settings(start.parent if start is not None else self.root)

    def _label(self, settings: Any, notebook: Path) -> str:
        from cellops._paths import project_label

        return project_label(notebook, settings.root)

    def _store(self, settings: Any) -> Any:
        """The project's registry store, kept (its client connects on first use, and again
        after a failure: a store that comes back is used again)."""
        from cellops.registry.store import RegistryStore

        key = (settings.tracking_uri, str(settings.root))
        with self._lock:
            store = self._stores.get(key)
            if store is None or store.settings != settings:
                store = self._stores[key] = RegistryStore(settings)
        return store

    def _links(self, settings: Any) -> Any:
        from cellops.store.links import UiLinks

        return UiLinks(settings)

    @contextlib.contextmanager
    def _store_calls(self, settings: Any) -> Iterator[None]:
        """An error of MLflow or its transport in the block is the store's: a named error."""
        from cellops.errors import CellopsError
        from cellops.store.client import store_error

        try:
            yield
        except CellopsError:
            raise
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in STORE_MODULES or isinstance(
                exc, ConnectionError
            ):
                with self._lock:  # connect again next time
                    self._stores.pop((settings.tracking_uri, str(settings.root)), None)
                raise store_error(settings.tracking_uri, exc) from exc
            raise

    # -- steps (no MLflow: the local step state) ----------------------------------------------

    def _steps(self, path: str | None, live: list[dict[str, Any]] | None) -> dict:
        import json

        from cellops.steps.panel import merge_live_cells, notebook_steps

        notebook = self.notebook(path)
        settings = self._settings(notebook)
        try:
            saved = json.loads(notebook.read_text()).get("cells", [])
        except (OSError, ValueError, AttributeError) as exc:
            if live is None:
                raise LabError(400, f"{path} is not a readable notebook: {exc}") from None
            saved = []  # being saved: the live cells say it all
        cells = saved if live is None else merge_live_cells(saved, _checked_cells(live))
        found = notebook_steps(settings, self._label(settings, notebook), cells)
        links = self._links(settings)
        return {
            "notebook": path,
            "loaded": found.loaded,
            "hint": found.hint,
            "store": settings.tracking_uri,
            "ui_url": links.base,
            "steps": [views.step_row(row, links) for row in found.steps],
        }

    # -- runs and the registry ------------------------------------------------------------------

    def _has_store(self, settings: Any) -> bool:
        """False for a project whose own SQLite store was never made: nothing recorded yet (a
        panel looking must not create it)."""
        from cellops.store.client import local_store_path

        uri = settings.tracking_uri
        return not uri.startswith("sqlite:///") or Path(local_store_path(uri) or "").exists()

    def _runs(self, path: str | None) -> dict:
        from cellops.store.notebook_info import NotebookInfo
        from cellops.store.session import experiment_name_for

        notebook = self.notebook(path)
        settings = self._settings(notebook)
        if not self._has_store(settings):
            return {"runs": []}
        name = experiment_name_for(settings, NotebookInfo(notebook, "jupyter"))

        def read(client: Any) -> list[Any]:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                return []
            return client.search_runs(
                [experiment.experiment_id], "tags.`cellops.kind` != 'step'",
                order_by=["attributes.start_time DESC"], max_results=RECENT,
            )  # fmt: skip

        with self._store_calls(settings):
            found = self._store(settings).call(read)
        links = self._links(settings)
        return {"runs": [views.run(run, links) for run in found]}

    def _models(self, path: str | None) -> dict:
        from cellops.registry.catalog import list_models, model_info

        notebook = self.notebook(path) if path else None
        settings = self._settings(notebook)
        if not self._has_store(settings):
            return {"models": []}
        store, links = self._store(settings), self._links(settings)
        with self._store_calls(settings):
            if notebook is None:
                names = [m.name for m in list_models(store)]
            else:
                label = self._label(settings, notebook)
                names = store.call(lambda client: _registered_by(client, label))
            infos = [model_info(store, n) for n in names]
        return {
            "models": [
                views.model(info, links, _rollout(settings, store, info.name)) for info in infos
            ]
        }

    def _require_model(self, settings: Any, name: str) -> Any:
        """The project's store, once model `name` is known to be in it (else a 404)."""
        from cellops.registry.store import check_model_name, is_missing

        try:
            check_model_name(name)
        except Exception as exc:
            raise LabError(400, str(exc)) from None
        store = self._store(settings)

        def read(client: Any) -> list[str] | None:
            try:
                client.get_registered_model(name)
                return None
            except Exception as exc:
                if not is_missing(exc):
                    raise
            return sorted(m.name for m in client.search_registered_models(max_results=1000))

        with self._store_calls(settings):
            names = store.call(read) if self._has_store(settings) else []
        if names is not None:
            there = ", ".join(names) if names else "none yet"
            raise LabError(
                404, f"no model '{name}' in {settings.tracking_uri}; models there: {there}",
                model=name, models=names,
            )  # fmt: skip
        return store

    def _project(self, path: str | None) -> Any:
        return self._settings(self.notebook(path) if path else None)

    def _model(self, name: str, path: str | None) -> dict:
        from cellops.registry.catalog import model_info

        settings = self._project(path)
        store = self._require_model(settings, name)
        with self._store_calls(settings):
            info = model_info(store, name)
        return views.model(info, self._links(settings), _rollout(settings, store, name))

    def _promote(self, name: str, version: str | None, path: str | None) -> dict:
        from cellops.registry.promote import CONFLICT, REFUSED, promote

        settings = self._project(path)
        store = self._require_model(settings, name)
        with self._store_calls(settings):
            outcome = promote(name, version, store=store)
        if outcome.decision == REFUSED:
            raise LabError(
                409, outcome.headline(), decision=REFUSED,
                conditions=views.gate_conditions(outcome.gate),
            )  # fmt: skip
        if outcome.decision == CONFLICT:
            raise LabError(409, outcome.headline(), decision=CONFLICT, conditions=[])
        return views.promotion(outcome)

    def _rollback(self, name: str, reason: str | None, path: str | None) -> dict:
        from cellops.registry.promote import rollback

        settings = self._project(path)
        store = self._require_model(settings, name)
        with self._store_calls(settings):
            outcome = rollback(name, reason=reason, store=store)
        return views.promotion(outcome)

    def _drift(self, name: str, path: str | None) -> dict:
        from cellops.monitoring.history import list_checks

        settings = self._project(path)
        store = self._require_model(settings, name)
        with self._store_calls(settings):
            checks = list_checks(store, name)
        links = self._links(settings)
        return {"checks": [views.check(c, links) for c in reversed(checks)]}

    # -- parameters and jobs --------------------------------------------------------------------

    def _parameters(self, path: str | None) -> dict:
        from cellops.jobs.params import inspect_parameters

        spec = inspect_parameters(self.notebook(path))
        return {
            "parameters": [views.parameter(p) for p in spec.parameters.values()],
            "has_parameters_cell": spec.has_parameters_cell,
        }

    def _start_job(self, path: str | None, parameters: Any) -> dict:
        from cellops.jobs.run import JobRequest, new_job_id, prepare

        notebook = self.notebook(path)
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise LabError(400, 'give the parameters as an object: {"NAME": "VALUE", ...}')
        prepare(JobRequest(notebook, dict(parameters)))  # the CLI's checks, before any kernel
        settings = self._settings(notebook)
        job_id = new_job_id(notebook)
        job = LabJob(
            job_id, self._label(settings, notebook), notebook, dict(parameters),
            settings.root / "reports" / "runs" / job_id,
        )  # fmt: skip
        self.jobs.start(job, settings.root)
        return job.as_json(self._links(settings))

    def _list_jobs(self, path: str | None) -> dict:
        from cellops.store.notebook_info import NotebookInfo
        from cellops.store.session import experiment_name_for

        notebook = self.notebook(path) if path else None
        settings = self._settings(notebook)
        label = self._label(settings, notebook) if notebook is not None else None
        experiment = (
            experiment_name_for(settings, NotebookInfo(notebook, "papermill")) if notebook else None
        )
        links = self._links(settings)
        mine = [job.as_json(links) for job in self.jobs.recent(label)]
        recorded: list[dict[str, Any]] = []
        if self._has_store(settings):
            with self._store_calls(settings):
                runs = self._store(settings).call(lambda client: _job_runs(client, experiment))
            recorded = [job_from_run(run, links) for run in runs]
        known = {job["id"] for job in mine}
        found = mine + [job for job in recorded if job["id"] not in known]
        found.sort(key=lambda job: job["started"] or "", reverse=True)
        return {"jobs": found[:RECENT]}

    def _job(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        settings = self._settings()
        if job is not None:
            return job.as_json(self._links(settings))
        runs: list[Any] = []
        if self._has_store(settings):
            with self._store_calls(settings):
                runs = self._store(settings).call(lambda c: _job_runs(c, None, job_id))
        if not runs:
            raise LabError(404, f"no job '{job_id}' in {settings.tracking_uri}", job=job_id)
        return job_from_run(runs[0], self._links(settings))


# -- helpers ------------------------------------------------------------------------------------


def _answer_errors(work: Callable[..., T], *args: Any) -> T:
    """Run `work` (on a worker thread), turning cellops' named errors into LabErrors."""
    from cellops.errors import (
        CellopsError,
        CellopsUsageError,
        StoreDamagedError,
        StoreFullError,
        StoreUnreachableError,
    )

    try:
        return work(*args)
    except StoreUnreachableError as exc:
        message = str(exc).replace("the tracking store", "the MLflow store", 1)
        raise LabError(503, " ".join(message.split()), uri=exc.uri) from None
    except (StoreDamagedError, StoreFullError) as exc:
        raise LabError(503, str(exc), uri=exc.path) from None
    except CellopsUsageError as exc:
        raise LabError(400, str(exc)) from None
    except CellopsError as exc:
        raise LabError(500, str(exc)) from None


def _rollout(settings: Any, store: Any, name: str) -> dict[str, Any] | None:
    """`rollout_status` of model `name`, or None when no rollout was ever started or its
    state cannot be read (the models answer never fails because of a rollout)."""
    from cellops.serving.status import rollout_status

    # on the project's SQLite store the state is one read-only query (no MLflow client)
    local = settings.tracking_uri.startswith("sqlite:///")
    try:
        status = rollout_status(name, settings, None if local else store)
    except Exception:  # a damaged tag, an unreadable stats file: the models still answer
        log.warning("cannot read the rollout of %s", name, exc_info=True)
        return None
    return status if status.get("rollout") is not None else None


def _checked_cells(cells: Any) -> list[dict[str, Any]]:
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and isinstance(c.get("source", ""), (str, list)) for c in cells
    ):
        raise LabError(
            400, 'give "cells" as a list of {"id": ..., "source": "..."}, in notebook order'
        )
    return cells


def _registered_by(client: Any, label: str) -> list[str]:
    """The models with a version registered from notebook `label`."""
    found = client.search_model_versions(f"tags.`cellops.notebook` = {_quoted(label)}")
    return sorted({mv.name for mv in found})


def _quoted(text: str) -> str:
    """`text` as a string in MLflow's search syntax."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _job_runs(client: Any, experiment: str | None, job_id: str | None = None) -> list[Any]:
    """Job runs (the latest attempt of each job) in the notebook's `experiment` (None: in
    every experiment), or of one job; newest first."""
    query = "tags.`cellops.kind` = 'job'"
    if job_id is not None:
        query += f" and tags.`cellops.job` = {_quoted(job_id)}"
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        experiments = [found.experiment_id] if found is not None else []
    else:
        experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    runs: list[Any] = []
    for start in range(0, len(experiments), 100):  # search_runs takes 100 experiments
        runs += client.search_runs(
            experiments[start : start + 100], query,
            order_by=["attributes.start_time DESC"], max_results=RECENT * 2,
        )  # fmt: skip
    latest: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True):
        latest.setdefault(run.data.tags.get("cellops.job", run.info.run_id), run)
    return list(latest.values())
