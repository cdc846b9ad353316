"""Sweeps: resume after SIGKILL, the hard time guard, dead workers, Dask = process pool."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_harness_toys  # noqa: E402,F401  (registers the toy game and methods)

from stackopt.comparisons.config import parse_config  # noqa: E402
from stackopt.comparisons.runner import LocalPool, row_numbers, run_sweep  # noqa: E402
from stackopt.comparisons.store import Store  # noqa: E402

KILL_CONFIG = """
plugins = ["test_harness_toys"]
time_limit = 20
seeds = "1-6"
[experiments.toy]
game = "harness_toy"
[experiments.toy.grid]
budget = [0.0, 1.0]
[experiments.toy.methods.test-sleep]
sleep = 0.4
[experiments.toy.methods.test-random]
"""


def _count(db) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _compare(cfg, db):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "stackopt.comparisons.cli", "compare", str(cfg), "--db", str(db),
         "--workers", "2", "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=cfg.parent)  # outside the checkout: the installed package, not the checkout's stackopt/


def _rows(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, experiment, game, params, seed, method, options, "
                           "finished_at, run_id, status FROM cells ORDER BY id").fetchall()
    finally:
        con.close()


def test_sigkill_then_rerun_stores_every_cell_exactly_once(tmp_path):
    cfg = tmp_path / "kill.toml"
    cfg.write_text(KILL_CONFIG)
    db = tmp_path / "results.sqlite"
    proc = _compare(cfg, db)
    deadline = time.time() + 120
    while _count(db) < 4:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the sweep stored nothing in 120 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # the parent, mid-sweep; its workers die with it
    proc.wait()
    before = _rows(db)
    assert 4 <= len(before) < 24, "the kill should land partway through"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

    proc = _compare(cfg, db)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"24 cells: {len(before)} already stored, {24 - len(before)} run" in out
    after = _rows(db)
    keys = [r[1:7] for r in after]
    assert len(after) == 24 and len(set(keys)) == 24  # every cell exactly once
    assert after[:len(before)] == before  # finished cells kept: same ids, same timestamps
    assert {r[8] for r in after[len(before):]} == {max(r[8] for r in after)}  # the new run did the rest
    assert {r[9] for r in after} == {"converged"}

    proc = _compare(cfg, db)  # a third run has nothing to do
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "24 already stored, 0 run" in out
    assert _rows(db) == after


GUARD_CONFIG = """
plugins = ["test_harness_toys"]
seeds = [1, 2]
time_limit = 30
[experiments.guard]
game = "harness_toy"
[experiments.guard.grid]
budget = [0.5, 1.5]
[experiments.guard.methods.test-random]
[experiments.guard.methods.test-exact]
[experiments.guard.methods.test-crash]
[experiments.guard.methods.test-fork]
[experiments.stuck]
game = "harness_toy"
seeds = [3]
time_limit = 1
kill_grace = 1
[experiments.stuck.methods.test-sleep]
sleep = 60
[experiments.stuck.methods.test-die]
"""


def _sweep(tmp_path, name, methods=None, **kw):
    config = parse_config(GUARD_CONFIG, name="guard", methods=methods)
    store = Store.open(tmp_path / f"{name}.sqlite")
    t0 = time.perf_counter()
    summary = run_sweep(config, store, progress=False, argv=["test"], **kw)
    elapsed = time.perf_counter() - t0
    rows = {(r["experiment"], r["params"], r["seed"], r["method"]): r for r in store.rows()}
    runs = store.runs()
    store.close()
    return summary, rows, elapsed, runs


def _check_guarded(summary, rows, elapsed, die=True):
    assert summary.total == 17 + die and summary.ran == 17 + die
    stuck = rows[("stuck", "{}", 3, "test-sleep")]
    assert stuck["status"] == "time_limit" and "killed after 2 s" in stuck["error"]
    assert stuck["cell_time_s"] < 20
    if die:
        died = rows[("stuck", "{}", 3, "test-die")]
        assert died["status"] == "error" and "died" in died["error"]
    crash = rows[("guard", '{"budget":0.5}', 1, "test-crash")]
    assert crash["status"] == "error" and "crashed on purpose" in crash["error"]
    assert summary.statuses == {"converged": 8, "optimal": 4, "error": 4 + die, "time_limit": 1}


def test_process_pool_guard_and_dask_give_the_same_numbers(tmp_path):
    distributed = pytest.importorskip("distributed")
    summary, local, elapsed, runs = _check_and_return(*_sweep(tmp_path, "local", workers=2))
    assert elapsed < 60  # the 60 s sleeper was cut short
    assert runs[0]["scheduler"] == "local process pool, 2 workers"
    assert runs[0]["finished_at"] is not None
    ok = [r for r in local.values() if r["status"] in ("converged", "optimal")]
    assert all(r["fingerprint"] and len(r["fingerprint"]) == 64 for r in ok)
    assert all(r["versions"]["stackopt"] and r["machine"]["cpu_count"] for r in ok)
    # the certified method's bound equals its objective (the toy closed form)
    exact = local[("guard", '{"budget":1.5}', 2, "test-exact")]
    assert exact["bound"] == pytest.approx(exact["leader_objective"], abs=1e-4)  # oracle tolerance

    import dask

    with dask.config.set({"distributed.worker.daemon": False}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        # the --scheduler tcp://HOST:PORT path: the sweep connects its own client
        # (a cell that kills its Dask worker is left to the process-pool part)
        summary_d, rows_d, elapsed_d, runs_d = _sweep(
            tmp_path, "dask", scheduler=cluster.scheduler_address,
            methods=["test-random", "test-exact", "test-crash", "test-fork", "test-sleep"])
    _check_guarded(summary_d, rows_d, elapsed_d, die=False)
    assert runs_d[0]["scheduler"].startswith("dask cluster tcp://")
    remote = rows_d
    assert set(remote) == set(local) - {("stuck", "{}", 3, "test-die")}
    for key, row in local.items():
        if row["status"] in ("converged", "optimal"):
            assert row_numbers(remote[key]) == row_numbers(row), key
            assert remote[key]["worker"] != row["worker"]


def _check_and_return(summary, rows, elapsed, runs):
    _check_guarded(summary, rows, elapsed)
    return summary, rows, elapsed, runs


def test_local_pool_rejects_bad_worker_counts():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            LocalPool(bad)
