"""The results store: one SQLite row per finished (instance, method) cell.

Only the parent process of a sweep writes to it, but several sweeps may share
one database (on one machine or one shared disk that honours SQLite's locks).
The database runs in WAL mode with full synchronisation and each finished
cell is one transaction, so a sweep killed at any moment, SIGKILL included,
loses at most the cells that were still running and never leaves a
half-written row. A UNIQUE key on (experiment, game, params, seed, method,
options) makes every cell appear at most once; re-running a sweep skips the
keys already stored.

Concurrent sweeps share the work through the ``claims`` table: a sweep claims
a cell just before running it (one row naming the claimant, with a lease
that the claimant keeps renewing), and storing the cell deletes the claim in
the same transaction. A cell claimed by a live lease is left to its claimant;
a lease that has expired (its sweep was killed, or hangs) may be taken over.

A ``stackopt_meta`` table marks the file as ours, with a schema version; any
other file is refused before anything is written to it. Creating the schema
is one ``BEGIN IMMEDIATE`` transaction that re-reads the tables it holds, so
any number of processes may open one new database at once. Every open runs
SQLite's ``quick_check``: a corrupted file is a :class:`StoreError`, as is
every SQLite error later on, never a bare ``sqlite3`` exception.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA_NAME = "stackopt.comparisons"
SCHEMA_VERSION = 2  # 2 added the claims table; version 1 files are upgraded when opened to write
_READABLE_VERSIONS = ("1", "2")
_SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0

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

_KEY_SQL = ", ".join(KEY_COLUMNS)
_KEY_WHERE = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
_CLAIMS = f"""
CREATE TABLE claims (
    {", ".join(f"{c} {t}" for c, t in CELL_COLUMNS if c in KEY_COLUMNS)},
    run_id INTEGER,
    claimant TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    claimed_at REAL NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY ({_KEY_SQL})
)"""
_SCHEMA = [
    "CREATE TABLE stackopt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    config_name TEXT,
    config_text TEXT,
    argv TEXT,
    scheduler TEXT,
    versions TEXT,
    machine TEXT
)""",
    f"""CREATE TABLE cells (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {t}" for c, t in CELL_COLUMNS)},
    UNIQUE ({_KEY_SQL})
)""",
    "CREATE INDEX cells_point ON cells (experiment, game, params, seed)",
    _CLAIMS,
]


class StoreError(ValueError):
    """The database cannot be used as a results store."""


def _check_file(path: Path) -> str:
    """``"absent"``, ``"empty"`` (0 bytes) or ``"sqlite"``; raise for anything else."""
    if not path.exists():
        return "absent"
    if path.is_dir():
        raise StoreError(f"results database {str(path)!r} is a directory")
    if path.stat().st_size == 0:
        return "empty"
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head != _SQLITE_MAGIC:
        raise StoreError(f"{str(path)!r} is not a stackopt results database (not an SQLite file: "
                         "its first bytes are not SQLite's header, so it is another kind of file "
                         "or a database whose first page was overwritten)")
    return "sqlite"


def _sqlite_error(path: Path, exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "")
    where = f"results database {str(path)!r}"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc):
        return StoreError(f"{where} is corrupted (SQLite: {exc}); it cannot be read reliably: "
                          "restore it from a copy, or salvage its rows with `sqlite3 "
                          f"{path} .recover` and write new results to another --db")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
        return StoreError(f"{where} stayed locked by another process for {BUSY_TIMEOUT_S:g} s "
                          f"(SQLite: {exc})")
    return StoreError(f"{where}: SQLite error: {exc}")


def _translated(method):
    """Turn every ``sqlite3.Error`` raised by a Store method into a StoreError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc) from None
    return wrapper


def _tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _validate(conn, path: Path, tables: set[str]) -> str:
    """The schema version of a non-empty database; raise unless it is a results database."""
    if "stackopt_meta" not in tables:
        raise StoreError(
            f"{str(path)!r} is an SQLite database but not a stackopt results database "
            f"(it has tables {sorted(tables)} and no stackopt_meta)")
    meta = dict(conn.execute("SELECT key, value FROM stackopt_meta"))
    if meta.get("schema") != SCHEMA_NAME:
        raise StoreError(f"{str(path)!r} is not a stackopt results database "
                         f"(schema {meta.get('schema')!r})")
    if meta.get("version") not in _READABLE_VERSIONS:
        raise StoreError(f"{str(path)!r} has results schema version {meta.get('version')!r}; "
                         f"this stackopt reads versions {', '.join(_READABLE_VERSIONS)}")
    return meta["version"]


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        # with no -wal file every commit is in the main file: open it immutable, which
        # creates no -wal or -shm file; otherwise read through the existing WAL
        wal = Path(f"{path}-wal").exists()
        uri = f"{path.resolve().as_uri()}?{'mode=ro' if wal else 'immutable=1'}"
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    return sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _use_wal(conn) -> None:
    """Switch to WAL mode. Changing the journal mode needs an exclusive lock, and
    SQLite answers "database is locked" at once, without its busy timeout, while
    another connection is opening the same new file: retry for that timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.25)


def _pid_gone(pid) -> bool:
    """True if no process ``pid`` exists on this host (never True for our own pid)."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


@dataclass
class Claim:
    """What :meth:`Store.claim_next` found: the key it claimed (or None), the
    candidates already stored, and the claimant whose expired lease it took over."""

    key: tuple | None
    stored: list[tuple] = field(default_factory=list)
    taken_from: str | None = None


class Store:
    """An open results database; use :meth:`open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = True,
             readonly: bool = False) -> "Store":
        """Open (and with ``create``, initialise) a results database.

        ``readonly`` writes nothing at all, not even SQLite's -wal/-shm files
        when none exist; a readonly or ``create=False`` open of a missing or
        0-byte file is a StoreError saying which it is.
        """
        path = Path(path)
        state = _check_file(path)
        if state == "absent" and (readonly or not create):
            raise StoreError(f"results database {str(path)!r} does not exist")
        if state == "empty" and (readonly or not create):
            raise StoreError(f"results database {str(path)!r} is an empty file (0 bytes): no "
                             "sweep has written to it (`stackopt compare --db` initialises it)")
        try:
            conn = _connect(path, readonly=readonly)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results database {str(path)!r}: {exc}") from None
        try:
            cls._prepare(conn, path, create=create, readonly=readonly)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _sqlite_error(path, exc) from None
            raise
        return cls(conn, path)

    @staticmethod
    def _prepare(conn, path: Path, *, create: bool, readonly: bool) -> None:
        bad = [r[0] for r in conn.execute("PRAGMA quick_check")]
        if bad != ["ok"]:
            raise StoreError(f"results database {str(path)!r} is corrupted (SQLite quick_check: "
                             f"{'; '.join(bad[:3])}); restore it from a copy, or salvage its rows "
                             f"with `sqlite3 {path} .recover` and write new results to another --db")
        tables = _tables(conn)
        if tables:
            _validate(conn, path, tables)  # before anything is written to a foreign file
        if readonly:
            if not tables:
                raise StoreError(f"results database {str(path)!r} holds no tables")
            return
        _use_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")  # one creator at a time; the others see its schema
        try:
            tables = _tables(conn)
            if not tables:
                if not create:
                    raise StoreError(f"results database {str(path)!r} is empty")
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.executemany("INSERT INTO stackopt_meta VALUES (?, ?)",
                                 [("schema", SCHEMA_NAME), ("version", str(SCHEMA_VERSION)),
                                  ("created_at", str(time.time()))])
            elif _validate(conn, path, tables) == "1":
                conn.execute(_CLAIMS)
                conn.execute("UPDATE stackopt_meta SET value = ? WHERE key = 'version'",
                             (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @classmethod
    def peek(cls, path: str | os.PathLike) -> dict[tuple, str]:
        """The stored cells' statuses by key, writing nothing: {} for a missing or 0-byte file."""
        if _check_file(Path(path)) != "sqlite":
            return {}
        with cls.open(path, readonly=True) as store:
            return store.stored()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ runs
    @_translated
    def start_run(self, *, config_name: str, config_text: str, argv: list[str],
                  scheduler: str, versions: dict, machine: dict) -> int:
        with self._transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (started_at, config_name, config_text, argv, scheduler, versions,"
                " machine) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), config_name, config_text, json.dumps(argv), scheduler,
                 json.dumps(versions), json.dumps(machine)))
        return int(cur.lastrowid)

    @_translated
    def finish_run(self, run_id: int) -> None:
        with self._transaction():
            self.conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time(), run_id))

    @_translated
    def runs(self) -> list[dict]:
        return self._dicts("SELECT * FROM runs ORDER BY id")

    # ----------------------------------------------------------------- cells
    @_translated
    def done_keys(self) -> set[tuple]:
        return {tuple(r) for r in self.conn.execute(f"SELECT {_KEY_SQL} FROM cells")}

    @_translated
    def stored(self) -> dict[tuple, str]:
        """Every stored cell's status, by key."""
        return {tuple(r[:-1]): r[-1]
                for r in self.conn.execute(f"SELECT {_KEY_SQL}, status FROM cells")}

    @_translated
    def insert(self, row: dict[str, Any]) -> bool:
        """Store one finished cell in its own transaction; False if the key was already there."""
        with self._transaction():
            return self._insert(row)

    def _insert(self, row: dict[str, Any]) -> bool:
        names = [c for c, _ in CELL_COLUMNS]
        values = []
        for c in names:
            v = row.get(c)
            if c in _JSON_COLUMNS and v is not None and not isinstance(v, str):
                v = json.dumps(v, default=_json_default)
            values.append(v)
        cur = self.conn.execute(
            f"INSERT OR IGNORE INTO cells ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})", values)
        return cur.rowcount == 1

    @_translated
    def delete(self, keys: Iterable[tuple], statuses: Iterable[str]) -> int:
        """Delete the stored cells among ``keys`` whose status is one of ``statuses``."""
        statuses = list(statuses)
        marks = ", ".join("?" for _ in statuses)
        n = 0
        with self._transaction():
            for key in keys:
                cur = self.conn.execute(
                    f"DELETE FROM cells WHERE {_KEY_WHERE} AND status IN ({marks})",
                    (*key, *statuses))
                n += cur.rowcount
        return n

    @_translated
    def rows(self, *, experiments: list[str] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM cells"
        args: list = []
        if experiments:
            sql += f" WHERE experiment IN ({', '.join('?' for _ in experiments)})"
            args = list(experiments)
        out = self._dicts(sql + " ORDER BY id", args)
        for d in out:
            for c in _JSON_COLUMNS:
                if d.get(c) is not None:
                    d[c] = json.loads(d[c])
        return out

    # ---------------------------------------------------------------- claims
    @_translated
    def claim_next(self, candidates: Iterable[tuple], *, claimant: str, run_id: int | None,
                   lease: float) -> Claim:
        """Claim the first of ``candidates`` that is neither stored nor claimed by a live lease.

        One transaction: the candidates found stored are listed in the answer
        (the caller drops them). A candidate is taken over when its claim's
        lease has expired, or at once when its claimant ran on this host
        under a process id that no longer exists (a sweep killed here).
        """
        out = Claim(None)
        host = socket.gethostname()
        with self._transaction():
            now = time.time()
            for key in candidates:
                if self.conn.execute(f"SELECT 1 FROM cells WHERE {_KEY_WHERE}", key).fetchone():
                    out.stored.append(key)
                    continue
                held = self.conn.execute(
                    f"SELECT claimant, lease_until, host, pid FROM claims WHERE {_KEY_WHERE}",
                    key).fetchone()
                if (held is not None and held[0] != claimant and held[1] > now
                        and not (held[2] == host and _pid_gone(held[3]))):
                    continue
                self.conn.execute(
                    f"INSERT OR REPLACE INTO claims ({_KEY_SQL}, run_id, claimant, host, pid, "
                    "claimed_at, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*key, run_id, claimant, host, os.getpid(), now, now + lease))
                out.key = key
                out.taken_from = held[0] if held is not None and held[0] != claimant else None
                break
        return out

    @_translated
    def store_claimed(self, row: dict[str, Any], *, claimant: str) -> bool:
        """Store a finished cell and drop the claimant's claim on it, in one transaction;
        False if the key was already stored (by a sweep that took over the claim)."""
        key = tuple(row[c] for c in KEY_COLUMNS)
        with self._transaction():
            inserted = self._insert(row)
            self.conn.execute(f"DELETE FROM claims WHERE {_KEY_WHERE} AND claimant = ?",
                              (*key, claimant))
        return inserted

    @_translated
    def renew(self, claimant: str, lease: float) -> int:
        """Extend every claim of ``claimant`` to ``lease`` seconds from now; how many it holds."""
        with self._transaction():
            cur = self.conn.execute("UPDATE claims SET lease_until = ? WHERE claimant = ?",
                                    (time.time() + lease, claimant))
        return cur.rowcount

    @_translated
    def release(self, claimant: str) -> int:
        """Give back every claim of ``claimant`` (a sweep that stops early)."""
        with self._transaction():
            return self.conn.execute("DELETE FROM claims WHERE claimant = ?", (claimant,)).rowcount

    @_translated
    def claims(self) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM claims ORDER BY claimed_at")

    def _dicts(self, sql: str, args=()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

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
