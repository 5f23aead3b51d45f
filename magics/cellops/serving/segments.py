"""Hive-partitioned Parquet written in the background, never half-visible.

Requests append rows to a buffer in memory (a list append under a lock); one thread flushes it
every `log_batch_rows` rows or `log_batch_seconds`, appending each flush as a record batch to
an Arrow IPC *stream* file whose name starts with a dot (readers skip it). An IPC stream is
readable up to its last complete batch, so a killed server loses only what was still in memory.
At `log_rotate_bytes` or `log_rotate_seconds` (or at a new date, a new model version, or
shutdown) the stream is rewritten as a Parquet file under a temporary name and renamed into
place: a reader sees a whole file or none. The streams a dead process left behind are turned
into Parquet files the same way when the next server starts (`recover`).

Layout: <folder>/model=<NAME>/date=<YYYY-MM-DD>/part-<utc>-<pid>-<pid start>-<seq>-<host>.parquet
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ServeSettings

logger = logging.getLogger("cellops.serving")
STREAM_SUFFIX = ".arrows"


def utc_day(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


def _process_start(pid: int) -> str:
    from ..store.reaper import process_start_time

    return process_start_time(pid) or "0"


_counter = itertools.count()


def _stem() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    pid = os.getpid()
    host = socket.gethostname().replace("/", "_")
    return f"part-{now}-{pid}-{_process_start(pid)}-{next(_counter):05d}-{host}"


@dataclass
class Segment:
    """One file being written: a hidden IPC stream, made a visible Parquet file by finish()."""

    folder: Path
    schema: Any  # pyarrow.Schema
    stem: str = field(default_factory=_stem)
    opened: float = field(default_factory=time.monotonic)
    rows: int = 0
    _sink: Any = None
    _writer: Any = None

    @property
    def stream(self) -> Path:
        return self.folder / f".{self.stem}{STREAM_SUFFIX}"

    def write(self, table: Any) -> None:
        import pyarrow as pa

        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._sink = pa.OSFile(str(self.stream), "wb")
            self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    @property
    def size(self) -> int:
        return self._sink.tell() if self._sink is not None else 0

    def finish(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        self._sink.close()
        self._writer = None
        return finish_stream(self.stream)


def finish_stream(stream: Path) -> Path | None:
    """Rewrite an IPC stream (up to its last complete batch) as a visible Parquet file beside
    it (temporary name, then rename), then delete the stream."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = stream.with_name(stream.name[1 : -len(STREAM_SUFFIX)] + ".parquet")
    if not final.exists():
        batches: list = []
        schema = None
        with contextlib.suppress(OSError, pa.ArrowInvalid, pa.ArrowException):
            reader = pa.ipc.open_stream(pa.memory_map(str(stream)))
            schema = reader.schema
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
        rows = sum(b.num_rows for b in batches)
        if schema is not None and rows:
            temp = stream.with_name(f".{final.name}.tmp")
            pq.write_table(pa.Table.from_batches(batches, schema), temp)
            os.replace(temp, final)
        else:
            final = None
    with contextlib.suppress(FileNotFoundError):
        stream.unlink()
    return final


def stream_owner(stream: Path) -> tuple[int, str, str] | None:
    """(pid, pid start, host) of the process writing `stream`, from its name."""
    parts = stream.name[1:].split("-", 5)
    if len(parts) < 6 or parts[0] != "part":
        return None
    try:
        return int(parts[2]), parts[3], parts[5][: -len(STREAM_SUFFIX)]
    except ValueError:
        return None


def orphaned(stream: Path) -> bool:
    from ..store.reaper import process_alive

    owner = stream_owner(stream)
    if owner is None:
        return False
    pid, started, host = owner
    return host == socket.gethostname().replace("/", "_") and not process_alive(pid, started)


def recover(folder: Path) -> list[Path]:
    """Make visible what dead writers flushed under `folder` (their hidden streams)."""
    made = []
    if not folder.is_dir():
        return made
    for stream in folder.rglob(f".part-*{STREAM_SUFFIX}"):
        if orphaned(stream):
            try:
                path = finish_stream(stream)
            except OSError as exc:
                logger.warning("cannot recover %s: %s", stream, exc)
                continue
            if path is not None:
                made.append(path)
    for temp in folder.rglob(".part-*.parquet.tmp"):  # a rename that never happened
        if orphaned(temp.with_name(temp.name[: -len(".parquet.tmp")] + STREAM_SUFFIX)):
            temp.unlink(missing_ok=True)
    return made


class PartitionedLog:
    """Rows appended by requests (cheap), written by one background thread (see the module)."""

    def __init__(
        self,
        folder: Path,
        settings: ServeSettings,
        build: Callable[[list[Any]], Any],
        written: Callable[[int, int], None] | None = None,
    ):
        self.folder, self.settings, self._build = folder, settings, build
        self._written = written or (lambda *_counts: None)
        self._lock = threading.Lock()
        self._chunks: list[tuple[str, Hashable, int, Any]] = []
        self._rows = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._segments: dict[tuple[str, Hashable], Segment] = {}
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.finished: list[Path] = []

    def append(self, day: str, key: Hashable, rows: int, chunk: Any) -> None:
        """Queue `rows` rows of the partition `day` whose columns are `key`'s."""
        with self._lock:
            self._chunks.append((day, key, rows, chunk))
            self._rows += rows
            full = self._rows >= self.settings.log_batch_rows
        if full:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cellops-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is buffered and make every file visible."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        else:
            self.flush(final=True)

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            recover(self.folder)
        while not self._stop.is_set():
            self._wake.wait(self.settings.log_batch_seconds)
            self._wake.clear()
            self.flush()
        self.flush(final=True)

    def flush(self, final: bool = False) -> None:
        with self._lock:
            chunks, self._chunks, self._rows = self._chunks, [], 0
        groups: dict[tuple[str, Hashable], list[Any]] = {}
        for day, key, _rows, chunk in chunks:
            groups.setdefault((day, key), []).append(chunk)
        for where, group in groups.items():
            self._write(where, group)
        now = time.monotonic()
        for where, segment in list(self._segments.items()):
            old = now - segment.opened >= self.settings.log_rotate_seconds
            if final or old or segment.size >= self.settings.log_rotate_bytes:
                del self._segments[where]
                self._finish(segment)

    def _write(self, where: tuple[str, Hashable], group: list[Any]) -> None:
        rows = 0
        try:
            table = self._build(group)
            rows = table.num_rows
            segment = self._segments.get(where)
            if segment is not None and not segment.schema.equals(table.schema):
                self._finish(self._segments.pop(where))
                segment = None
            if segment is None:
                folder = self.folder / f"date={where[0]}"
                segment = self._segments[where] = Segment(folder, table.schema)
            segment.write(table)
            self._written(rows, 0)
        except Exception as exc:  # a full disk, a value Arrow refuses: count, say, serve on
            self._note(f"{type(exc).__name__}: {exc}")
            self._written(0, rows or len(group))

    def _finish(self, segment: Segment) -> None:
        try:
            path = segment.finish()
        except Exception as exc:
            self._note(f"cannot finish {segment.stream}: {type(exc).__name__}: {exc}")
            return
        if path is not None:
            self.finished.append(path)
            del self.finished[:-100]

    def _note(self, message: str) -> None:
        logger.warning("prediction log: %s", message)
        self.errors.append(message)
        del self.errors[:-20]

    def hidden_streams(self) -> list[Path]:
        return [s.stream for s in self._segments.values() if s.rows]
