"""The project's own SQLite store, `.cellops/mlflow.db`: checked before MLflow opens it, and
its locations moved with the project.

Why the move: MLflow writes each experiment's artifact location, and each run's artifact URI,
as an absolute `file://` URI, once, when it creates them. A project moved (`mv proj proj2`) or
copied (`cp -r`) would keep writing into the old folder: a recreated `proj/.cellops/artifacts`,
or the original's. So the store remembers the root it was made for (`.cellops/store.json`);
opened from another root, every location under the old root is rewritten to the new one, in
one SQLite transaction, before MLflow opens the store (and under the store's lock).

Why the check: SQLite takes an empty file for a new database, so a truncated store (`: >
.cellops/mlflow.db`) would silently become a fresh, empty one and the project's history would
be gone without a word. A store that existed and is now empty or not a database is refused.

Only the embedded store is touched: never a store the settings point elsewhere, nor a server.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fs import atomic_write_json, read_json
from ..config import STATE_DIR_NAME, default_tracking_uri
from ..errors import StoreDamagedError

SQLITE_HEADER = b"SQLite format 3\x00"
MARKER_NAME = "store.json"
ARTIFACTS_PART = f"/{STATE_DIR_NAME}/artifacts/"

# Columns that hold artifact locations (absolute URIs or paths), with the rows to consider.
# Other text (params, tags, dataset sources) is the user's record and is never rewritten.
_LOCATIONS: tuple[tuple[str, str, str], ...] = (
    ("experiments", "artifact_location", ""),
    ("runs", "artifact_uri", ""),
    ("model_versions", "source", ""),
    ("model_versions", "storage_location", ""),
    ("logged_models", "artifact_location", ""),
    ("trace_tags", "value", "key = 'mlflow.artifactLocation'"),
    ("workspaces", "default_artifact_root", ""),
)


@dataclass(frozen=True)
class EmbeddedStore:
    """The store at `ROOT/.cellops/mlflow.db` and what it remembers."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / STATE_DIR_NAME / "mlflow.db"

    @property
    def marker(self) -> Path:
        return self.root / STATE_DIR_NAME / MARKER_NAME

    def remembered_root(self) -> Path | None:
        recorded = read_json(self.marker)
        if isinstance(recorded, dict) and isinstance(recorded.get("root"), str):
            return Path(recorded["root"])
        return None

    def has_history(self) -> bool:
        """Whether the project used a store before: a remembered root, step cache entries or
        step records (the first found is enough)."""
        state = self.root / STATE_DIR_NAME
        return (
            self.marker.is_file()
            or any((state / "cache").glob("*.json"))
            or any((state / "steps").rglob("*.json"))
        )


def interactive_experiment_name(root: Path) -> str:
    """The experiment of the project's notebook-less sessions (IPython, a script)."""
    return f"{root.name}/interactive"


def embedded_store(uri: str) -> EmbeddedStore | None:
    """The project store `uri` names, when it is a project's own `.cellops/mlflow.db`."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    if not db.is_absolute() or db.name != "mlflow.db" or db.parent.name != STATE_DIR_NAME:
        return None
    root = db.parent.parent
    return EmbeddedStore(root) if default_tracking_uri(root) == uri else None


# -- damage ---------------------------------------------------------------------------------------


def check_store(uri: str, deep: bool = True) -> None:
    """Raise StoreDamagedError if the project's own store at `uri` existed and is now empty,
    not a SQLite database, or (`deep`) a database without MLflow's tables or unreadable.

    A missing store, or an empty file in a project with no history, is a new store: fine.
    Without `deep` it costs a stat and 16 bytes, so `%load_ext cellops` can afford it.
    """
    store = embedded_store(uri)
    if store is None:
        return
    reason = _damage(store, deep)
    if reason:
        raise damaged(store.db, reason)


def damaged(db: Path, reason: str) -> StoreDamagedError:
    quoted = shlex.quote(str(db))
    return StoreDamagedError(
        str(db),
        reason,
        "Restore it from a backup, or move it aside to start a new, empty store "
        f"(its steps then run again):\n  mv {quoted} {shlex.quote(str(db) + '.damaged')}",
    )


def _damage(store: EmbeddedStore, deep: bool) -> str | None:
    try:
        size = store.db.stat().st_size
        with open(store.db, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if size == 0:
        if store.has_history():
            return (
                "it is empty (0 bytes), but this project recorded runs in it, so opening it "
                "would start an empty history"
            )
        return None  # a new store: MLflow creates its tables
    if header != SQLITE_HEADER:
        return "it is not a SQLite database"
    if deep:
        return _unreadable(store)
    return None


def _unreadable(store: EmbeddedStore) -> str | None:
    """Why SQLite cannot read the store's tables, or why MLflow's are missing; None if fine."""
    import sqlite3

    try:
        with contextlib.closing(_connect(store.db, read_only=True)) as connection:
            tables = {row[0] for row in connection.execute(_TABLES)}
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return None  # another process is writing it: readable
        return f"SQLite cannot read it ({exc})"
    except sqlite3.DatabaseError as exc:
        return f"SQLite cannot read it ({exc})"
    if "experiments" not in tables and (tables or store.has_history()):
        return "it holds no MLflow tables"
    return None


_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"


def damage_of(uri: str, exc: BaseException) -> StoreDamagedError | None:
    """The named error when MLflow failed to open the project's own store because of the
    file (unreadable, or a schema this MLflow cannot read), not because of the machine."""
    store = embedded_store(uri)
    if store is None:
        return None
    text = str(exc)
    if "file is not a database" in text or "malformed" in text:
        return damaged(store.db, "SQLite cannot read it (database disk image is malformed)")
    if "Can't locate revision" in text or "out-of-date database schema" in text:
        return StoreDamagedError(
            str(store.db),
            "its schema is not the one this MLflow reads (another MLflow version wrote it)",
            "If that MLflow was newer, upgrade this one: pip install -U mlflow\n"
            f"If it was older, back the store up, then: mlflow db upgrade {shlex.quote(uri)}",
        )
    return None


# -- moves and copies -----------------------------------------------------------------------------


def prepare(uri: str) -> EmbeddedStore | None:
    """Before MLflow opens `uri` (under the store's lock): refuse a damaged store, and repair
    the locations of one moved or copied from another root. None if `uri` is not embedded."""
    store = embedded_store(uri)
    if store is None:
        return None
    reason = _damage(store, deep=True)
    if reason:
        raise damaged(store.db, reason)
    if not store.db.is_file() or store.db.stat().st_size == 0:
        return store
    old = store.remembered_root() or _inferred_root(store)
    if old is not None and old != store.root:
        changed = relocate(store.db, old, store.root)
        if changed:
            print(
                f"cellops: this project was moved or copied from {old} to {store.root}; "
                f"{changed} locations in its store now point under {store.root}",
                file=sys.stderr,
            )
    return store


def remember(store: EmbeddedStore) -> None:
    """Note the root the store serves (after MLflow opened it), unless already noted."""
    if store.remembered_root() != store.root:
        atomic_write_json(store.marker, {"root": str(store.root)})


def _inferred_root(store: EmbeddedStore) -> Path | None:
    """For a store made before roots were remembered: the one root its experiments' cellops
    artifact folders (`ROOT/.cellops/artifacts/...`) sit under, if they agree on one."""
    import sqlite3
    from urllib.parse import unquote, urlparse

    try:
        with contextlib.closing(_connect(store.db, read_only=True)) as connection:
            rows = connection.execute("SELECT artifact_location FROM experiments").fetchall()
    except sqlite3.Error:  # no MLflow tables yet: MLflow creates them, nothing to repair
        return None
    roots = set()
    for (location,) in rows:
        if isinstance(location, str) and location.startswith("file://"):
            path = unquote(urlparse(location).path)
            if ARTIFACTS_PART in path:
                roots.add(path.partition(ARTIFACTS_PART)[0])
    return Path(roots.pop()) if len(roots) == 1 else None


def relocate(db: Path, old: Path, new: Path) -> int:
    """Rewrite every artifact location under `old` to the same place under `new`, and the
    interactive experiment's name, in one transaction; return how many values changed."""
    pairs = _prefix_pairs(old, new)
    connection = _connect(db, read_only=False)
    try:
        connection.execute("BEGIN IMMEDIATE")
        columns = _columns(connection)
        changed = 0
        for table, column, where in _LOCATIONS:
            if column not in columns.get(table, ()):
                continue
            for before, after in pairs:
                changed += connection.execute(
                    f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                    f'WHERE substr("{column}", 1, ?) = ?' + (f" AND {where}" if where else ""),
                    (after, len(before) + 1, len(before), before),
                ).rowcount
        changed += _rename_interactive(connection, old, new)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()
    return changed


def _prefix_pairs(old: Path, new: Path) -> list[tuple[str, str]]:
    """The forms a location under `old` takes (percent-encoded and plain `file://` URIs, a
    bare path), each with its form under `new`."""
    pairs = [
        (old.as_uri() + "/", new.as_uri() + "/"),
        (f"file://{old}/", f"file://{new}/"),
        (f"{old}/", f"{new}/"),
    ]
    return list(dict.fromkeys(pairs))


def _rename_interactive(connection: Any, old: Path, new: Path) -> int:
    """Keep the interactive history in its experiment: it is named after the root's folder."""
    before, after = interactive_experiment_name(old), interactive_experiment_name(new)
    if before == after:
        return 0
    return connection.execute(
        "UPDATE experiments SET name = ? WHERE name = ? "
        "AND NOT EXISTS (SELECT 1 FROM experiments WHERE name = ?)",
        (after, before, after),
    ).rowcount


def _columns(connection: Any) -> dict[str, set[str]]:
    tables = [row[0] for row in connection.execute(_TABLES)]
    return {
        table: {row[1] for row in connection.execute(f"PRAGMA table_info('{table}')")}
        for table in tables
    }


def _connect(db: Path, read_only: bool) -> Any:
    """A plain sqlite3 connection (no transaction opened for us: `isolation_level=None`)."""
    import sqlite3

    target = f"{db.as_uri()}?mode=ro" if read_only else f"{db.as_uri()}?mode=rw"
    return sqlite3.connect(target, uri=True, timeout=60, isolation_level=None)
