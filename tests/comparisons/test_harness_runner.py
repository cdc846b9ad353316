"""Sweeps: resume after SIGKILL, the hard time guard, dead workers, Dask = process pool."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

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


# --------------------------------------------------------------------------- concurrent sweeps
PROBE = '''
"""A method that logs each computation and waits for a gate file before its first one."""
import os, time
import numpy as np
from pyomo.common.config import ConfigValue
from stackopt import Status
from stackopt.methods import Method, MethodOutput, available_methods, register_method
import test_harness_toys  # noqa: F401

class ProbeMethod(Method):
    CONFIG = Method.CONFIG()
    CONFIG.declare("log", ConfigValue(default="", domain=str, doc="append a line per computation"))
    CONFIG.declare("gate", ConfigValue(default="", domain=str, doc="wait for this file"))
    CONFIG.declare("sleep", ConfigValue(default=0.0, domain=float, doc="seconds"))

    def run(self, game, config, seed, time_limit):
        deadline = time.time() + 120
        while config.gate and not os.path.exists(config.gate) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(config.sleep)
        with open(config.log, "a") as fh:
            fh.write(f"{seed} {os.getpid()} {os.getppid()}\\n")
        p0 = np.array([v.value for v in game.structure().leader_variables], dtype=float)
        return MethodOutput(leader=p0, status=Status.CONVERGED)

if "test-probe" not in available_methods():
    register_method("test-probe")(ProbeMethod)
'''


def _probe_config(tmp_path, seeds="1-16", sleep=0.3):
    (tmp_path / "harness_probe.py").write_text(PROBE)
    cfg = tmp_path / "probe.toml"
    cfg.write_text(f'''
plugins = ["harness_probe"]
time_limit = 60
seeds = "{seeds}"
[experiments.probe]
game = "harness_toy"
[experiments.probe.methods.test-probe]
log = "{tmp_path / 'computed.log'}"
gate = "{tmp_path / 'go'}"
sleep = {sleep}
''')
    return cfg


def _compare_in(tmp_path, cfg, db, *extra, workers="1"):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE, str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "stackopt.comparisons.cli", "compare", str(cfg), "--db", str(db),
         "--workers", workers, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path)  # outside the checkout: the installed package, not the checkout's stackopt/


def test_two_concurrent_sweeps_store_and_compute_every_cell_once(tmp_path):
    cfg = _probe_config(tmp_path)
    db = tmp_path / "shared.sqlite"
    Store.open(db).close()
    procs = [_compare_in(tmp_path, cfg, db) for _ in range(2)]
    deadline = time.time() + 180
    while True:  # open the gate once both sweeps hold a claim: both are running cells
        with Store.open(db, readonly=True) as store:
            holders = {c["run_id"] for c in store.claims()}
        if len(holders) == 2:
            break
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.time() < deadline, "the two sweeps never ran at the same time"
        time.sleep(0.05)
    (tmp_path / "go").write_text("")
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    with Store.open(db, readonly=True) as store:
        rows, runs, claims = store.rows(), store.runs(), store.claims()
    assert claims == []
    assert len(rows) == 16 and {r["seed"] for r in rows} == set(range(1, 17))
    computed = [line.split() for line in (tmp_path / "computed.log").read_text().splitlines()]
    assert sorted(int(seed) for seed, _, _ in computed) == list(range(1, 17))  # each once
    # every stored row came from the sweep whose run id it carries, through that sweep's child
    by_seed = {int(seed): (int(pid), int(ppid)) for seed, pid, ppid in computed}
    parents: dict = {}
    for r in rows:
        pid, ppid = by_seed[r["seed"]]
        assert r["worker"].endswith(f":{pid}")
        parents.setdefault(r["run_id"], set()).add(ppid)
    assert sorted(parents) == sorted(run["id"] for run in runs)
    assert sorted(ppid for ppids in parents.values() for ppid in ppids) == sorted(
        p.pid for p in procs)  # one sweep per run id, and both sweeps stored cells
    counts = Counter(r["run_id"] for r in rows)
    for out, _ in outs:  # each summary counts what that sweep stored itself
        m = re.search(r"16 cells: 0 already stored, (\d+) run \(converged (\d+)\), "
                      r"(\d+) stored by another sweep", out)
        assert m, out
        assert int(m.group(1)) == int(m.group(2)) and int(m.group(1)) + int(m.group(3)) == 16
    assert sorted(int(re.search(r"0 already stored, (\d+) run", o).group(1)) for o, _ in outs) \
        == sorted(counts.values())


def test_a_sweep_takes_over_a_claim_whose_lease_expired(tmp_path):
    cfg = _probe_config(tmp_path, seeds="1-4", sleep=0.0)
    (tmp_path / "go").write_text("")
    sys.path.insert(0, str(tmp_path))
    config = parse_config(cfg.read_text(), name="probe")
    keys = [c.key for c in config.cells()]
    store = Store.open(tmp_path / "r.sqlite")
    now = time.time()
    for key, until in ((keys[0], now - 5), (keys[1], now + 3)):  # expired, and expiring soon
        store.conn.execute(
            "INSERT INTO claims (experiment, game, params, seed, method, options, run_id, "
            "claimant, host, pid, claimed_at, lease_until) VALUES (?, ?, ?, ?, ?, ?, 0, "
            "'run 0 elsewhere:1', 'elsewhere', 1, ?, ?)", (*key, now - 60, until))
    summary = run_sweep(config, store, workers=1, progress=False, argv=["test"], lease=1.0)
    rows = store.rows()
    assert store.claims() == []
    store.close()
    assert summary.ran == summary.computed == 4 and summary.taken_over == 2
    assert sorted(r["seed"] for r in rows) == [1, 2, 3, 4]
    assert {r["run_id"] for r in rows} == {summary.run_id}
    assert "2 taken over from expired claims" in summary.line()
    computed = (tmp_path / "computed.log").read_text().splitlines()
    assert sorted(int(line.split()[0]) for line in computed) == [1, 2, 3, 4]


def test_leases_are_renewed_while_a_cell_runs(tmp_path):
    cfg = _probe_config(tmp_path, seeds="1", sleep=3.0)
    (tmp_path / "go").write_text("")
    sys.path.insert(0, str(tmp_path))
    config = parse_config(cfg.read_text(), name="probe")
    key = config.cells()[0].key
    path = tmp_path / "r.sqlite"
    Store.open(path).close()
    out = {}

    def sweep():
        with Store.open(path) as store:
            out["summary"] = run_sweep(config, store, workers=1, progress=False, argv=["t"],
                                       lease=1.0)

    thread = threading.Thread(target=sweep)
    thread.start()
    thief = Store.open(path)
    stolen, seen = [], 0
    while thread.is_alive():
        held = thief.claims()
        if held:
            seen += 1
            stolen.append(thief.claim_next([key], claimant="thief", run_id=None, lease=60).key)
        time.sleep(0.2)
    thread.join()
    thief.close()
    assert seen >= 5 and stolen == [None] * seen  # held for three 1 s leases, never lost
    assert out["summary"].ran == 1 and out["summary"].taken_over == 0


def _daemonic() -> bool:  # runs on the Dask worker
    import multiprocessing

    return bool(multiprocessing.current_process().daemon)


def test_a_default_daemonic_dask_worker_runs_methods_that_start_processes(tmp_path):
    distributed = pytest.importorskip("distributed")
    config = parse_config(GUARD_CONFIG, name="guard",
                          methods=["test-fork", "test-random", "test-die", "test-sleep"])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert set(client.run(_daemonic).values()) == {True}  # the default: a daemonic worker
        workers_before = set(client.scheduler_info()["workers"])
        with Store.open(tmp_path / "dask.sqlite") as store:
            summary = run_sweep(config, store, client=client, progress=False, argv=["test"])
            rows = {(r["experiment"], r["params"], r["seed"], r["method"]): r
                    for r in store.rows()}
        assert set(client.scheduler_info()["workers"]) == workers_before  # never restarted
    assert summary.ran == 10
    forked = [r for k, r in rows.items() if k[3] == "test-fork"]
    assert len(forked) == 4 and {r["status"] for r in forked} == {"converged"}
    died = rows[("stuck", "{}", 3, "test-die")]
    assert died["status"] == "error" and "worker process died" in died["error"]
    stuck = rows[("stuck", "{}", 3, "test-sleep")]
    assert stuck["status"] == "time_limit" and "killed after 2 s" in stuck["error"]


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path):
    import io

    from stackopt.comparisons.runner import Progress, SweepSummary

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    config = parse_config(GUARD_CONFIG, name="guard", methods=["test-random", "test-sleep"])
    cell = config.cells()[0]
    row = {"status": "converged", "cell_time_s": 0.25}
    summary = SweepSummary(total=8, skipped=2)
    plain, term = io.StringIO(), Terminal()
    for stream in (plain, term):
        bar = Progress(True, total=8, done=2, name="guard", stream=stream)
        bar.cell(cell, row, stored=True, summary=summary)
        bar.cell(cell, None, stored=False, summary=summary)
        bar.close()
    assert plain.getvalue().splitlines() == [
        "[3/8] guard budget=0.5 seed 1 test-random: converged in 0.25 s",
        "[4/8] guard budget=0.5 seed 1 test-random: stored by another sweep"]
    assert "4/8" in term.getvalue() and "[3/8]" not in term.getvalue()  # tqdm's bar instead
    quiet = io.StringIO()
    Progress(False, total=8, done=2, name="guard", stream=quiet).cell(cell, row, stored=True,
                                                                       summary=summary)
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError, match="progress must be True, False, 'auto', 'bar' or 'lines', "
                                         "got 'fancy'"):
        Progress("fancy", total=8, done=2, name="guard")


def test_run_sweep_rejects_bad_leases(tmp_path):
    config = parse_config(GUARD_CONFIG, name="guard", methods=["test-random", "test-sleep"])
    with Store.open(tmp_path / "r.sqlite") as store:
        for bad in (0, -1.0, float("nan"), True, "30"):
            with pytest.raises(ValueError, match="lease must be a positive number of seconds"):
                run_sweep(config, store, progress=False, lease=bad)
        assert store.runs() == [] and store.rows() == []  # refused before anything ran
