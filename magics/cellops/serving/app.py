"""The model server's ASGI app (Starlette): the endpoints, each a few lines over the core.

    POST /invocations, /predict   rows in MLflow's request formats -> predictions
    POST /feedback                labels of served predictions -> the feedback log
    GET  /health (/ping)          alive
    GET  /ready                   a version loaded and warmed; whether the store answers
    GET  /version                 what is served
    GET  /metrics                 Prometheus text format, every worker's

An answer: {"predictions": [...], "model", "version", "variant", "request_id"} and, for a
classifier asked for them (`?probabilities=true`, or "params": {"probabilities": true}),
"probabilities" (one list per row, in the order of "classes"). A refused request: a 4xx whose
JSON body has MLflow's keys ("error_code", "message") and names the column or the limit.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._version import __version__
from ..config import Settings, load_settings
from ..errors import CellopsUsageError, FeedbackError, ServeRequestError
from . import metrics as metrics_module
from .batching import MicroBatcher
from .log import Prediction, PredictionLog
from .model import ServedModel, load
from .reload import Reloader, Serving
from .schema import parse_body
from .source import AliasReader, VersionRef

logger = logging.getLogger("cellops.serving")
APP_ENV = "CELLOPS_SERVE_APP"  # how `server` tells each worker what to serve (JSON)
ERROR_CODES = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 413: "REQUEST_TOO_LARGE",
               415: "UNSUPPORTED_MEDIA_TYPE", 500: "INTERNAL_ERROR"}  # fmt: skip
TRUE = ("1", "true", "yes")


@dataclass
class Context:
    """Everything the handlers reach: one per worker."""

    settings: Settings
    serving: Serving
    log: PredictionLog
    metrics: metrics_module.Metrics
    batcher: MicroBatcher
    reloader: Reloader | None = None
    feedback: Any = None  # feedback.FeedbackLog, made on the first POST /feedback
    rollout: Any = None  # router.Router: canary and shadow of @challenger (serving/rollout.py)
    started: float = 0.0


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers, media_type="application/json")


def _error(exc: ServeRequestError, current: Any = None) -> Response:
    document = {"error_code": ERROR_CODES.get(exc.status, "BAD_REQUEST"), "message": str(exc)}
    document.update(exc.details)
    if current is not None:
        document.update(model=current.model.name, version=current.model.version)
    return _json(document, exc.status)


def request_id(ms: int) -> str:
    """Time-ordered: the first 11 hex digits are the arrival in ms, so the id says its date."""
    return f"{ms:011x}{uuid.uuid4().hex[:13]}"


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(int(length), limit)
    if length is not None:
        body = await request.body()
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(size, limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(size: int, limit: int) -> ServeRequestError:
    return ServeRequestError(
        f"the body is {size} bytes, over the limit of {limit} bytes (max_body_bytes in "
        "[tool.cellops.serve]); send fewer rows per request",
        status=413,
        limit=limit,
    )


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    ms = time.time_ns() // 1_000_000
    context: Context = request.app.state.context
    current = context.serving.current
    try:
        body = await _body(request, context.settings.serve.max_body_bytes)
        content_type = request.headers.get("content-type", "application/json")
        batch, params = parse_body(body, content_type, current.model.schema)
    except ServeRequestError as exc:
        context.metrics.observe(current.key, exc.status, time.perf_counter() - started)
        return _error(exc, current)
    routed = context.rollout.route(request.headers, batch, current) if context.rollout else None
    try:
        if routed is None:
            predictions, proba = await context.batcher.predict(current.model, batch)
        else:  # a rollout: the canary may answer (the champion when it raises)
            current, predictions, proba = await routed.predict(context.batcher, batch)
    except Exception as exc:
        if routed is not None:
            routed.failed()
        refused = ServeRequestError(
            f"the model could not predict these rows ({type(exc).__name__}: {exc}); check them "
            "against GET /version's signature",
        )
        context.metrics.observe(current.key, 400, time.perf_counter() - started)
        return _error(refused, current)
    rid = request_id(ms)
    model = current.model
    answer: dict[str, Any] = {
        "predictions": predictions.tolist(),
        "model": model.name,
        "version": model.version,
        "variant": current.served.variant,
        "request_id": rid,
    }
    wanted = request.query_params.get("probabilities", "").lower() in TRUE
    if proba is not None and (wanted or params.get("probabilities") is True):
        answer["probabilities"] = proba
        answer["classes"] = model.classes
    response = _json(answer, headers={"x-request-id": rid})
    latency = time.perf_counter() - started
    context.log.append(
        current.served, Prediction(rid, ms, latency * 1000, batch, predictions, proba)
    )
    context.metrics.observe(current.key, 200, latency, predictions)
    if routed is not None:
        routed.answered(current, rid, ms, latency * 1000, batch, predictions)
    return response


async def health(request: Request) -> Response:  # noqa: ARG001 - Starlette's endpoint signature
    return _json({"status": "alive"})


async def ready(request: Request) -> Response:
    context: Context = request.app.state.context
    serving = context.serving
    current = serving.current
    if current is None:
        return _json({"ready": False, "reason": "loading the model"}, 503)
    store = {"uri": serving.reader.uri, "reachable": serving.store_error is None}
    if serving.store_error:
        store["error"] = serving.store_error
    document = {
        "ready": True,
        "model": current.model.name,
        "version": current.model.version,
        "alias": current.model.ref.alias,
        "store": store,
        "last_poll": serving.checked,
    }
    if serving.reload_error:
        document["reload_error"] = serving.reload_error
    log_errors = context.log.writer.errors
    if log_errors:
        document["prediction_log_error"] = log_errors[-1]
    return _json(document)


async def version(request: Request) -> Response:
    context: Context = request.app.state.context
    current = context.serving.current
    model = current.model
    schema = model.schema
    return _json({
        "model": model.name,
        "version": model.version,
        "alias": model.ref.alias,
        "variant": current.served.variant,
        "flavor": model.flavor,
        "served_since": current.since,
        "signature": schema.describe() if schema is not None else None,
        "columns": [c.name for c in schema.columns] if schema is not None else None,
        "classes": model.classes,
        "cellops": __version__,
        "pid": os.getpid(),
    })  # fmt: skip


async def metrics(request: Request) -> Response:  # noqa: ARG001 - Starlette's endpoint signature
    return Response(metrics_module.render(), media_type=metrics_module.CONTENT_TYPE)


async def feedback(request: Request) -> Response:
    from . import feedback as feedback_module

    context: Context = request.app.state.context
    current = context.serving.current
    try:
        body = await _body(request, context.settings.serve.max_body_bytes)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ServeRequestError(
                f'the body is not JSON ({exc}); send {{"request_id": "...", "label": ...}}'
            ) from None
        if context.feedback is None:
            context.feedback = feedback_module.FeedbackLog(context.settings, current.model.name)
            context.feedback.start()
        accepted = await feedback_module.accept(document, context)
    except ServeRequestError as exc:
        return _error(exc)
    except FeedbackError as exc:
        status = 404 if getattr(exc, "unknown", None) else 400
        return _error(ServeRequestError(str(exc), status, **getattr(exc, "details", {})))
    return _json({"accepted": accepted, "model": current.model.name})


# -- making the app -------------------------------------------------------------------------------


def build_context(settings: Settings, name: str, alias: str, model: ServedModel | None) -> Context:
    reader = AliasReader(settings, name, alias)
    recorder = metrics_module.Metrics()
    log = PredictionLog(settings, name, written=lambda *counts: recorder.logged(name, *counts))
    serving = Serving(reader, variant=alias)  # "champion"; a rollout's are canary, shadow

    def swapped(old: Any, new: Any) -> None:
        if old is not None:
            recorder.served(old.model, old.served.variant, on=False)
        recorder.served(new.model, new.served.variant)

    serving.on_swap = swapped
    context = Context(settings, serving, log, recorder, MicroBatcher())
    from .router import Router

    context.rollout = Router(settings, name, log, recorder)
    if model is not None:
        serving.swap(model)
    return context


def create_app(context: Context) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ARG001 - Starlette's lifespan signature
        serving = context.serving
        if serving.current is None:  # a worker of several: it loads its own copy
            ref = serving.reader.resolve()
            serving.swap(load(ref, context.settings.tracking_uri))
        context.log.start()
        loader = _loader(context.settings)
        context.reloader = Reloader(serving, context.settings.serve.poll_seconds, loader)
        context.reloader.start()
        context.rollout.start()
        context.started = time.time()
        try:
            yield
        finally:
            context.rollout.stop()
            context.reloader.stop()
            context.log.close()
            if context.feedback is not None:
                context.feedback.close()
            metrics_module.worker_exited()

    routes = [
        Route("/invocations", predict, methods=["POST"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ping", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.context = context
    return app


def _loader(settings: Settings) -> Any:
    def load_ref(ref: VersionRef) -> ServedModel:
        return load(ref, settings.tracking_uri)

    return load_ref


def app_from_env() -> Starlette:
    """The app of one worker of `cellops serve --workers N` (uvicorn's factory)."""
    options = json.loads(os.environ[APP_ENV])
    try:
        settings = load_settings(options["root"])
    except CellopsUsageError as exc:  # checked by the parent already; say it plainly anyway
        raise SystemExit(str(exc)) from None
    return create_app(build_context(settings, options["name"], options["alias"], None))
