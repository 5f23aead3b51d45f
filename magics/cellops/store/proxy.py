"""A job's kernel writes to MLflow through the job process, which has MLflow loaded already.

Why: importing mlflow and opening a SQLite store costs a fresh kernel 3-4 s of CPU, on every
job. The `cellops run` process (or the Dask worker running it) has paid that once, so while the
kernel runs it serves the kernel's tracker calls over a private Unix socket: the kernel sends
`(method, args, kwargs)`, the job process calls its own `MlflowClient` and sends back the result
as plain objects (MLflow entities become attribute bags, so the kernel needs no mlflow import).
An error travels back pickled; if the kernel cannot unpickle it, it becomes `RemoteStoreError`.

The calls are synchronous, so once the kernel's tracker queue is flushed every write it made is
in the store: nothing is spooled, and a killed kernel loses only the call it was making.

The socket's folder in the temp directory is named for its owner (pid and process start time):
a `cellops run` killed with SIGKILL cannot remove it, so the next one removes the folders whose
owner is gone (`remove_stale_folders`), and never a live owner's.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from ..errors import CellopsError
from .reaper import process_alive, process_start_time

ADDRESS_VAR = "CELLOPS_STORE_PROXY"
KEY_VAR = "CELLOPS_STORE_PROXY_KEY"
URI_VAR = "CELLOPS_STORE_PROXY_URI"


class RemoteStoreError(CellopsError):
    """The job process's MLflow client raised an error the kernel could not rebuild."""


# -- the kernel's side ----------------------------------------------------------------------------


class ProxyClient:
    """Looks like an `MlflowClient`; each method call runs in the job process."""

    proxied = True

    def __init__(self, address: str, authkey: bytes):
        from multiprocessing.connection import Client

        self._connection = Client(address, family="AF_UNIX", authkey=authkey)
        self._lock = threading.Lock()

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._connection.send((method, args, kwargs))
                status, payload = self._connection.recv()
            if status == "ok":
                return payload
            raise _rebuild(payload)

        return call

    def log_batch_plain(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        return self.__getattr__("log_batch_plain")(run_id, list(metrics), list(params), list(tags))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.close()


def client_from_environment(uri: str) -> ProxyClient | None:
    """The job process's proxy, when this kernel runs in a `cellops run` job on store `uri`."""
    address, key = os.environ.get(ADDRESS_VAR), os.environ.get(KEY_VAR)
    if not address or not key or os.environ.get(URI_VAR) != uri:
        return None
    try:
        return ProxyClient(address, bytes.fromhex(key))
    except (OSError, ValueError, EOFError):  # the job process is gone: talk to the store
        return None


def _rebuild(payload: tuple[str, str, bytes | None]) -> BaseException:
    name, message, pickled = payload
    if pickled is not None:
        with contextlib.suppress(Exception):
            return pickle.loads(pickled)
    return RemoteStoreError(f"{name}: {message}")


# -- the job process's side -----------------------------------------------------------------------


@contextlib.contextmanager
def serve(client: Callable[[], Any], uri: str) -> Iterator[dict[str, str]]:
    """Serve the client that `client()` returns (on store `uri`; called when the first request
    comes, so the store can open while the kernel starts) on a private socket for the block.
    Yields the environment variables that point the kernel at it."""
    from multiprocessing.connection import Listener

    remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=_owner_prefix())  # 0700: only this user can connect
    address = os.path.join(folder, "store.sock")
    authkey = secrets.token_bytes(32)
    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    stopping = threading.Event()
    thread = threading.Thread(
        target=_accept, args=(listener, client, stopping), name="cellops-store-proxy", daemon=True
    )
    thread.start()
    try:
        yield {ADDRESS_VAR: address, KEY_VAR: authkey.hex(), URI_VAR: uri}
    finally:
        stopping.set()
        with contextlib.suppress(Exception):  # wake the accept() so the thread can end
            from multiprocessing.connection import Client

            Client(address, family="AF_UNIX", authkey=authkey).close()
        thread.join(timeout=5)
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


FOLDER_PREFIX = "cellops-store-"
_OWNED = re.compile(rf"^{FOLDER_PREFIX}(\d+)-(\d+)-")  # cellops-store-PID-START-random
LEGACY_GRACE = 60.0  # seconds: an unnamed folder without its socket yet may be just made


def _owner_prefix(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{FOLDER_PREFIX}{pid}-{process_start_time(pid) or 0}-"


def remove_stale_folders(parent: str | None = None) -> list[str]:
    """Remove this user's socket folders in `parent` (the temp directory) whose owner died;
    return their paths. Folders of older cellops versions, named without an owner, go when
    nothing listens on their socket."""
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(FOLDER_PREFIX):
            continue
        try:
            mine = (
                entry.is_dir(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_uid == os.getuid()
            )
        except OSError:
            continue
        if mine and not _owner_alive(entry.name, entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _owner_alive(name: str, path: str) -> bool:
    match = _OWNED.match(name)
    if match is None:
        return _legacy_alive(path)
    pid, started = int(match[1]), match[2]
    return process_alive(pid, None if started == "0" else started)


def _legacy_alive(path: str) -> bool:
    address = os.path.join(path, "store.sock")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(address)
        except ConnectionRefusedError:
            return False  # the socket file stays; its listener is gone
        except FileNotFoundError:
            try:
                return time.time() - os.stat(path).st_mtime < LEGACY_GRACE
            except OSError:
                return False
        except OSError:
            return True  # cannot tell: keep it
    return True


def _accept(listener: Any, client: Callable[[], Any], stopping: threading.Event) -> None:
    while not stopping.is_set():
        try:
            connection = listener.accept()
        except Exception:  # a caller without the key, or the listener closed
            if stopping.is_set():
                return
            continue
        if stopping.is_set():
            connection.close()
            return
        threading.Thread(
            target=_answer, args=(connection, client), name="cellops-store-call", daemon=True
        ).start()


def _answer(connection: Any, client: Callable[[], Any]) -> None:
    with contextlib.closing(connection):
        while True:
            try:
                method, args, kwargs = connection.recv()
            except (EOFError, OSError):
                return  # the kernel exited
            try:
                result = ("ok", plain(_call(client(), method, args, kwargs)))
            except Exception as exc:
                result = ("error", _describe(exc))
            try:
                connection.send(result)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:  # not picklable
                connection.send(("error", _describe(exc)))
            except OSError:
                return  # the kernel went away mid-call


def _call(client: Any, method: str, args: tuple, kwargs: dict) -> Any:
    from .client import log_batch, retry_when_locked

    if method == "log_batch_plain":
        return retry_when_locked(lambda: log_batch(client, *args))
    return retry_when_locked(lambda: getattr(client, method)(*args, **kwargs))


def _describe(exc: BaseException) -> tuple[str, str, bytes | None]:
    try:
        pickled: bytes | None = pickle.dumps(exc)
    except Exception:
        pickled = None
    return type(exc).__name__, str(exc), pickled


def plain(value: Any) -> Any:
    """MLflow entities as attribute bags of plain values; everything else unchanged."""
    from mlflow.entities._mlflow_object import _MlflowObject

    if isinstance(value, _MlflowObject):
        return SimpleNamespace(**{key: plain(item) for key, item in value})
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value
