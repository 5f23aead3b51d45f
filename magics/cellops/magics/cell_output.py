"""What a step's cell shows, recorded while it runs so that a cached step can show it again.

`IPythonCellOutput` is the IPython side of the engine's `CellOutput` protocol:

- `capture()` tees `sys.stdout`/`sys.stderr` and wraps the shell's display publisher while the
  step's code runs; what is shown still reaches the user live, and is also recorded as
  nbformat-shaped outputs (`stream`, `display_data`);
- `format_value(value)` is the `execute_result` IPython would show for the cell's last value;
- `replay(outputs)` shows recorded outputs again: text to the streams, mime bundles through the
  display publisher (in a kernel, figures come back as images).

Nothing here imports matplotlib: figures drawn with the inline backend are flushed at the end
of a capture only when the user's code already imported `matplotlib.pyplot`.
"""

from __future__ import annotations

import base64
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STREAM_LIMIT = 1_000_000  # characters of stream text recorded per step
TRUNCATED = "\n[cellops: output truncated at {limit:,} characters; not all of it was recorded]\n"
_INLINE_BACKENDS = {
    "inline",
    "module://matplotlib_inline.backend_inline",
    "module://ipykernel.pylab.backend_inline",
}
_STREAMS = ("stdout", "stderr")


class IPythonCellOutput:
    """Record and replay a cell's output in an IPython shell (a kernel or a terminal)."""

    def __init__(self, shell: Any, stream_limit: int = STREAM_LIMIT):
        self.shell = shell
        self.stream_limit = stream_limit

    @contextmanager
    def capture(self) -> Iterator[list[dict]]:
        """Record what the code run inside shows, and still show it; yields the records.

        The list is complete when the context exits (the text of the last stream record is
        joined then). Streams and the publisher are restored even on KeyboardInterrupt.
        """
        recorder = _Recorder(self.stream_limit)
        originals = {name: getattr(sys, name) for name in _STREAMS}
        proxies = {name: _TeeStream(originals[name], name, recorder) for name in _STREAMS}
        unwrap = _wrap_publisher(self.shell.display_pub, recorder)
        try:
            for name, proxy in proxies.items():
                setattr(sys, name, proxy)
            yield recorder.records
            _flush_inline_figures()  # the inline backend's post_execute hook would be too late
        finally:
            recorder.close()
            for name, proxy in proxies.items():
                if getattr(sys, name) is proxy:  # a stream the cell set itself stays set
                    setattr(sys, name, originals[name])
            unwrap()

    def format_value(self, value: Any) -> dict | None:
        """The `execute_result` IPython shows for `value`; None if nothing would be shown."""
        if value is None:
            return None
        data, metadata = self.shell.display_formatter.format(value)
        if not data:
            return None
        return {
            "output_type": "execute_result",
            "data": _jsonable(data),
            "metadata": _jsonable(metadata or {}),
        }

    def replay(self, outputs: list[dict]) -> None:
        """Show recorded outputs again, in their order."""
        for output in outputs:
            kind = output.get("output_type")
            if kind == "stream":
                stream = sys.stderr if output.get("name") == "stderr" else sys.stdout
                text = output.get("text", "")
                stream.write("".join(text) if isinstance(text, list) else text)
                stream.flush()
            elif kind in ("display_data", "execute_result"):
                self.shell.display_pub.publish(
                    data=output.get("data", {}), metadata=output.get("metadata") or {}
                )
            elif kind == "clear_output":
                self.shell.display_pub.clear_output(wait=bool(output.get("wait", False)))


class _Recorder:
    """The records of one capture; stream, display and clear events from any thread."""

    def __init__(self, stream_limit: int):
        self.records: list[dict] = []
        self.active = True
        self._limit = stream_limit
        self._lock = threading.Lock()
        self._local = threading.local()
        self._open: dict | None = None  # the stream record being appended to
        self._chunks: list[str] = []  # its text, joined when it is sealed
        self._stream_chars = 0
        self._truncated = False
        self._clear_pending = False
        self._displays: dict[str, dict] = {}  # display_id -> its record, for updates

    @contextmanager
    def passing_through(self) -> Iterator[None]:
        """While the real publisher runs: what it prints (text/plain in a terminal) is not a
        stream output of its own, the display record already holds it."""
        self._local.publishing = True
        try:
            yield
        finally:
            self._local.publishing = False

    def stream(self, name: str, text: Any) -> None:
        if not self.active or not isinstance(text, str) or not text:
            return
        if getattr(self._local, "publishing", False):
            return
        with self._lock:
            self._clear_if_pending()
            if self._truncated:
                return
            room = self._limit - self._stream_chars
            if len(text) > room:
                text = text[: max(room, 0)] + TRUNCATED.format(limit=self._limit)
                self._truncated = True
            self._stream_chars += len(text)
            if self._open is not None and self._open["name"] == name:
                self._chunks.append(text)
                return
            self._seal()
            self._open = {"output_type": "stream", "name": name, "text": ""}
            self._chunks = [text]
            self.records.append(self._open)

    def display(self, data: Any, metadata: Any, transient: Any, update: bool) -> None:
        if not self.active:
            return
        record = {
            "output_type": "display_data",
            "data": _jsonable(data if isinstance(data, dict) else {}),
            "metadata": _jsonable(metadata if isinstance(metadata, dict) else {}),
        }
        display_id = transient.get("display_id") if isinstance(transient, dict) else None
        with self._lock:
            if update:  # the notebook keeps the last version, in the first one's place
                target = self._displays.get(display_id) if display_id is not None else None
                if target is not None:
                    target["data"], target["metadata"] = record["data"], record["metadata"]
                return  # an update of another cell's output is not this cell's output
            self._clear_if_pending()
            self._seal()
            self.records.append(record)
            if display_id is not None:
                self._displays[str(display_id)] = record

    def clear(self, wait: bool) -> None:
        """clear_output: the records keep what the cell finally shows, as a notebook would."""
        if not self.active:
            return
        with self._lock:
            if wait:
                self._clear_pending = True
            else:
                self._clear()

    def close(self) -> None:
        with self._lock:
            self.active = False
            self._seal()

    def _clear_if_pending(self) -> None:
        if self._clear_pending:
            self._clear_pending = False
            self._clear()

    def _clear(self) -> None:
        self._seal()
        del self.records[:]  # the list the caller holds
        self._stream_chars = 0
        self._truncated = False

    def _seal(self) -> None:
        if self._open is not None:
            self._open["text"] = "".join(self._chunks)
            self._open, self._chunks = None, []


class _TeeStream:
    """Writes through to `stream` and records the text; everything else is `stream`'s.

    Attributes (`encoding`, `isatty`, `fileno`, `flush`, ipykernel's `set_parent`, ...) are
    the stream's, and so is `__class__`: `isinstance(sys.stdout, io.TextIOBase)` still holds.
    """

    __slots__ = ("_stream", "_name", "_recorder")

    def __init__(self, stream: Any, name: str, recorder: _Recorder):
        object.__setattr__(self, "_stream", stream)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_recorder", recorder)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._stream)

    def write(self, text: Any) -> Any:
        written = self._stream.write(text)
        self._recorder.stream(self._name, text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        if name in _TeeStream.__slots__:  # not set yet (a copy): no recursion
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._stream, name, value)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._stream)

    def __repr__(self) -> str:
        return f"<cellops tee of {self._stream!r}>"


def _wrap_publisher(publisher: Any, recorder: _Recorder) -> Callable[[], None]:
    """Record `publisher.publish` and `clear_output` calls; returns the function undoing it."""
    original_publish = publisher.publish
    original_clear = publisher.clear_output
    names = ("publish", "clear_output")
    own = {name: vars(publisher)[name] for name in names if name in vars(publisher)}

    def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        recorder.display(data, metadata, kwargs.get("transient"), bool(kwargs.get("update")))
        with recorder.passing_through():
            return original_publish(data, metadata, *args, **kwargs)

    def clear_output(wait: bool = False) -> Any:
        recorder.clear(bool(wait))
        with recorder.passing_through():  # a terminal prints escape codes: not the cell's text
            return original_clear(wait)

    publisher.publish = publish
    publisher.clear_output = clear_output

    def unwrap() -> None:
        for name, wrapper in (("publish", publish), ("clear_output", clear_output)):
            if vars(publisher).get(name) is not wrapper:
                continue  # wrapped again since, by someone else: ours now only passes through
            if name in own:
                setattr(publisher, name, own[name])
            else:
                delattr(publisher, name)

    return unwrap


def _flush_inline_figures() -> None:
    """Publish the figures the inline backend would show after the cell, now, while recording.

    Only when the cell's code imported `matplotlib.pyplot` and the backend is inline (in a
    terminal with another backend, figures are windows, not output).
    """
    if "matplotlib.pyplot" not in sys.modules:
        return
    inline = sys.modules.get("matplotlib_inline.backend_inline")
    matplotlib = sys.modules.get("matplotlib")
    if inline is None or matplotlib is None:
        return
    try:
        try:
            backend = matplotlib.get_backend(auto_select=False)  # matplotlib >= 3.10
        except TypeError:  # without resolving an automatic backend: that could import a GUI
            backend = matplotlib.rcParams._get_backend_or_none()
    except Exception:
        return
    if isinstance(backend, str) and backend.lower() in _INLINE_BACKENDS:
        inline.flush_figures()


def _jsonable(value: Any) -> Any:
    """`value` as JSON: bytes become base64 text (as Jupyter stores image/png), others str."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)
