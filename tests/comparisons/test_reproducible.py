"""The same answers on a quiet and on a busy machine: deterministic budgets, honest time limits,
and comparing two results databases cell by cell."""
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_harness_toys  # noqa: E402  (the toy game and methods, and a store filler)

from stackopt import Status, solve  # noqa: E402
from stackopt.comparisons.config import load_config  # noqa: E402
from stackopt.comparisons.runner import row_numbers, run_cell  # noqa: E402
from stackopt.comparisons.store import Store  # noqa: E402
from stackopt.models import build_game  # noqa: E402


def test_a_method_that_returns_past_its_limit_says_time_limit():
    game = build_game("harness_toy", 1)
    late = solve(game, "test-sleep", 1, time_limit=0.3, sleep=0.6)
    assert late.status is Status.TIME_LIMIT
    assert "past its limit of 0.3 s (status converged before that)" in late.message
    assert late.leader_values == {"p": 0.0}  # the answer is kept, with its status
    on_time = solve(game, "test-sleep", 1, time_limit=30, sleep=0.0)
    assert on_time.status is Status.CONVERGED and "past its limit" not in on_time.message
    crashed = solve(game, "test-crash", 1, time_limit=30)
    assert crashed.status is Status.ERROR  # a status that says why it stopped otherwise stays


def test_an_equilibrium_solve_stopped_by_its_own_clock_makes_the_result_time_limit():
    from games import make_duopoly

    cut = solve(make_duopoly(), "slsqp", 0, oracle_time_limit=1e-9)  # every oracle call cut
    assert cut.oracle_solves["method"]["clock_stops"] >= 1
    assert cut.status is Status.TIME_LIMIT
    assert "ended at the oracle's time limit" in cut.message
    fine = solve(make_duopoly(), "slsqp", 0)
    assert fine.oracle_solves["method"]["clock_stops"] == 0
    assert fine.oracle_solves["scoring"]["clock_stops"] == 0
    assert fine.status is Status.CONVERGED


def _quick_cells(methods):
    config = load_config("quick", experiments=["nfg"], seeds="1", methods=methods)
    return [c for c in config.cells() if dict(c.params)["budget"] == 1.0]


def test_quick_cells_do_not_depend_on_a_generous_or_a_tight_time_limit():
    """Each cell stops on its own budget: with 10 times the time it needs here or with 3600 s,
    the stored numbers (status, objective, violation, residual, leader values) are identical."""
    cells = _quick_cells(["gradient", "implicit-ipopt", "mpec-ipopt", "mpec-scip"])
    assert sorted(c.method for c in cells) == ["gradient", "implicit-ipopt", "mpec-ipopt",
                                               "mpec-scip"]
    for cell in cells:
        generous = run_cell(dataclasses.replace(cell, time_limit=3600.0))
        assert generous["status"] not in ("time_limit", "error"), generous["message"]
        tight = max(10 * generous["cell_time_s"], 5.0)
        again = run_cell(dataclasses.replace(cell, time_limit=tight))
        assert row_numbers(again) == row_numbers(generous), cell.method


def test_the_quick_config_stops_every_cell_on_a_budget():
    config = load_config("quick")
    cells = config.cells()
    assert min(c.time_limit for c in cells) >= 300  # a safety net, not a stopping rule
    scip = [c for c in cells if c.method == "mpec-scip"]
    assert scip and all(dict(c.options)["scip_params"]["limits/nodes"] > 0 for c in scip)
    assert {c.experiment for c in scip} == {"nfg", "cyber", "market", "library"}


DIFF_CONFIG = """
plugins = ["test_harness_toys"]
seeds = [1, 2]
time_limit = 30
[experiments.toy]
game = "harness_toy"
[experiments.toy.methods.test-random]
[experiments.toy.methods.test-exact]
"""


def _fill(path):
    return test_harness_toys.fill_store(path, DIFF_CONFIG, "toydiff")


def test_compare_dbs_finds_identical_and_differing_cells(tmp_path, capsys):
    from stackopt.cli import main

    a, b = _fill(tmp_path / "a.sqlite"), _fill(tmp_path / "b.sqlite")
    assert main(["compare-dbs", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "4 cells in both: 4 identical, 0 differ" in out and "only in A: 0, only in B: 0" in out
    with Store.open(b) as store:
        store.conn.execute("UPDATE cells SET leader_objective = leader_objective + 1e-12, "
                           "status = 'time_limit' WHERE method = 'test-random' AND seed = 2")
        store.conn.execute("DELETE FROM cells WHERE method = 'test-exact' AND seed = 1")
        store.conn.commit()
    assert main(["compare-dbs", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "3 cells in both: 2 identical, 1 differ" in out and "only in A: 1, only in B: 0" in out
    assert "of the 1 that differ, 1 stopped at the time limit in A or B" in out
    assert "toy seed 2 test-random: status converged vs time_limit; leader_objective" in out
    assert main(["compare-dbs", str(a), str(b), "--rtol", "1e-9"]) == 1  # the status still differs
    with Store.open(b) as store:  # b now holds a cell less and the same numbers otherwise
        store.conn.execute("DELETE FROM cells WHERE method = 'test-random' AND seed = 2")
        store.conn.commit()
    assert main(["compare-dbs", str(a), str(b)]) == 1
    assert main(["compare-dbs", str(a), str(b), "--common"]) == 0
    assert "2 cells in both: 2 identical, 0 differ" in capsys.readouterr().out
    assert main(["compare-dbs", str(a), str(tmp_path / "none.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err
