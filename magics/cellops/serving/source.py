"""Where `models:/NAME@ALIAS` points: the version, and the folder of its files.

On the project's SQLite store this is a read-only `sqlite3` query of MLflow's registry tables
(a fraction of a millisecond, and no MLflow import, which takes seconds: the server starts and
polls the alias without it). Any other store, or a schema the query does not know, goes through
the registry's own client (`registry.store`), as every other cellops command does.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import AliasNotFoundError, CellopsError, CellopsUsageError, StoreUnreachableError


@dataclass(frozen=True)
class VersionRef:
    name: str
    alias: str
    version: str
    location: str  # the version's artifact URI (file:... for the project's own store)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


class AliasReader:
    """Reads, each time it is asked, which version an alias points at."""

    def __init__(self, settings: Settings, name: str, alias: str):
        from ..registry.store import check_model_name

        self.settings, self.name, self.alias = settings, check_model_name(name), alias
        uri = settings.tracking_uri
        self._db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
        self._store: Any = None

    @property
    def uri(self) -> str:
        return self.settings.tracking_uri

    def resolve(self) -> VersionRef:
        """The version the alias points at now. Raises AliasNotFoundError (the message names
        the model's aliases), a usage error for an unknown model, StoreUnreachableError."""
        if self._db is not None:
            try:
                return self._from_sqlite()
            except _Unknown:
                pass  # a schema this query does not know: ask MLflow
        return self._from_client()

    # -- the project's SQLite store, read directly ------------------------------------------------

    def _from_sqlite(self) -> VersionRef:
        if not self._db.is_file():
            raise StoreUnreachableError(self.uri, f"{self._db} does not exist")
        try:
            db = sqlite3.connect(f"{self._db.as_uri()}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as exc:
            raise StoreUnreachableError(self.uri, str(exc)) from None
        try:
            return self._query(db)
        except sqlite3.OperationalError as exc:
            if "no such" in str(exc):  # table or column: not the schema this query knows
                raise _Unknown from None
            raise StoreUnreachableError(self.uri, str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise StoreUnreachableError(self.uri, str(exc)) from None
        finally:
            db.close()

    def _query(self, db: sqlite3.Connection) -> VersionRef:
        name, alias = self.name, self.alias
        rows = db.execute(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
            (name, alias),
        ).fetchall()
        if len(rows) > 1:  # several workspaces hold the name: MLflow knows which is ours
            raise _Unknown
        if not rows:
            models = [r[0] for r in db.execute("SELECT name FROM registered_models")]
            aliases = db.execute(
                "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,)
            ).fetchall()
            raise self._missing(name in models, sorted(models), dict(aliases))
        version = str(rows[0][0])
        found = db.execute(
            "SELECT source, storage_location FROM model_versions WHERE name = ? AND version = ?",
            (name, int(version)),
        ).fetchone()
        if found is None:
            raise _Unknown
        return VersionRef(name, alias, version, found[1] or found[0])

    # -- any store, through MLflow ----------------------------------------------------------------

    def _from_client(self) -> VersionRef:
        from ..registry.store import RegistryStore, alias_version, is_missing
        from ..store.client import store_error

        try:
            if self._store is None:
                self._store = RegistryStore(self.settings)
            client = self._store.client

            def read(client: Any) -> tuple[str | None, str | None]:
                version = alias_version(client, self.name, self.alias)
                if version is None:
                    return None, None
                return version, client.get_model_version_download_uri(self.name, version)

            version, location = self._store.call(read)
            if version is not None:
                return VersionRef(self.name, self.alias, version, str(location))
            try:
                aliases = dict(client.get_registered_model(self.name).aliases or {})
                known = True
            except Exception as exc:
                if not is_missing(exc):
                    raise
                aliases, known = {}, False
            models = sorted(m.name for m in client.search_registered_models(max_results=1000))
        except CellopsError:
            raise
        except Exception as exc:
            self._store = None  # a new client next time (the server may be back)
            raise store_error(self.uri, exc) from None
        raise self._missing(known, models, aliases)

    def _missing(self, known: bool, models: list[str], aliases: dict[str, Any]) -> CellopsError:
        if not known:
            there = f"registered models: {', '.join(models)}" if models else "none is registered"
            return CellopsUsageError(
                f"there is no registered model named {self.name!r} in {self.uri} ({there}); "
                "register one with cellops.register_model(model, name)"
            )
        if aliases:
            listed = ", ".join(f"@{a} (v{v})" for a, v in sorted(aliases.items()))
            advice = f"its aliases are {listed}; serve one with --alias NAME"
        else:
            advice = "it has no alias yet"
        return AliasNotFoundError(
            f"model {self.name} has no alias @{self.alias}: {advice}, or give it one with "
            f"`cellops promote {self.name}`"
        )


class _Unknown(Exception):
    """The direct query cannot answer: ask MLflow's client instead."""
