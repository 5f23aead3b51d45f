"""What a step's cell shows: recorded while it runs, shown again when it is restored.

Part 1 tests `IPythonCellOutput` on its own, in the real IPython shell (`ip`) and, for
matplotlib's inline backend, in a real kernel run by nbclient. Part 2 tests `%%step` end to
end: warnings behave as in a plain cell, and a cached step shows what it showed when it ran.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest

from cellops.magics.cell_output import IPythonCellOutput

from .conftest import run

sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def html_bundle(html: str) -> dict:
    return {"text/plain": "<IPython.core.display.HTML object>", "text/html": html}


def capture_in(ip, code: str, output: IPythonCellOutput | None = None) -> list[dict]:
    """Run `code` in the shell inside `output.capture()`; the records."""
    ip.user_ns["_cell_output"] = output or IPythonCellOutput(ip)
    indented = "\n".join("    " + line for line in code.splitlines())
    run(ip, f"with _cell_output.capture() as _records:\n{indented}")
    return ip.user_ns["_records"]


def merged(outputs: list[dict]) -> list[dict]:
    """Consecutive stream outputs of one name joined, as a notebook front end shows them."""
    joined: list[dict] = []
    for out in outputs:
        out = {k: v for k, v in out.items() if k != "execution_count"}
        if out["output_type"] == "stream" and "".join(out["text"]) == "":
            continue
        last = joined[-1] if joined else None
        same_stream = last and out["output_type"] == "stream" == last["output_type"]
        if same_stream and last["name"] == out["name"]:
            last["text"] += "".join(out["text"])
            continue
        if out["output_type"] == "stream":
            out["text"] = "".join(out["text"])
        joined.append(out)
    return joined


def execute_notebook(folder: Path, cells: list[str], env: dict[str, str] | None = None):
    """Run the cells in a fresh kernel started in `folder`, as a front end would."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(folder)}}
    )
    client.execute(env={**os.environ, **(env or {})})
    return nb


def python_in(folder: Path, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `script` in a new Python; a hang fails the test after `timeout` seconds."""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done


# -- 1. IPythonCellOutput in the shell ------------------------------------------------------------


def test_capture_records_streams_and_displays_and_still_shows_them(ip, capsys):
    run(ip, "import sys\nfrom IPython.display import HTML, display")
    capsys.readouterr()
    records = capture_in(
        ip,
        "print('one')\n"
        "print('two')\n"
        "print('oops', file=sys.stderr)\n"
        "display(HTML('<b>bold</b>'))\n"
        "display({'text/plain': 'raw', 'application/json': {'a': [1, 2]}}, raw=True)\n"
        "sys.stdout.write('tail')",
    )
    assert records == [
        stream("stdout", "one\ntwo\n"),
        stream("stderr", "oops\n"),
        {"output_type": "display_data", "data": html_bundle("<b>bold</b>"), "metadata": {}},
        {
            "output_type": "display_data",
            "data": {"text/plain": "raw", "application/json": {"a": [1, 2]}},
            "metadata": {},
        },
        stream("stdout", "tail"),
    ]
    json.dumps(records)
    shown = capsys.readouterr()  # everything was still shown, live
    assert shown.out == "one\ntwo\n<IPython.core.display.HTML object>\nraw\ntail"
    assert shown.err == "oops\n"


@pytest.mark.parametrize("error", ["ValueError('bad')", "KeyboardInterrupt"])
def test_capture_restores_the_streams_and_the_publisher_after_an_exception(ip, error):
    output = IPythonCellOutput(ip)
    stdout, stderr = sys.stdout, sys.stderr
    with pytest.raises((ValueError, KeyboardInterrupt)), output.capture() as records:
        assert sys.stdout is not stdout and sys.stderr is not stderr
        assert "publish" in vars(ip.display_pub)
        print("before")
        raise eval(error)
    assert sys.stdout is stdout and sys.stderr is stderr
    assert "publish" not in vars(ip.display_pub) and "clear_output" not in vars(ip.display_pub)
    assert records == [stream("stdout", "before\n")]
    print("after")  # no longer recorded
    assert records == [stream("stdout", "before\n")]


def test_the_tee_behaves_as_the_stream_it_wraps(ip):
    import io

    output = IPythonCellOutput(ip)
    real = sys.stdout
    with output.capture() as records:
        tee = sys.stdout
        assert tee.encoding == real.encoding
        assert tee.isatty() == real.isatty()
        assert tee.flush() is None
        assert isinstance(tee, io.TextIOBase) == isinstance(real, io.TextIOBase)
        assert tee.write("abc") == 3
        tee.writelines(["d\n", "e\n"])
    assert records == [stream("stdout", "abcd\ne\n")]


def test_a_stream_the_cell_replaces_stays_replaced(ip):
    import io

    real = sys.stdout
    mine = io.StringIO()
    try:
        with IPythonCellOutput(ip).capture():
            sys.stdout = mine
        assert sys.stdout is mine  # as after a plain cell that did this
    finally:
        sys.stdout = real


def test_bytes_in_a_mime_bundle_are_recorded_as_base64_text(ip):
    run(ip, f"from IPython.display import display\npng = {PNG!r}")
    records = capture_in(
        ip, "display({'image/png': png, 'text/plain': 'a picture'}, raw=True, metadata={'w': 1})"
    )
    (record,) = records
    assert record["data"] == {
        "image/png": base64.b64encode(PNG).decode("ascii"),
        "text/plain": "a picture",
    }
    assert record["metadata"] == {"w": 1}
    assert json.loads(json.dumps(records)) == records


def test_stream_text_is_capped_and_the_cut_is_marked(ip, capsys):
    output = IPythonCellOutput(ip, stream_limit=100)
    capsys.readouterr()
    with output.capture() as records:
        for _ in range(30):
            print("x" * 9)
        print("last", file=sys.stderr)
    (record,) = records
    assert record["text"].startswith("x" * 9 + "\n")
    assert len(record["text"]) < 200
    assert "truncated" in record["text"]
    assert capsys.readouterr().out == ("x" * 9 + "\n") * 30  # shown in full, live


def test_clear_output_keeps_what_the_cell_finally_shows(ip):
    run(ip, "from IPython.display import clear_output, display")
    records = capture_in(
        ip,
        "print('loading')\n"
        "clear_output()\n"
        "for i in range(3):\n"
        "    clear_output(wait=True)\n"
        "    print('step', i)\n"
        "display({'text/plain': 'done'}, raw=True)",
    )
    assert records == [
        stream("stdout", "step 2\n"),
        {"output_type": "display_data", "data": {"text/plain": "done"}, "metadata": {}},
    ]


def test_an_updated_display_is_recorded_as_it_finally_is(ip):
    run(ip, "from IPython.display import display")
    records = capture_in(
        ip,
        "handle = display({'text/plain': 'first'}, raw=True, display_id=True)\n"
        "print('between')\n"
        "handle.update({'text/plain': 'second'}, raw=True)",
    )
    assert [r["output_type"] for r in records] == ["display_data", "stream"]
    assert records[0]["data"] == {"text/plain": "second"}


def test_replay_shows_the_records_in_order(ip, capsys):
    output = IPythonCellOutput(ip)
    records = [
        stream("stdout", "one\n"),
        {"output_type": "display_data", "data": html_bundle("<i>i</i>"), "metadata": {}},
        stream("stderr", "careful\n"),
        stream("stdout", "two\n"),
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}},
    ]
    capsys.readouterr()
    with output.capture() as again:  # a replay records just like the cell that showed it
        output.replay(records)
    assert again == [
        *records[:4],
        {"output_type": "display_data", "data": {"text/plain": "42"}, "metadata": {}},
    ]
    shown = capsys.readouterr()
    assert shown.out == "one\n<IPython.core.display.HTML object>\ntwo\n42\n"
    assert shown.err == "careful\n"


def test_format_value_is_the_display_ipython_gives_the_value(ip):
    run(ip, "from IPython.display import HTML")
    output = IPythonCellOutput(ip)
    assert output.format_value(None) is None
    assert output.format_value(42) == {
        "output_type": "execute_result",
        "data": {"text/plain": "42"},
        "metadata": {},
    }
    shown = output.format_value(ip.user_ns["HTML"]("<p>x</p>"))
    assert shown["data"] == html_bundle("<p>x</p>")
    json.dumps(shown)


def test_capture_never_imports_matplotlib(tmp_path):
    script = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from cellops.magics.cell_output import IPythonCellOutput\n"
        "with IPythonCellOutput(InteractiveShell.instance()).capture():\n"
        "    print('hi')\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'\n"
    )
    assert python_in(tmp_path, script).stdout == "hi\n"


def test_figures_of_a_non_inline_backend_are_left_alone(tmp_path):
    script = (
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from cellops.magics.cell_output import IPythonCellOutput\n"
        "with IPythonCellOutput(InteractiveShell.instance()).capture() as records:\n"
        "    plt.plot([1, 2, 3])\n"
        "assert records == [], records\n"
        "assert plt.get_fignums() == [1], 'the figure was closed'\n"
    )
    python_in(tmp_path, script)


def test_inline_figures_are_recorded_once_and_replayed_as_images(tmp_path):
    """In a kernel: the inline backend shows figures after the cell; a capture shows them in it."""
    nb = execute_notebook(
        tmp_path,
        [
            "import json, matplotlib\n"
            "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\n"
            "from cellops.magics.cell_output import IPythonCellOutput\n"
            "output = IPythonCellOutput(get_ipython())",
            "with output.capture() as records:\n    print('before')\n    plt.plot([1, 2, 3])",
            "print(json.dumps(records))",
            "output.replay(records)",
        ],
    )
    shown, dumped, replayed = (merged(cell.outputs) for cell in nb.cells[1:])
    assert [o["output_type"] for o in shown] == ["stream", "display_data"]  # the figure: once
    assert shown[0]["text"] == "before\n"
    png = shown[1]["data"]["image/png"]
    assert base64.b64decode(png).startswith(b"\x89PNG")

    records = json.loads(dumped[0]["text"])
    assert [r["output_type"] for r in records] == ["stream", "display_data"]
    assert records[1]["data"]["image/png"] == png

    assert replayed == shown  # the same text and the same image, as real outputs


# -- 2. %%step (these need the engine's `run_step(..., output=...)`) ---------------------------


WARNING_SCRIPT = """\
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "cellops")
shell.run_cell("import warnings").raise_error()
shell.run_cell(
    "%%step warns --no-cache\\nfor i in range(3):\\n    warnings.warn('hello')\\nanswer = 42"
).raise_error()
shell.run_cell("for i in range(3):\\n    warnings.warn('plain')").raise_error()
print("answer =", shell.user_ns["answer"])
shell.run_line_magic("unload_ext", "cellops")
"""


@sqlite_only
def test_a_warning_in_a_step_returns_and_is_shown_once_as_in_a_plain_cell(store, project):
    done = python_in(project, WARNING_SCRIPT, timeout=120)  # it used to loop forever
    assert "answer = 42" in done.stdout
    assert done.stderr.count("UserWarning: hello") == 1
    assert done.stderr.count("UserWarning: plain") == 1


@sqlite_only
def test_a_warnings_filter_set_in_a_step_stays_set(store_ip):
    ip = store_ip
    run(ip, "import warnings")
    run(ip, '%%step quiet\nwarnings.filterwarnings("ignore", message="x")\ndone = True')
    assert any(
        action == "ignore" and message is not None and message.pattern == "x"
        for action, message, *_ in warnings.filters
    )
    with warnings.catch_warnings(record=True) as caught:
        run(ip, "warnings.warn('x')\nwarnings.warn('y')")
    assert [str(w.message) for w in caught] == ["y"]


@sqlite_only
def test_a_cached_step_shows_what_it_showed_when_it_ran(store_ip, capsys):
    ip = store_ip
    run(ip, "import sys\nfrom IPython.display import HTML, display")
    code = (
        "%%step report\n"
        "total = 40 + 2\n"
        "print('total is', total)\n"
        "print('a note', file=sys.stderr)\n"
        "display(HTML('<b>report</b>'))\n"
        "total * 2"
    )
    capsys.readouterr()
    first = run(ip, code)
    ran = capsys.readouterr()
    del ip.user_ns["total"]

    second = run(ip, code)
    cached = capsys.readouterr()
    assert first.result == second.result == 84  # shown as Out[n] both times
    assert ip.user_ns["total"] == 42
    head, _, rest = cached.out.partition("\n")
    assert head.startswith("cached: restored total from run ")
    strip = "\n".join(line for line in ran.out.splitlines() if not line.startswith("Out["))
    assert "\n".join(line for line in rest.splitlines() if not line.startswith("Out[")) == strip
    assert strip == "total is 42\n<IPython.core.display.HTML object>"
    assert cached.err == ran.err == "a note\n"


@sqlite_only
def test_a_trailing_semicolon_hides_the_value_when_run_and_when_restored(store_ip):
    ip = store_ip
    assert run(ip, "%%step quiet_value\nsquares = [1, 4]\nlen(squares);").result is None
    assert run(ip, "%%step quiet_value\nsquares = [1, 4]\nlen(squares);").result is None
    # the code digest does not see the `;`: the same entry, now shown
    assert run(ip, "%%step quiet_value\nsquares = [1, 4]\nlen(squares)").result == 2


@sqlite_only
def test_a_value_that_cannot_be_stored_is_shown_again_from_its_display(store_ip, capsys):
    ip = store_ip
    run(ip, "import threading")
    code = "%%step lock_value\nn = 3\nthreading.Lock()"
    shown = repr(run(ip, code).result)
    assert "lock object" in shown
    capsys.readouterr()
    second = run(ip, code)
    assert second.result is None  # not the value (it cannot be stored): its recorded display
    out = capsys.readouterr().out
    assert out.startswith("cached: restored n from run ") and out.endswith(f"\n{shown}\n")
    quiet = run(ip, code + ";")
    assert quiet.result is None
    assert "lock object" not in capsys.readouterr().out


def _commit(project: Path, relative: str, nb) -> Path:
    path = project / relative
    nbformat.write(nb, path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "add notebook"], cwd=project, check=True)
    return path


STEP_CELLS = [
    "%load_ext cellops",
    "import matplotlib\n"
    "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
    "import matplotlib.pyplot as plt\n"
    "from IPython.display import HTML, display",
    "%%step draw\n"
    "total = 40 + 2\n"
    "print('drawing', total)\n"
    "display(HTML('<b>figure</b>'))\n"
    "plt.figure()\n"
    "plt.plot([1, 3, 2])\n"
    "total * 2",
]


@sqlite_only
def test_a_cached_step_in_a_fresh_kernel_shows_its_text_displays_figure_and_value(store, project):
    notebook = _commit(
        project,
        "draw.ipynb",
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in STEP_CELLS]),
    )
    env = {"JPY_SESSION_NAME": str(notebook)}
    first = merged(execute_notebook(project, STEP_CELLS, env).cells[2].outputs)
    second = merged(execute_notebook(project, STEP_CELLS, env).cells[2].outputs)

    kinds = ["stream", "display_data", "display_data", "execute_result"]
    assert [o["output_type"] for o in first] == kinds  # the figure once, in the cell
    assert first[0]["text"] == "drawing 42\n"
    assert first[1]["data"]["text/html"] == "<b>figure</b>"
    assert base64.b64decode(first[2]["data"]["image/png"]).startswith(b"\x89PNG")
    assert first[3]["data"]["text/plain"] == "84"

    assert [o["output_type"] for o in second] == kinds
    head, _, rest = second[0]["text"].partition("\n")
    assert head.startswith("cached: restored total from run ")
    assert rest == first[0]["text"]
    assert second[1:] == first[1:]  # the same display, the same image, the same value
