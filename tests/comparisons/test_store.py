"""The results store: concurrent creation, claims and leases, corruption, upgrade, read-only."""
import multiprocessing as mp
import os
import re
import socket
import sqlite3
import subprocess
import time
import traceback

import pytest

from stackopt.comparisons.store import SCHEMA_VERSION, Store, StoreError

KEYS = [("toy", "harness_toy", "{}", seed, "test-random", "{}") for seed in range(1, 5)]


def _open_many(folder, n, barrier, out):
    failures = []
    for k in range(n):
        barrier.wait(timeout=60)  # every process opens the same new file at the same moment
        try:
            Store.open(f"{folder}/db{k}.sqlite").close()
        except Exception:  # noqa: BLE001 - any failure is what we count
            failures.append(traceback.format_exc())
    out.put(failures)


def test_four_processes_creating_one_new_database_never_fail(tmp_path):
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_many, args=(tmp_path, 20, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    failures = sum((out.get(timeout=120) for _ in procs), [])
    for p in procs:
        p.join()
    assert failures == [], failures[0]
    for k in range(20):
        with Store.open(tmp_path / f"db{k}.sqlite", create=False) as store:
            meta = dict(store.conn.execute("SELECT key, value FROM stackopt_meta"))
            assert meta["version"] == str(SCHEMA_VERSION)
            assert store.conn.execute("SELECT COUNT(*) FROM stackopt_meta").fetchone()[0] == 3
            assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _row(key, status="converged", run_id=1):
    return dict(zip(("experiment", "game", "params", "seed", "method", "options"), key),
                status=status, run_id=run_id)


def _hold(store, key, claimant, *, lease_until, host="elsewhere", pid=1):
    store.conn.execute(
        "INSERT OR REPLACE INTO claims (experiment, game, params, seed, method, options, run_id, "
        "claimant, host, pid, claimed_at, lease_until) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
        (*key, claimant, host, pid, time.time(), lease_until))


def test_claims_skip_live_leases_and_take_over_expired_ones(tmp_path):
    store = Store.open(tmp_path / "r.sqlite")
    store.insert(_row(KEYS[0]))
    _hold(store, KEYS[1], "run 7 elsewhere:1", lease_until=time.time() + 0.5)
    c = store.claim_next(KEYS, claimant="me", run_id=1, lease=30)
    assert (c.key, c.stored, c.taken_from) == (KEYS[2], [KEYS[0]], None)  # stored and held skipped
    c = store.claim_next([KEYS[1]], claimant="me", run_id=1, lease=30)
    assert c.key is None and c.stored == []  # a live lease of someone else
    time.sleep(0.6)
    c = store.claim_next([KEYS[1]], claimant="me", run_id=1, lease=30)
    assert (c.key, c.taken_from) == (KEYS[1], "run 7 elsewhere:1")  # expired: taken over
    held = {r["seed"]: r for r in store.claims()}
    assert set(held) == {2, 3} and {r["claimant"] for r in held.values()} == {"me"}
    assert held[2]["pid"] == os.getpid() and held[2]["host"] == socket.gethostname()

    before = {r["seed"]: r["lease_until"] for r in store.claims()}
    assert store.renew("me", 100) == 2
    assert all(r["lease_until"] > before[r["seed"]] + 50 for r in store.claims())
    assert store.store_claimed(_row(KEYS[2]), claimant="me")  # stored, its claim dropped
    assert not store.store_claimed(_row(KEYS[2]), claimant="me")  # a second copy is refused
    assert [r["seed"] for r in store.claims()] == [2]
    assert store.release("me") == 1 and store.claims() == []
    store.close()


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid no longer exists
    alive = subprocess.Popen(["sleep", "30"])
    try:
        with Store.open(tmp_path / "r.sqlite") as store:
            far = time.time() + 3600
            _hold(store, KEYS[0], "run 3 dead", lease_until=far, host=socket.gethostname(),
                  pid=gone.pid)
            _hold(store, KEYS[1], "run 4 alive", lease_until=far, host=socket.gethostname(),
                  pid=alive.pid)
            _hold(store, KEYS[2], "run 5 remote", lease_until=far, host="elsewhere", pid=gone.pid)
            c = store.claim_next(KEYS[:3], claimant="me", run_id=1, lease=30)
            assert (c.key, c.taken_from) == (KEYS[0], "run 3 dead")
            assert store.claim_next(KEYS[1:3], claimant="me", run_id=1, lease=30).key is None
    finally:
        alive.kill()
        alive.wait()


def test_schema_version_1_is_read_as_is_and_upgraded_when_written(tmp_path):
    path = tmp_path / "v1.sqlite"
    Store.open(path).close()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE claims")
    con.execute("UPDATE stackopt_meta SET value = '1' WHERE key = 'version'")
    con.commit()
    con.close()
    with Store.open(path, readonly=True) as store:
        assert store.stored() == {}
    con = sqlite3.connect(path)
    assert "claims" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    con.close()
    with Store.open(path) as store:
        assert store.claims() == []
        assert dict(store.conn.execute("SELECT key, value FROM stackopt_meta"))["version"] == str(SCHEMA_VERSION)


def _filled(path):
    with Store.open(path) as store:
        for seed in range(1, 120):
            store.insert(_row(("toy", "harness_toy", '{"budget":1.0}', seed, "test-random",
                               f'{{"scale":{seed}}}')) | {"history": [{"step": i} for i in range(60)]})
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    return pages, size


def test_every_overwritten_page_is_a_clear_corruption_error(tmp_path):
    good = tmp_path / "good.sqlite"
    pages, size = _filled(good)
    assert pages >= 10
    for page in range(1, pages + 1):
        bad = tmp_path / f"bad{page}.sqlite"
        data = bytearray(good.read_bytes())
        data[(page - 1) * size:page * size] = b"\xab" * size
        bad.write_bytes(bytes(data))
        expected = "not an SQLite file" if page == 1 else "is corrupted"
        for kw in ({}, {"create": False}, {"readonly": True}):
            with pytest.raises(StoreError, match=expected):
                Store.open(bad, **kw)
        assert bad.read_bytes() == bytes(data)  # refused before anything was written


def test_a_corruption_quick_check_finds_is_one_line(tmp_path, capsys):
    """Cell pointers of every table leaf page zeroed, one page at a time: quick_check reports
    several problems of several lines each; the error (and the command's output) is one line."""
    cfg = tmp_path / "retry.toml"
    cfg.write_text(RETRY_CONFIG)
    good = tmp_path / "good.sqlite"
    pages, size = _filled(good)
    data = good.read_bytes()
    leaves = [page for page in range(2, pages + 1) if data[(page - 1) * size] == 0x0D
              and int.from_bytes(data[(page - 1) * size + 3:(page - 1) * size + 5], "big") >= 3]
    assert len(leaves) >= 5
    for page in leaves:
        off, cells = (page - 1) * size, int.from_bytes(data[(page - 1) * size + 3:(page - 1) * size + 5], "big")
        bad = tmp_path / f"bad{page}.sqlite"
        bad.write_bytes(data[:off + 8] + b"\0" * (2 * cells) + data[off + 8 + 2 * cells:])
        with pytest.raises(StoreError, match=rf"is corrupted \(SQLite quick_check: On tree page {page} "
                                             r"cell \d+: .* and \d+ more problem\(s\)\); restore it") as info:
            Store.open(bad)
        assert "\n" not in str(info.value)
        for args in (["report", bad, "--out", tmp_path / "rep"], ["compare", cfg, "--db", bad]):
            code, out, err = _cli(args, capsys)
            assert code == 2 and len(err.strip().splitlines()) == 1, err
            assert "is corrupted (SQLite quick_check: On tree page" in err


def test_compare_initialises_an_empty_file_and_report_refuses_it(tmp_path, capsys):
    """An empty (0-byte) file, as `touch` or `mktemp` leave it, is a new database to `compare`."""
    cfg = tmp_path / "retry.toml"
    cfg.write_text(RETRY_CONFIG)
    empty = tmp_path / "made-by-mktemp.sqlite"
    empty.write_bytes(b"")
    code, _, err = _cli(["report", empty, "--out", tmp_path / "rep"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is an empty file (0 bytes): no sweep has written to it" in err and empty.stat().st_size == 0
    code, out, _ = _cli(["compare", cfg, "--db", empty, "--workers", "1", "--no-progress"], capsys)
    assert code == 0 and "4 cells: 0 already stored, 4 run" in out
    with Store.open(empty, readonly=True) as store:
        assert len(store.rows()) == 4


def test_empty_and_missing_files_are_named_for_what_they_are(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    for kw in ({"create": False}, {"readonly": True}):
        with pytest.raises(StoreError, match=r"is an empty file \(0 bytes\)"):
            Store.open(empty, **kw)
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "absent.sqlite", readonly=True)
    assert Store.peek(empty) == {} and Store.peek(tmp_path / "absent.sqlite") == {}
    assert empty.stat().st_size == 0 and not (tmp_path / "absent.sqlite").exists()
    Store.open(empty).close()  # a sweep initialises an empty file
    with Store.open(empty, create=False) as store:
        assert store.stored() == {}


def test_readonly_writes_nothing(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store.open(path) as store:
        store.insert(_row(KEYS[0], status="error"))
    before = sorted(os.listdir(tmp_path)), path.read_bytes()
    assert Store.peek(path) == {KEYS[0]: "error"}
    with Store.open(path, readonly=True) as store:
        assert len(store.rows()) == 1
        with pytest.raises(StoreError, match="SQLite error: attempt to write a readonly"):
            store.insert(_row(KEYS[1]))
    assert (sorted(os.listdir(tmp_path)), path.read_bytes()) == before


# --------------------------------------------------------------------------- through the CLI
RETRY_CONFIG = """
plugins = ["test_harness_toys"]
time_limit = 30
seeds = [1, 2]
[experiments.toy]
game = "harness_toy"
[experiments.toy.methods.test-random]
[experiments.toy.methods.test-crash]
"""


def _cli(args, capsys):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import test_harness_toys  # noqa: F401  (the toy game and methods, in this process too)

    from stackopt.comparisons.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_corrupted_empty_missing_and_dry_run(tmp_path, capsys):
    cfg = tmp_path / "retry.toml"
    cfg.write_text(RETRY_CONFIG)
    good = tmp_path / "good.sqlite"
    pages, size = _filled(good)
    bad = tmp_path / "bad.sqlite"
    data = bytearray(good.read_bytes())
    data[(pages // 2) * size:(pages // 2 + 1) * size] = b"\xab" * size
    bad.write_bytes(bytes(data))
    for args in (["report", bad, "--out", tmp_path / "rep"], ["compare", cfg, "--db", bad],
                 ["compare", cfg, "--db", bad, "--dry-run"]):
        code, out, err = _cli(args, capsys)
        assert code == 2 and "Traceback" not in err
        assert re.search(r"error: results database '.*bad.sqlite' is corrupted", err), err
    assert bad.read_bytes() == bytes(data) and not (tmp_path / "rep").exists()

    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    code, _, err = _cli(["report", empty, "--out", tmp_path / "rep"], capsys)
    assert code == 2 and "is an empty file (0 bytes)" in err and "does not exist" not in err
    code, _, err = _cli(["report", tmp_path / "absent.sqlite"], capsys)
    assert code == 2 and "does not exist" in err

    new = tmp_path / "new.sqlite"
    code, _, err = _cli(["compare", cfg, "--db", new, "--dry-run"], capsys)
    assert code == 0 and "4 cells, 0 already in" in err
    assert sorted(os.listdir(tmp_path)) == ["bad.sqlite", "empty.sqlite", "good.sqlite",
                                            "retry.toml"]  # nothing created


LIMITED_CONFIG = RETRY_CONFIG + """
[experiments.toy.methods.test-sleep]
sleep = 1.5
time_limit = 1          # the method returns past its limit: a result with status time_limit
"""


def test_cli_counts_stored_failures_and_retries_them(tmp_path, capsys):
    cfg = tmp_path / "retry.toml"
    cfg.write_text(LIMITED_CONFIG)
    db = tmp_path / "r.sqlite"
    code, out, err = _cli(["compare", cfg, "--db", db, "--workers", "1"], capsys)
    assert code == 0
    assert "6 cells: 0 already stored, 6 run (converged 2, error 2, time_limit 2)" in out
    assert ("2 failed (error or solver_error) and 2 stopped at the time limit (results with that "
            "status, not failures): --retry-failed runs them again") in out
    lines = [ln for ln in err.splitlines() if ln.startswith("[")]  # no terminal: a line per cell
    assert len(lines) == 6
    for ln in lines:
        assert re.fullmatch(r"\[\d/6\] toy seed [12] test-(random|crash|sleep): "
                            r"(converged|error|time_limit) in \d+\.\d\d s", ln), ln
    with Store.open(db, readonly=True) as store:
        limited = [r for r in store.rows() if r["method"] == "test-sleep"]
    assert all(r["status"] == "time_limit" and r["leader_objective"] is not None
               and "status converged before that" in r["message"] for r in limited)
    before = db.read_bytes()
    code, out, err = _cli(["compare", cfg, "--db", db, "--dry-run"], capsys)
    assert code == 0 and "6 cells, 6 already in" in err and "(2 failed (error or solver_error)" in err
    assert db.read_bytes() == before
    code, out, _ = _cli(["compare", cfg, "--db", db, "--no-progress"], capsys)
    assert code == 0 and "6 cells: 6 already stored (2 failed (error or solver_error) and 2 stopped" in out
    code, out, err = _cli(["compare", cfg, "--db", db, "--retry-failed", "--workers", "1"], capsys)
    assert code == 0 and ("6 cells: 2 already stored (4 failed or time-limited cells cleared by "
                          "--retry-failed), 4 run (error 2, time_limit 2)") in out
    with Store.open(db, readonly=True) as store:
        runs = [r["id"] for r in store.runs()]
        rows = store.rows()
    assert len(rows) == 6 and {r["run_id"] for r in rows if r["status"] != "converged"} == {runs[-1]}


def test_schema_version_2_reads_without_the_draws_and_gains_them_when_written(tmp_path):
    path = tmp_path / "v2.sqlite"
    with Store.open(path) as store:
        store.insert(_row(KEYS[0]))
    con = sqlite3.connect(path)  # a version-2 file: no draws' columns
    for c in ("draws", "objective_stderr", "objective_low", "objective_high", "worst_violation",
              "pessimistic", "optimistic", "equilibria", "optimistic_claim", "claim_gap"):
        con.execute(f"ALTER TABLE cells DROP COLUMN {c}")
    con.execute("UPDATE stackopt_meta SET value = '2' WHERE key = 'version'")
    con.commit()
    con.close()
    with Store.open(path, readonly=True) as store:
        (old,) = store.rows()
        assert "draws" not in old and old["seed"] == KEYS[0][3]
    with Store.open(path) as store:
        assert dict(store.conn.execute("SELECT key, value FROM stackopt_meta"))["version"] == "3"
        store.insert(_row(KEYS[1]) | {"draws": 12, "objective_stderr": 0.25, "objective_low": 0.5,
                                      "objective_high": 1.5, "equilibria": [{"count": 12}]})
        old, new = store.rows()
        assert old["draws"] is None and old["equilibria"] is None
        assert new["draws"] == 12 and new["objective_low"] == 0.5 and new["equilibria"] == [{"count": 12}]
