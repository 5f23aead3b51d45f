"""The REST handlers under `<base_url>cellops/api/`: parse, call the service, write JSON.

Every method is `@tornado.web.authenticated` (a request without the token or the login cookie
gets 403); POSTs pass Jupyter's XSRF check (APIHandler: a cookie-authenticated POST needs the
`_xsrf` cookie's value in `X-XSRFToken`). Errors are `{"status", "message", ...}`.
"""

from __future__ import annotations

import json
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .service import LabError, LabService

PREFIX = "cellops/api"
NAME = r"(?P<name>[^/]+)"


class LabHandler(APIHandler):
    """The base of every route: holds the service, answers JSON, and errors as JSON."""

    def initialize(self, service: LabService) -> None:
        self.service = service

    async def answer(self, pending: Any, status: int = 200) -> None:
        try:
            payload = await pending
        except LabError as exc:
            self.set_status(exc.status)
            self.finish(json.dumps(exc.body()))
            return
        self.set_status(status)
        self.finish(json.dumps(payload))

    def body(self) -> dict[str, Any]:
        """The request's JSON object (an empty body is `{}`)."""
        if not self.request.body:
            return {}
        try:
            found = json.loads(self.request.body)
        except ValueError as exc:
            raise tornado.web.HTTPError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(found, dict):
            raise tornado.web.HTTPError(400, "the body must be a JSON object")
        return found

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's errors (403 without the token or XSRF, 400, 500) as {status, message}."""
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        elif exc is not None and status_code >= 500:
            reason = (
                f"unexpected error in cellops_lab ({type(exc).__name__}: {exc}); see the server log"
            )
        if status_code == 403 and not self.current_user:
            reason = "not authenticated: send the server's token, or log in to Jupyter first"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": reason}))


class StepsHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(self.service.steps(self.get_argument("path", None)))

    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.body()
        cells = body.get("cells")
        if cells is None:
            raise tornado.web.HTTPError(400, 'give "cells": [{"id": ..., "source": ...}, ...]')
        await self.answer(self.service.steps(body.get("path"), cells))


class RunsHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(self.service.runs(self.get_argument("path", None)))


class ModelsHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(self.service.models(self.get_argument("path", None)))


class ModelHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.answer(self.service.model(name, self.get_argument("path", None)))


class PromoteHandler(LabHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        body = self.body()
        version = body.get("version")
        version = str(version) if version not in (None, "") else None
        await self.answer(self.service.promote(name, version, body.get("path")))


class RollbackHandler(LabHandler):
    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        body = self.body()
        await self.answer(self.service.rollback(name, body.get("reason"), body.get("path")))


class DriftHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.answer(self.service.drift(name, self.get_argument("path", None)))


class ParametersHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(self.service.parameters(self.get_argument("path", None)))


class JobsHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(self.service.list_jobs(self.get_argument("path", None)))

    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.body()
        pending = self.service.start_job(body.get("path"), body.get("parameters"))
        await self.answer(pending, status=202)


class JobHandler(LabHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        await self.answer(self.service.job(job_id))


ROUTES = [
    ("steps", StepsHandler),
    ("runs", RunsHandler),
    ("models", ModelsHandler),
    (f"models/{NAME}", ModelHandler),
    (f"models/{NAME}/promote", PromoteHandler),
    (f"models/{NAME}/rollback", RollbackHandler),
    (f"models/{NAME}/drift", DriftHandler),
    ("parameters", ParametersHandler),
    ("jobs", JobsHandler),
    (r"jobs/(?P<job_id>[^/]+)", JobHandler),
]


def handlers(service: LabService) -> list[tuple[str, type, dict[str, Any]]]:
    """The routes (relative to the server's base URL, which the ExtensionApp prepends)."""
    return [
        (url_path_join("/", PREFIX, pattern), handler, {"service": service})
        for pattern, handler in ROUTES
    ]
