"""`cellops serve`: check what is asked, bind the port, then run uvicorn (one worker or N).

Everything a user can get wrong is found before anything is served: an unknown model or alias
(the message lists the aliases there are), a store that does not answer (its URI), a port in
use. One worker loads the model here and serves it from this process; with `--workers N`
uvicorn's supervisor starts N processes that each load their own copy, sharing the socket, the
metrics folder and the prediction log folder (one file set per worker).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings, load_settings
from ..errors import PortInUseError
from . import metrics as metrics_module
from .source import AliasReader, VersionRef


@dataclass(frozen=True)
class ServeOptions:
    name: str
    alias: str = "champion"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or PortInUseError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is in use (another server listens there); pick another "
                f"with --port, e.g. --port {port + 1}"
            ) from None
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def check(options: ServeOptions, settings: Settings) -> VersionRef:
    """What the alias points at now (AliasNotFoundError, StoreUnreachableError...)."""
    return AliasReader(settings, options.name, options.alias).resolve()


def serve(
    options: ServeOptions, settings: Settings | None = None, say: Callable[[str], None] = print
) -> None:
    """Serve `models:/NAME@ALIAS` until stopped (Ctrl-C, SIGTERM)."""
    settings = settings or load_settings()
    ref = check(options, settings)
    sock = bind(options.host, options.port)
    folder = Path(tempfile.mkdtemp(prefix="cellops-metrics-"))
    metrics_module.use_folder(folder)
    try:
        if options.workers > 1:
            _run_workers(options, settings, sock, ref, say)
        else:
            _run_one(options, settings, sock, ref, say)
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def _config(app: object, options: ServeOptions, **extra: object) -> object:
    import uvicorn

    return uvicorn.Config(
        app, host=options.host, port=options.port, log_level="warning", access_log=False,
        lifespan="on", timeout_graceful_shutdown=10, **extra,
    )  # fmt: skip


def _run_one(options, settings, sock, ref, say) -> None:
    import uvicorn

    from .app import build_context, create_app
    from .model import load

    model = load(ref, settings.tracking_uri)
    _announce(options, settings, model, say)
    context = build_context(settings, options.name, options.alias, model)
    server = uvicorn.Server(_config(create_app(context), options))
    server.run(sockets=[sock])


def _run_workers(options, settings, sock, ref, say) -> None:
    from uvicorn.supervisors import Multiprocess

    from .app import APP_ENV

    os.environ[APP_ENV] = json.dumps(
        {"name": options.name, "alias": options.alias, "root": str(settings.root)}
    )
    say(
        f"serving {ref.name} v{ref.version} (@{ref.alias}) with {options.workers} workers on "
        f"{_url(options)}; each worker loads the model, /ready answers once one has"
    )
    config = _config(
        "cellops.serving.app:app_from_env", options, factory=True, workers=options.workers
    )
    Multiprocess(config, sockets=[sock]).run()


def _url(options: ServeOptions) -> str:
    host = f"[{options.host}]" if ":" in options.host else options.host
    return f"http://{host}:{options.port}"


def _announce(options: ServeOptions, settings: Settings, model, say) -> None:
    from .layout import model_folder, predictions_root

    schema = model.schema
    if schema is None:
        checked = "the model has no signature: any columns are accepted, as sent"
    else:
        checked = f"inputs checked against its signature: {schema.describe()}"
    log = model_folder(predictions_root(settings), options.name)
    say(
        f"serving {model.name} v{model.version} (@{options.alias}, {model.flavor}) on "
        f"{_url(options)}\n  {checked}\n  prediction log: {log}\n"
        f"  the alias is polled every {settings.serve.poll_seconds:g} s; Ctrl-C stops"
    )
    for note in model.notes:
        say(f"  note: {note}")


def quiet_uvicorn() -> None:
    """uvicorn's own start-up lines would repeat what `serve` says."""
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    with contextlib.suppress(Exception):
        sys.stdout.reconfigure(line_buffering=True)
