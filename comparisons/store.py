"""The results store: one SQLite row per finished (instance, method) cell.

Only the parent process of a sweep writes to it, but several sweeps may share
one database (on one machine, or a shared disk that honours SQLite's locks):
they divide its cells through claims (:mod:`.claims`), and each records its
run (:mod:`.runs`). The database runs in WAL mode with full synchronisation
and each finished cell is one transaction, so a sweep killed at any moment,
SIGKILL included, loses at most the cells that were still running and never
leaves a half-written row. A UNIQUE key on (experiment, game, params, seed,
method, options) makes every cell appear at most once; re-running a sweep
skips the keys already stored.

Opening is safe under concurrency and checks the file (:mod:`.storefile`): a
foreign or corrupted file is a :class:`StoreError` saying which in one line,
as is every SQLite error later on, never a bare ``sqlite3`` exception. An empty
(0-byte) file, as ``touch`` or ``mktemp`` leave it, is a new database to a
sweep (initialised) and a StoreError to a reader (nothing was written to it).
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .claims import Claim, ClaimsMixin
from .runs import RunsMixin
from .storefile import (
    BUSY_TIMEOUT_S,
    CELL_COLUMNS,
    JSON_COLUMNS,
    KEY_COLUMNS,
    KEY_SQL,
    KEY_WHERE,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    StoreError,
    Transaction,
    check_file,
    connect,
    prepare,
    sqlite_error,
    translated,
)

_OPEN: dict[str, int] = {}  # open connections of this process, by the database's real path


class Store(ClaimsMixin, RunsMixin):
    """An open results database; use :meth:`open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = True,
             readonly: bool = False) -> Store:
        """Open (and with ``create``, initialise) a results database.

        ``readonly`` writes nothing at all, not even SQLite's -wal/-shm files
        when none exist; a readonly or ``create=False`` open of a missing or
        0-byte file is a StoreError saying which it is.
        """
        path = Path(path)
        # A raw read of the file's header would close a descriptor on it, which drops every
        # POSIX lock this process holds on it, SQLite's included: another process could then
        # checkpoint and delete the WAL under this process's open connections, and their later
        # commits would be lost. The header is read only where no connection here is open.
        key = os.path.realpath(path)
        state = "sqlite" if _OPEN.get(key) else check_file(path)
        if state == "absent" and (readonly or not create):
            raise StoreError(f"results database {str(path)!r} does not exist")
        if state == "empty" and (readonly or not create):
            raise StoreError(f"results database {str(path)!r} is an empty file (0 bytes): no "
                             "sweep has written to it (`stackopt compare --db` initialises it)")
        try:
            conn = connect(path, readonly=readonly)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results database {str(path)!r}: {exc}") from None
        try:
            prepare(conn, path, create=create, readonly=readonly)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise sqlite_error(path, exc) from None
            raise
        _OPEN[key] = _OPEN.get(key, 0) + 1
        store = cls(conn, path)
        store._key = key
        return store

    @classmethod
    def peek(cls, path: str | os.PathLike) -> dict[tuple, str]:
        """The stored cells' statuses by key, writing nothing: {} for a missing or 0-byte file."""
        if check_file(Path(path)) != "sqlite":
            return {}
        with cls.open(path, readonly=True) as store:
            return store.stored()

    def close(self) -> None:
        key = getattr(self, "_key", None)
        if key is not None:
            self._key = None
            _OPEN[key] -= 1
            if not _OPEN[key]:
                del _OPEN[key]
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------- cells
    @translated
    def done_keys(self) -> set[tuple]:
        return {tuple(r) for r in self.conn.execute(f"SELECT {KEY_SQL} FROM cells")}

    @translated
    def stored(self) -> dict[tuple, str]:
        """Every stored cell's status, by key."""
        return {tuple(r[:-1]): r[-1]
                for r in self.conn.execute(f"SELECT {KEY_SQL}, status FROM cells")}

    @translated
    def insert(self, row: dict[str, Any]) -> bool:
        """Store one finished cell in its own transaction; False if the key was already there."""
        with self._transaction():
            return self._insert(row)

    def _insert(self, row: dict[str, Any]) -> bool:
        names = [c for c, _ in CELL_COLUMNS]
        values = []
        for c in names:
            v = row.get(c)
            if c in JSON_COLUMNS and v is not None and not isinstance(v, str):
                v = json.dumps(v, default=_json_default)
            values.append(v)
        cur = self.conn.execute(
            f"INSERT OR IGNORE INTO cells ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})", values)
        return cur.rowcount == 1

    @translated
    def delete(self, keys: Iterable[tuple], statuses: Iterable[str]) -> int:
        """Delete the stored cells among ``keys`` whose status is one of ``statuses``."""
        statuses = list(statuses)
        marks = ", ".join("?" for _ in statuses)
        n = 0
        with self._transaction():
            for key in keys:
                cur = self.conn.execute(
                    f"DELETE FROM cells WHERE {KEY_WHERE} AND status IN ({marks})",
                    (*key, *statuses))
                n += cur.rowcount
        return n

    @translated
    def rows(self, *, experiments: list[str] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM cells"
        args: list = []
        if experiments:
            sql += f" WHERE experiment IN ({', '.join('?' for _ in experiments)})"
            args = list(experiments)
        out = self._dicts(sql + " ORDER BY id", args)
        for d in out:
            for c in JSON_COLUMNS:
                if d.get(c) is not None:
                    d[c] = json.loads(d[c])
        return out

    def _dicts(self, sql: str, args=()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def _transaction(self):
        return Transaction(self.conn)


def _json_default(v):
    try:
        import numpy as np
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(v, "value"):
        return v.value
    return str(v)


__all__ = ["Store", "StoreError", "Claim", "CELL_COLUMNS", "KEY_COLUMNS", "SCHEMA_NAME",
           "SCHEMA_VERSION", "BUSY_TIMEOUT_S"]
