"""The results database as a file: its schema, and opening it safely.

A ``stackopt_meta`` table marks the file as ours, with a schema version; any
other file is refused before anything is written to it. Creating the schema
is one ``BEGIN IMMEDIATE`` transaction that re-reads the tables it holds, so
any number of processes may open one new database at once. Every open runs
SQLite's ``quick_check``, and :func:`translated` turns every later SQLite
error into a :class:`StoreError` naming the file.
"""
from __future__ import annotations

import functools
import sqlite3
import time
from pathlib import Path

SCHEMA_NAME = "stackopt.comparisons"
SCHEMA_VERSION = 3  # 2 added the claims table, 3 the draws' columns (DRAW_COLUMNS); older files
_READABLE_VERSIONS = ("1", "2", "3")  # are read as they are and upgraded when opened to write
_SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0

# what the scoring's draws of the followers' equilibrium showed (stackopt.Result's fields of
# the same names; the interval's ends as objective_low and objective_high): schema version 3
DRAW_COLUMNS: list[tuple[str, str]] = [
    ("draws", "INTEGER"),
    ("objective_stderr", "REAL"),
    ("objective_low", "REAL"),
    ("objective_high", "REAL"),
    ("worst_violation", "REAL"),
    ("pessimistic", "TEXT"),  # JSON: {"objective", "violation"} of the worst draw
    ("optimistic", "TEXT"),  # JSON: of the best draw
    ("equilibria", "TEXT"),  # JSON: [{"count", "frequency", "objective", "violation"}]
    ("optimistic_claim", "INTEGER"),  # the method's claim is an optimistic value
    ("claim_gap", "REAL"),
]
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
    *DRAW_COLUMNS,
]
KEY_COLUMNS = ("experiment", "game", "params", "seed", "method", "options")
JSON_COLUMNS = ("leader_values", "follower_values", "history", "resolved_options", "machine",
                "versions", "pessimistic", "optimistic", "equilibria")

KEY_SQL = ", ".join(KEY_COLUMNS)
KEY_WHERE = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
_CLAIMS = f"""
CREATE TABLE claims (
    {", ".join(f"{c} {t}" for c, t in CELL_COLUMNS if c in KEY_COLUMNS)},
    run_id INTEGER,
    claimant TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    claimed_at REAL NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY ({KEY_SQL})
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
    UNIQUE ({KEY_SQL})
)""",
    "CREATE INDEX cells_point ON cells (experiment, game, params, seed)",
    _CLAIMS,
]


class StoreError(ValueError):
    """The database cannot be used as a results store."""


def check_file(path: Path) -> str:
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


def sqlite_error(path: Path, exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "")
    where = f"results database {str(path)!r}"
    exc = " ".join(str(exc).split())  # one line
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc):
        return StoreError(f"{where} is corrupted (SQLite: {exc}); it cannot be read reliably: "
                          "restore it from a copy, or salvage its rows with `sqlite3 "
                          f"{path} .recover` and write new results to another --db")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
        return StoreError(f"{where} stayed locked by another process for {BUSY_TIMEOUT_S:g} s "
                          f"(SQLite: {exc})")
    return StoreError(f"{where}: SQLite error: {exc}")


def translated(method):
    """Turn every ``sqlite3.Error`` raised by a Store method into a StoreError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from None
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


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
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


def prepare(conn, path: Path, *, create: bool, readonly: bool) -> None:
    """Check a freshly opened connection's file, then create, validate or upgrade its schema."""
    bad = [r[0] for r in conn.execute("PRAGMA quick_check")]
    if bad != ["ok"]:
        # one line: quick_check reports up to 100 problems, several lines each, under headers
        problems = [ln.strip() for row in bad for ln in str(row).splitlines()
                    if ln.strip() and not ln.startswith("***")] or ["no details"]
        more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
        raise StoreError(f"results database {str(path)!r} is corrupted (SQLite quick_check: "
                         f"{problems[0]}{more}); restore it from a copy, or salvage its rows "
                         f"with `sqlite3 {path} .recover` and write new results to another --db")
    tables = _tables(conn)
    if tables:
        _validate(conn, path, tables)  # before anything is written to a foreign file
    if readonly:
        if not tables:
            raise StoreError(f"results database {str(path)!r} is an SQLite file with no tables: "
                             "no sweep has written to it")
        return
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")  # one creator at a time; the others see its schema
    try:
        tables = _tables(conn)
        if not tables:
            if not create:
                raise StoreError(f"results database {str(path)!r} is an SQLite file with no "
                                 "tables: no sweep has written to it")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.executemany("INSERT INTO stackopt_meta VALUES (?, ?)",
                             [("schema", SCHEMA_NAME), ("version", str(SCHEMA_VERSION)),
                              ("created_at", str(time.time()))])
        elif (version := _validate(conn, path, tables)) != str(SCHEMA_VERSION):
            if version == "1":
                conn.execute(_CLAIMS)
            have = {r[1] for r in conn.execute("PRAGMA table_info(cells)")}
            for c, t in DRAW_COLUMNS:  # the rows stored before read NULL there
                if c not in have:
                    conn.execute(f"ALTER TABLE cells ADD COLUMN {c} {t}")
            conn.execute("UPDATE stackopt_meta SET value = ? WHERE key = 'version'",
                         (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class Transaction:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
