"""`%%step` against careless flags, cells that link outside the project, killed writers and
cache objects from an untrusted DVC remote (issue 11), in a real IPython shell.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash

from cellops.cache.index import StepCache
from cellops.store.session import current_session

from .conftest import run
from .test_step_magic import SIDE_EFFECT, ran, states, step_runs, usage_error

sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


def objects(project: Path) -> list[Path]:
    folder = project / ".cellops" / "objects"
    return [p for p in folder.rglob("*") if p.is_file() and "tmp" not in p.parts]


def entries(project: Path) -> list[Path]:
    return sorted((project / ".cellops" / "cache").glob("*.json"))


# -- flags ---------------------------------------------------------------------------------------


def test_the_project_root_is_refused_as_a_step_file_before_the_cell_runs(ip, capsys):
    run(ip, SIDE_EFFECT)
    body = "side_effect('root')\nx = 1"
    message = str(usage_error(ip, f"%%step s --files-out .\n{body}"))
    assert "--files-out .: the project root itself cannot be a step output" in message
    assert "for example --files-out out/" in message
    message = str(usage_error(ip, f"%%step s --files-in .\n{body}"))
    assert "--files-in .: the project root itself cannot be a step input" in message
    message = str(usage_error(ip, f"%%step s --files-in ..\n{body}"))
    assert "which holds the project, cannot be a step input" in message
    message = str(usage_error(ip, f"%%step s --files-out .cellops/x.csv\n{body}"))
    assert "inside cellops's own folder .cellops/" in message
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert ran("root") == 0 and "x" not in ip.user_ns


def test_quoted_paths_with_spaces_and_commas_are_one_path_each(ip, project):
    run(ip, SIDE_EFFECT)
    run(ip, "from pathlib import Path")
    write = (
        "side_effect('quoted')\n"
        "Path('out').mkdir(exist_ok=True)\n"
        "Path('out/my file.csv').write_text('a\\n')\n"
        "Path('out/b, c.csv').write_text('b\\n')\n"
        "Path('out/d.csv').write_text('d\\n')"
    )
    code = f'%%step quoted --files-out "out/my file.csv",\'"out/b, c.csv", out/d.csv\'\n{write}'
    run(ip, code)
    (project / "out" / "my file.csv").unlink()
    (project / "out" / "b, c.csv").unlink()
    run(ip, code)  # a hit: both files come back
    assert ran("quoted") == 1
    assert (project / "out" / "my file.csv").read_text() == "a\n"
    assert (project / "out" / "b, c.csv").read_text() == "b\n"
    assert states("quoted") == ["executed", "cached"]


def test_an_unclosed_quote_fails_before_the_cell_runs(ip, capsys):
    run(ip, SIDE_EFFECT)
    message = str(usage_error(ip, "%%step q --files-out \"out/my file.csv\nside_effect('q')"))
    assert "No closing quotation" in message and "close the quote" in message
    message = str(usage_error(ip, "%%step q --files-out '\"a.csv'\nside_effect('q')"))
    assert 'unclosed "' in message
    assert ran("q") == 0
    assert "Traceback" not in capsys.readouterr().err


# -- a symlink the cell makes --------------------------------------------------------------------


@sqlite_only
def test_a_symlink_leaving_the_project_in_an_output_fails_the_step_and_caches_nothing(
    store_ip, project, tmp_path
):
    ip = store_ip
    secret = tmp_path / "secret.txt"  # outside the project (tmp_path/proj)
    secret.write_text("not for the cache: 7f1c\n")
    run(ip, SIDE_EFFECT)
    for target in (secret, Path("/etc/hostname")):
        code = (
            "%%step linker --files-out out/\n"
            "import os\n"
            "side_effect('linker')\n"
            "os.makedirs('out/sub', exist_ok=True)\n"
            "open('out/fine.txt', 'w').write('fine')\n"
            f"os.symlink({str(target)!r}, 'out/sub/link')"
        )
        message = str(usage_error(ip, code))
        assert f"--files-out out holds out/sub/link, a symlink to {target.resolve()}" in message
        assert "outside the project; nothing of the step was cached" in message
        (project / "out" / "sub" / "link").unlink()
    assert ran("linker") == 2
    current_session().tracker.flush()
    assert [r.info.status for r in step_runs("linker")] == ["FAILED", "FAILED"]
    assert entries(project) == []
    assert not any(b"7f1c" in p.read_bytes() for p in objects(project))

    # the declared path itself made a link: refused too
    link = f"os.symlink({str(secret)!r}, 'result.txt')"
    code = f"%%step linked --files-out result.txt\nimport os\n{link}"
    assert "--files-out result.txt is a symlink to" in str(usage_error(ip, code))
    assert not any(b"7f1c" in p.read_bytes() for p in objects(project))


# -- temporary files a killed kernel left --------------------------------------------------------

WRITER = """\
import sys, time
from pathlib import Path
from cellops.cache.objects import ObjectStore

class Slow:
    def __reduce__(self):  # pickled while the temporary file is open: stop there
        print("writing", flush=True)
        time.sleep(600)
        return (int, ())

ObjectStore(Path(sys.argv[1])).put_bundle({"values": {"big": b"x" * 1_000_000, "s": Slow()}}, {})
"""


def start_writer(objects_dir: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(objects_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "writing"
    return child


def test_a_killed_writers_temporary_file_is_removed_by_the_next_session_a_live_ones_kept(
    ip, project
):
    tmp = project / ".cellops" / "objects" / "tmp"
    dead = start_writer(tmp.parent)
    live = start_writer(tmp.parent)
    try:
        by_pid = {child.pid: [p for p in tmp.iterdir() if f".{child.pid}." in p.name]
                  for child in (dead, live)}  # fmt: skip
        assert all(len(files) == 1 for files in by_pid.values())
        assert by_pid[dead.pid][0].stat().st_size >= 1_000_000
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        stale = tmp / ".bundle.k2j4h5ab.tmp"  # an older cellops's name: no owner, a day old
        stale.write_bytes(b"old")
        os.utime(stale, (1, 1))

        run(ip, "%%step first\nx = 1")  # the session's first step cleans up

        assert not by_pid[dead.pid][0].exists()
        assert by_pid[live.pid][0].exists()
        assert not stale.exists()
    finally:
        for child in (dead, live):
            child.kill()
            child.wait()
    run(ip, "%%step second\ny = 2")
    assert by_pid[live.pid][0].exists()  # once per session: a later step leaves it alone


# -- cache objects nobody of the project signed --------------------------------------------------


def malicious_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    return pickle.dumps({"values": {"items": Evil()}})


def plant(project: Path, data: bytes) -> dict:
    """Write `data` as an object under its valid content-addressed name, as a remote could."""
    digest = xxhash.xxh3_128_hexdigest(data)
    path = project / ".cellops" / "objects" / digest[:2] / f"{digest}.bundle"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"codec": "bundle", "digest": digest, "size": len(data)}


@sqlite_only
def test_an_unsigned_malicious_object_is_never_unpickled_and_the_step_runs(
    store_ip, project, tmp_path, capsys
):
    ip = store_ip
    proof = tmp_path / "proof"
    pickle.loads(malicious_pickle(proof))  # the payload is real: loading it runs code
    assert proof.exists()

    run(ip, SIDE_EFFECT)
    code = "%%step stored\nside_effect('stored')\nitems = list(range(10))"
    run(ip, code)
    current_session().tracker.flush()
    (entry_path,) = entries(project)
    marker = tmp_path / "marker"
    evil = plant(project, malicious_pickle(marker))

    # 1. the remote rewrote the entry to name its object: the entry's signature fails
    payload = json.loads(entry_path.read_text())
    payload["bundle"] = evil
    entry_path.write_text(json.dumps(payload))
    capsys.readouterr()
    run(ip, code)
    err = capsys.readouterr().err
    assert "cache entry .cellops/cache/" in err
    assert "has a signature that does not match this project's key" in err
    assert "share the key file .cellops/cache.key out of band" in err
    assert not marker.exists()
    assert ran("stored") == 2 and ip.user_ns["items"] == list(range(10))

    # 2. an entry signed with the key (as one written before objects were signed) naming an
    # unsigned object: refused before unpickling too
    current_session().tracker.flush()
    cache = StepCache(project / ".cellops" / "cache")
    (entry,) = [e for p in entries(project) for e in cache.candidates(p.name.split(".")[0])]
    entry.bundle = evil
    cache.save(entry)
    capsys.readouterr()
    run(ip, code)
    err = capsys.readouterr().err
    assert f"cache object .cellops/objects/{evil['digest'][:2]}/{evil['digest']}.bundle" in err
    assert "is not signed by this project's key" in err
    assert not marker.exists()
    assert ran("stored") == 3
    run(ip, code)  # the re-run stored a signed entry: a hit again
    assert ran("stored") == 3
    assert states("stored") == ["executed", "executed", "executed", "cached"]
    assert "Traceback" not in capsys.readouterr().err


@sqlite_only
def test_a_clone_without_the_key_runs_the_steps_and_with_it_restores_them(
    store_ip, project, capsys
):
    ip = store_ip
    key = project / ".cellops" / "cache.key"
    run(ip, SIDE_EFFECT)
    code = "%%step keyed\nside_effect('keyed')\nvalue = 41 + 1"
    run(ip, code)
    current_session().tracker.flush()
    assert key.stat().st_mode & 0o777 == 0o600
    assert (project / ".cellops" / ".gitignore").read_text().splitlines()[-1] == "cache.key"
    ours, (entry,) = key.read_bytes(), entries(project)
    pulled = entry.read_bytes()
    key.unlink()  # a teammate's clone: the entries came from the remote, the key did not
    capsys.readouterr()
    run(ip, code)
    assert ran("keyed") == 2
    err = capsys.readouterr().err
    assert "has a signature that does not match this project's key" in err
    assert "signed with another key" in err
    # the key shared out of band: what the remote holds is trusted again
    current_session().tracker.flush()
    key.write_bytes(ours)
    entry.write_bytes(pulled)
    del ip.user_ns["value"]
    run(ip, code)
    assert ran("keyed") == 2 and ip.user_ns["value"] == 42
    assert states("keyed") == ["executed", "executed", "cached"]

    key.write_text("not a key\n")
    message = str(usage_error(ip, code))
    assert f"the cache key {key} is damaged" in message
