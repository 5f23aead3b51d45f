"""Where a batch of jobs runs. `Executor.run_all` does the bookkeeping (progress, one failing
job never stops the others); an executor implements only `_results`, yielding each job's
result as it completes. Executors are found by name, including ones other packages register
under the `cellops.executors` entry-point group.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from ..errors import CellopsUsageError
from .run import JobRequest, JobResult, run_job

Outcome = JobResult | BaseException


class Executor:
    name = "base"

    def run_all(self, requests: list[JobRequest], progress: bool = True) -> list[Outcome]:
        from tqdm.auto import tqdm

        outcomes: list[Outcome | None] = [None] * len(requests)
        with tqdm(total=len(requests), desc="sweep", unit="job", disable=not progress) as bar:
            for index, outcome in self._results(requests):
                outcomes[index] = outcome
                bar.update(1)
        return outcomes  # type: ignore[return-value]

    def _results(self, requests: list[JobRequest]) -> Iterator[tuple[int, Outcome]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started."""


def _run_safely(request: JobRequest) -> Outcome:
    try:
        return run_job(request)
    except Exception as exc:  # one point's failure must not stop the sweep
        return exc


class LocalExecutor(Executor):
    """One job after another in this process."""

    name = "local"

    def _results(self, requests: list[JobRequest]) -> Iterator[tuple[int, Outcome]]:
        for index, request in enumerate(requests):
            yield index, _run_safely(request)


class DaskExecutor(Executor):
    """Jobs on a Dask cluster: a LocalCluster of `workers` processes, or a scheduler address."""

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        from dask.distributed import Client, LocalCluster

        main = sys.modules.get("__main__")
        if main is not None and not hasattr(main, "__spec__"):
            # IPython's user module (a sweep started from a notebook) lacks it, and
            # multiprocessing's spawn, which starts the workers, reads it
            main.__spec__ = None
        if scheduler:
            self._cluster = None
            self._client = Client(scheduler)
        else:
            self._cluster = LocalCluster(
                n_workers=workers or 2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a free port: sweeps side by side never clash
                host="127.0.0.1",
            )
            self._client = Client(self._cluster)

    def _results(self, requests: list[JobRequest]) -> Iterator[tuple[int, Outcome]]:
        from dask.distributed import as_completed

        futures = {
            self._client.submit(_run_safely, request, pure=False): index
            for index, request in enumerate(requests)
        }
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as exc:  # the worker itself failed
                yield futures[future], exc

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


BUILTIN = {"local": LocalExecutor, "dask": DaskExecutor}


def get_executor(name: str, **options: Any) -> Executor:
    found = dict(BUILTIN)
    for entry in entry_points(group="cellops.executors"):
        found.setdefault(entry.name, entry.load())
    if name not in found:
        raise CellopsUsageError(f"no executor {name!r}; available: {', '.join(sorted(found))}")
    return found[name](**options)
