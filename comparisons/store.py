"""The results store: one SQLite row per finished (instance, method) cell.

Written by one process only (the parent of a sweep). The database runs in WAL
mode with full synchronisation and each finished cell is one transaction, so
a sweep killed at any moment, SIGKILL included, loses at most the cells that
were still running and never leaves a half-written row. A UNIQUE key on
(experiment, game, params, seed, method, options) makes every cell appear at
most once; re-running a sweep skips the keys already stored.

A ``stackopt_meta`` table marks the file as ours, with a schema version; any
other file is refused before anything is written to it.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

SCHEMA_NAME = "stackopt.comparisons"
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"

# (column, SQL type); every Result field plus provenance of the cell
CELL_COLUMNS: list[tuple[str, str]] = [
    ("run_id", "INTEGER"),
    ("experiment", "TEXT NOT NULL"),
    ("game", "TEXT NOT NULL"),
    ("params", "TEXT NOT NULL"),  # canonical JSON of the grid point
    ("seed", "INTEGER NOT NULL"),
    ("method", "TEXT NOT NULL"),
    ("options", "TEXT NOT NULL"),  # canonical JSON, as given in the config
    ("fingerprint", "TEXT"),  # sha256 of the instance data
    ("sense", "TEXT"),  # the leader's: maximize or minimize
    ("status", "TEXT NOT NULL"),
    ("leader_objective", "REAL"),
    ("initial_objective", "REAL"),
    ("constraint_violation", "REAL"),
    ("equilibrium_residual", "REAL"),
    ("wall_time_s", "REAL"),
    ("claimed_objective", "REAL"),
    ("bound", "REAL"),
    ("gap", "REAL"),
    ("singular_kkt", "INTEGER"),
    ("message", "TEXT"),
    ("leader_values", "TEXT"),  # JSON
    ("follower_values", "TEXT"),  # JSON
    ("history", "TEXT"),  # JSON
    ("resolved_options", "TEXT"),  # JSON: every option of the method, defaults included
    ("error", "TEXT"),  # traceback or the reason a cell was killed
    ("time_limit", "REAL"),
    ("cell_time_s", "REAL"),  # wall clock of the whole cell: build, solve, score
    ("started_at", "REAL"),  # unix time
    ("finished_at", "REAL"),
    ("worker", "TEXT"),  # host:pid that ran the cell
    ("machine", "TEXT"),  # JSON: platform, cpu count, python
    ("versions", "TEXT"),  # JSON: package versions on the worker
]
KEY_COLUMNS = ("experiment", "game", "params", "seed", "method", "options")
_JSON_COLUMNS = ("leader_values", "follower_values", "history", "resolved_options", "machine",
                 "versions")

_SCHEMA = f"""
CREATE TABLE stackopt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    config_name TEXT,
    config_text TEXT,
    argv TEXT,
    scheduler TEXT,
    versions TEXT,
    machine TEXT
);
CREATE TABLE cells (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {t}" for c, t in CELL_COLUMNS)},
    UNIQUE ({", ".join(KEY_COLUMNS)})
);
CREATE INDEX cells_point ON cells (experiment, game, params, seed);
"""


class StoreError(ValueError):
    """The database cannot be used as a results store."""


def _check_file(path: Path) -> bool:
    """True if ``path`` holds an SQLite database; False if absent or empty; else raise."""
    if not path.exists():
        return False
    if path.is_dir():
        raise StoreError(f"results database {str(path)!r} is a directory")
    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head != _SQLITE_MAGIC:
        raise StoreError(f"{str(path)!r} is not a stackopt results database (not an SQLite file)")
    return True


class Store:
    """An open results database; use :meth:`open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = True) -> "Store":
        path = Path(path)
        existed = _check_file(path)
        if not existed and not create:
            raise StoreError(f"results database {str(path)!r} does not exist")
        try:
            conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results database {str(path)!r}: {exc}") from None
        try:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{str(path)!r} is not a stackopt results database ({exc})") from None
        if tables and "stackopt_meta" not in tables:
            conn.close()
            raise StoreError(
                f"{str(path)!r} is an SQLite database but not a stackopt results database "
                f"(it has tables {sorted(tables)} and no stackopt_meta)"
            )
        if tables:
            meta = dict(conn.execute("SELECT key, value FROM stackopt_meta"))
            if meta.get("schema") != SCHEMA_NAME:
                conn.close()
                raise StoreError(f"{str(path)!r} is not a stackopt results database "
                                 f"(schema {meta.get('schema')!r})")
            if meta.get("version") != str(SCHEMA_VERSION):
                conn.close()
                raise StoreError(f"{str(path)!r} has results schema version {meta.get('version')!r}; "
                                 f"this stackopt reads version {SCHEMA_VERSION}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if not tables:
            if not create:
                conn.close()
                raise StoreError(f"results database {str(path)!r} is empty")
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.executemany("INSERT INTO stackopt_meta VALUES (?, ?)",
                             [("schema", SCHEMA_NAME), ("version", str(SCHEMA_VERSION)),
                              ("created_at", str(time.time()))])
            conn.execute("COMMIT")
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ runs
    def start_run(self, *, config_name: str, config_text: str, argv: list[str],
                  scheduler: str, versions: dict, machine: dict) -> int:
        with self._transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (started_at, config_name, config_text, argv, scheduler, versions,"
                " machine) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), config_name, config_text, json.dumps(argv), scheduler,
                 json.dumps(versions), json.dumps(machine)))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int) -> None:
        with self._transaction():
            self.conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time(), run_id))

    def runs(self) -> list[dict]:
        cur = self.conn.execute("SELECT * FROM runs ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    # ----------------------------------------------------------------- cells
    def done_keys(self) -> set[tuple]:
        cols = ", ".join(KEY_COLUMNS)
        return {tuple(r) for r in self.conn.execute(f"SELECT {cols} FROM cells")}

    def insert(self, row: dict[str, Any]) -> bool:
        """Store one finished cell in its own transaction; False if the key was already there."""
        names = [c for c, _ in CELL_COLUMNS]
        values = []
        for c in names:
            v = row.get(c)
            if c in _JSON_COLUMNS and v is not None and not isinstance(v, str):
                v = json.dumps(v, default=_json_default)
            values.append(v)
        with self._transaction():
            cur = self.conn.execute(
                f"INSERT OR IGNORE INTO cells ({', '.join(names)}) "
                f"VALUES ({', '.join('?' for _ in names)})", values)
        return cur.rowcount == 1

    def delete(self, keys: Iterable[tuple], statuses: Iterable[str]) -> int:
        """Delete the stored cells among ``keys`` whose status is one of ``statuses``."""
        statuses = list(statuses)
        marks = ", ".join("?" for _ in statuses)
        where = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
        n = 0
        with self._transaction():
            for key in keys:
                cur = self.conn.execute(
                    f"DELETE FROM cells WHERE {where} AND status IN ({marks})", (*key, *statuses))
                n += cur.rowcount
        return n

    def rows(self, *, experiments: list[str] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM cells"
        args: list = []
        if experiments:
            sql += f" WHERE experiment IN ({', '.join('?' for _ in experiments)})"
            args = list(experiments)
        cur = self.conn.execute(sql + " ORDER BY id", args)
        names = [d[0] for d in cur.description]
        out = []
        for r in cur:
            d = dict(zip(names, r))
            for c in _JSON_COLUMNS:
                if d.get(c) is not None:
                    d[c] = json.loads(d[c])
            out.append(d)
        return out

    def _transaction(self):
        return _Transaction(self.conn)


class _Transaction:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


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
