"""The reference experiments' instances: loading, builders, and their recorded initial objectives.

The recorded initial objective is the leader's objective at zero subsidy /
reimbursement / contract, at the equilibrium the reference's oracle reached.

* NFG: the QRE is unique, so stackopt's exact equilibrium must give the
  recorded value up to the reference oracle's own error. That oracle takes
  damped best responses computed by SLSQP (default ``ftol`` 1e-6) from a random
  start and does not reproduce itself beyond the fourth decimal: its recorded
  evaluations of the same zero subsidy (``qre/exp/constrained_diffmulti.csv``,
  budget-0 rows and the initial column) differ by up to 5.6e-4 (seed 2:
  15.07985 and 15.07930); rerun in float64 from four random starts it spreads
  by up to 1.9e-4. Hence the 5e-4 tolerance below, not the printed digits.
* SSG: the defenders' game has several equilibria and the reference's oracle
  starts them from all-zero coverage; stackopt scores from seeded random starts
  and reaches others. The reference's dynamics, rerun here in NumPy, reproduce
  the recorded value to float32 precision.
* Cyber: the zero contract earns 0 at any equilibrium.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize as sopt

import stackopt
from stackopt.cli import main
from stackopt.models import build_game, game_spec
from stackopt.models import reference as ref

NFG_TOL = 5e-4  # the reference oracle's own spread at one strategy (see the module docstring)


# ---------------------------------------------------------------- loader
def test_every_listed_seed_has_an_instance_and_a_recorded_row():
    files = sorted(p.name for p in ref.DATA.glob("*.npz"))
    listed = sorted(f"{d}_seed{s}.npz" for d, seeds in ref.REFERENCE_SEEDS.items() for s in seeds)
    assert files == listed
    for domain, seeds in ref.REFERENCE_SEEDS.items():
        for s in seeds:
            arrays = ref.load_instance(domain, s)
            assert {k: v.shape for k, v in arrays.items()} == ref.ARRAYS[domain]
            row = ref.recorded(domain, s)
            assert row is not None and row.domain == domain and row.seed == s
    assert ref.recorded("ssg", 37) is None  # no instance, no row
    assert {r.parameter for r in ref.recorded_results().values() if r.domain == "nfg"} == {2.0}
    assert {r.parameter for r in ref.recorded_results().values() if r.domain == "ssg"} == {1.0}
    assert {r.parameter for r in ref.recorded_results().values() if r.domain == "cyber"} == {0.5}


def test_instances_follow_the_reference_distributions():
    for s in ref.REFERENCE_SEEDS["nfg"]:
        P = ref.load_instance("nfg", s)["payoffs"]
        assert P.min() >= 0 and P.max() < 10
    for s in ref.REFERENCE_SEEDS["cyber"]:
        d = ref.load_instance("cyber", s)
        assert np.all(np.diag(d["W"]) >= 1) and np.all((d["L"] >= 50) & (d["L"] <= 100))
        assert np.all((d["c"] >= 5) & (d["c"] <= 10))
    for s in ref.REFERENCE_SEEDS["ssg"]:
        d = ref.load_instance("ssg", s)
        assert d["coverage"].sum(axis=1).tolist() == [50] * 5
        assert np.array_equal(d["defender_payoffs"] != 0, d["coverage"])  # 0 off a region
        assert np.array_equal(d["target_payoffs"][1], d["leader_payoffs"])
        assert d["resources"].tolist() == [10.0] * 5


def test_loaded_arrays_are_copies():
    a = ref.load_instance("nfg", 1)
    a["payoffs"][:] = 0
    assert ref.load_instance("nfg", 1)["payoffs"].max() > 0


@pytest.mark.parametrize("domain, seed", [("nfg", 6), ("cyber", 0), ("ssg", 37), ("ssg", "36"),
                                          ("nfg", True)])
def test_a_seed_without_an_instance_is_refused(domain, seed):
    with pytest.raises(ValueError, match=rf"reference_seed must be one of .* for '{domain}'"):
        ref.load_instance(domain, seed)
    with pytest.raises(ValueError, match="reference_seed must be one of"):
        build_game(domain, reference_seed=seed)


def test_unknown_domain_is_refused():
    with pytest.raises(ValueError, match="no reference instances for domain 'lq'"):
        ref.load_instance("lq", 1)


# ---------------------------------------------------------------- builders
def test_builders_take_the_instance_data():
    g = build_game("nfg", seed=9, reference_seed=2, budget=2.0)
    assert np.array_equal(g.data["payoffs"], ref.load_instance("nfg", 2)["payoffs"])
    g = build_game("cyber", seed=9, reference_seed=4, risk_aversion=0.5)
    d = ref.load_instance("cyber", 4)
    assert np.array_equal(g.data["interconnection"], d["W"])
    assert np.array_equal(g.data["losses"], d["L"]) and np.array_equal(g.data["costs"], d["c"])
    g = build_game("ssg", seed=9, reference_seed=40)
    d = ref.load_instance("ssg", 40)
    for key in ("attractiveness", "leader_payoffs", "defender_payoffs", "coverage"):
        assert np.array_equal(g.data[key], d[key])
    assert g.data["resources"] == 10.0
    assert len(g.structure().leader_variables) == 250
    g = build_game("ssg", reference_seed=40, reimburse="all")
    assert len(g.structure().leader_variables) == 500


@pytest.mark.parametrize("game, params, match", [
    ("nfg", dict(players=2), r"reference_seed=1 is an instance with players=3 and actions=10, "
                             r"got players=2, actions=10"),
    ("nfg", dict(payoffs=np.zeros((3, 10, 10, 10))), "give either payoffs or reference_seed"),
    ("cyber", dict(customers=4), "reference_seed=1 is an instance with customers=10, got customers=4"),
    ("cyber", dict(losses=np.full(10, 60.0)), "give either reference_seed or losses, not both"),
    ("ssg", dict(targets=50), r"reference_seed=36 is an instance with targets=100 and defenders=5, "
                              r"got targets=50, defenders=5"),
    ("ssg", dict(coverage=np.ones((5, 100), bool)), "give either reference_seed or coverage, not both"),
    ("ssg", dict(resources=5.0), r"reference_seed=36 fixes resources=10, got resources=5.0"),
])
def test_reference_seed_with_conflicting_parameters_is_refused(game, params, match):
    seed = ref.REFERENCE_SEEDS[game][0]
    with pytest.raises(ValueError, match=match):  # the builder itself: nfg's payoffs are Python-only
        game_spec(game).builder(reference_seed=seed, **params)


# -------------------------------------------------- recorded initial objectives
@pytest.mark.parametrize("seed", ref.REFERENCE_SEEDS["nfg"])
def test_nfg_initial_objective_is_the_recorded_one(seed):
    game = build_game("nfg", reference_seed=seed, budget=2.0)
    r = stackopt.solve(game, method="initial")
    assert r.equilibrium_residual <= 1e-6
    recorded = ref.recorded("nfg", seed).initial_objective
    assert r.leader_objective == pytest.approx(recorded, abs=NFG_TOL)


@pytest.mark.parametrize("seed", ref.REFERENCE_SEEDS["cyber"])
def test_cyber_initial_objective_is_the_recorded_one(seed):
    game = build_game("cyber", reference_seed=seed, risk_aversion=0.5)
    r = stackopt.solve(game, method="initial")
    assert r.leader_objective == ref.recorded("cyber", seed).initial_objective == 0.0
    assert r.constraint_violation <= 1e-9  # no contract: with and without insurance agree


def _ssg_reference_forward(d, omega=5.0, tol=1e-4, max_iterations=100):
    """The reference's SSG oracle in NumPy: damped (0.5) simultaneous SLSQP best responses
    from all-zero coverage, stopped when the summed step norm is below ``tol``."""
    mask, a, U = d["coverage"], d["attractiveness"], d["defender_payoffs"]
    n, T = mask.shape
    res = d["resources"]

    def parts(X):
        keep = 1.0 - X  # X is (n, T), 0 off the regions
        v = np.prod(keep, axis=0)
        w = np.exp(a + omega * v - np.max(a + omega * v))
        return keep, v, w / w.sum()

    def utility_and_grad(xi, i, X):
        X = X.copy()
        X[i, mask[i]] = xi
        keep, v, p = parts(X)
        u = float(p @ (v * U[i]))
        du_dv = p * (U[i] * (1.0 + omega * v) - omega * u)
        rest = np.prod(np.delete(keep, i, axis=0), axis=0)
        return -u, (rest * du_dv)[mask[i]]  # minimise -u

    X = np.zeros((n, T))
    for _ in range(max_iterations):
        new = np.zeros_like(X)
        for i in range(n):
            out = sopt.minimize(utility_and_grad, X[i, mask[i]], args=(i, X), jac=True,
                                method="SLSQP", bounds=[(0.0, 1.0)] * int(mask[i].sum()),
                                constraints=[{"type": "eq", "fun": lambda y, r=res[i]: r - y.sum()}])
            new[i, mask[i]] = out.x
        step = sum(np.linalg.norm(new[i] - X[i]) for i in range(n))
        if step < tol:
            break
        X = 0.5 * X + 0.5 * new
    _, v, p = parts(X)
    return float(p @ (v * d["leader_payoffs"]))


def test_ssg_initial_objective_at_the_reference_equilibrium(tmp_path):
    """The instance is right: the reference's own dynamics give the recorded value (float32
    digits). stackopt's scoring reaches other equilibria of the same game from its
    random starts, a few thousandths away."""
    seed = 36
    recorded = ref.recorded("ssg", seed).initial_objective
    # in a child with one BLAS thread: on a shared machine SLSQP's small BLAS calls run
    # ten times slower with a thread pool
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_reference as t; "
            f"print(t._ssg_reference_forward(t.ref.load_instance('ssg', {seed})))")
    env = {**os.environ, **{v: "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "MKL_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__)], env=env,
                         capture_output=True, text=True, check=True,
                         cwd=tmp_path)  # outside the checkout: the installed package is imported
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(recorded, abs=2e-6)
    game = build_game("ssg", reference_seed=seed, budget=1.0)
    ev = stackopt.evaluate(game, np.zeros(len(game.structure().leader_variables)), seed=0,
                           samples=1)
    assert ev.equilibrium_residual <= 1e-6
    assert ev.leader_objective == pytest.approx(recorded, abs=0.05)


# ---------------------------------------------------------------- command line
def test_command_line_takes_a_reference_seed(capsys):
    assert main(["solve", "nfg", "--reference-seed", "3", "--budget", "2", "--method", "initial",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["leader_objective"] == pytest.approx(ref.recorded("nfg", 3).initial_objective,
                                                    abs=NFG_TOL)
    assert main(["solve", "nfg", "--reference-seed", "7", "--method", "initial"]) == 2
    err = capsys.readouterr().err
    assert "reference_seed must be one of [1, 2, 3, 4, 5] for 'nfg'" in err and "got 7" in err


# ---------------------------------------------------------------- the config
def test_reference_config_runs_the_recorded_settings_on_every_instance():
    from stackopt.comparisons.config import load_config
    config = load_config("reference")
    exps = {e.name: e for e in config.experiments}
    assert sorted(exps) == ["cyber", "nfg", "ssg", "ssg-all"]
    for e in exps.values():
        domain = e.game
        assert e.grid["reference_seed"] == list(ref.REFERENCE_SEEDS[domain])
        parameter = ref.PARAMETER[domain]
        assert e.grid[parameter] == [ref.recorded(domain, e.grid["reference_seed"][0]).parameter]
        assert {"gradient", "mpec-ipopt"} <= set(e.methods)
        assert e.methods["gradient"] == {}  # the method's defaults and the game's recommendations
    assert exps["ssg"].grid["reimburse"] == ["coverable"] and exps["ssg-all"].grid["reimburse"] == ["all"]
    for e in (exps["ssg"], exps["ssg-all"]):
        assert e.grid["budget_kind"] == ["reimbursement"]
    assert len(config.cells()) == 3 * (5 + 5 + 9 + 9)  # gradient, implicit-ipopt, mpec-ipopt


# ---------------------------------------------------------------- per-seed table
TABLE_CONFIG = """
seeds = [0]
time_limit = 120
[experiments.nfg]
game = "nfg"
[experiments.nfg.grid]
reference_seed = [1, 2]
budget = 2.0
[experiments.nfg.methods.initial]
[experiments.nfg-b3]
game = "nfg"
[experiments.nfg-b3.grid]
reference_seed = [1]
budget = 3.0
[experiments.nfg-b3.methods.initial]
[experiments.cyber]
game = "cyber"
[experiments.cyber.grid]
reference_seed = [1]
risk_aversion = 0.5
[experiments.cyber.methods.initial]
"""


@pytest.fixture(scope="module")
def table_db(tmp_path_factory):
    """A store filled in-process: the initial strategy on three reference instances, a
    failed cell, and a cyber contract whose premium breaks one customer's IR by 5."""
    from stackopt.comparisons.config import parse_config
    from stackopt.comparisons.runner import run_cell
    from stackopt.comparisons.store import Store

    config = parse_config(TABLE_CONFIG, name="reftable")
    path = tmp_path_factory.mktemp("store") / "results.sqlite"
    with Store.open(path) as store:
        run = store.start_run(config_name=config.name, config_text=config.text, argv=[],
                              scheduler="in-process", versions={}, machine={})
        for cell in config.cells():
            row = run_cell(cell)
            row["run_id"] = run
            assert store.insert(row)
            if cell.experiment == "cyber":
                # a premium moves no effort: revenue 5, customer 0 worse off by 5
                priced = dict(row, method="test-premium", leader_objective=5.0,
                              leader_values={**row["leader_values"], "premium[0]": 5.0})
                assert store.insert(priced)
            if cell.experiment == "nfg" and dict(cell.params)["reference_seed"] == 2:
                assert store.insert(dict(row, method="test-failed", status="error",
                                         leader_objective=None, constraint_violation=None))
        for method, objective, violation in (("test-ahead", -3.0, 0.0), ("test-over", -2.0, 0.01)):
            assert store.insert(dict(  # made by hand: no security-game solve in this test
                run_id=run, experiment="ssg", game="ssg", seed=0, method=method, options="{}",
                params=json.dumps({"budget": 1.0, "reference_seed": 36, "reimburse": "all"}),
                sense="maximize", status="converged", leader_objective=objective,
                constraint_violation=violation, initial_objective=-3.81))
    return path


def _table(capsys, *argv):
    from stackopt.comparisons.reference_table import main as table_main
    code = table_main(list(argv))
    return code, capsys.readouterr()


def _line(text, experiment, seed):
    block = text.split(f"{experiment}: ", 1)[1].split("\n\n")[1]
    return next(ln for ln in block.splitlines() if ln.startswith(f"| {seed} |"))


def test_table_sets_each_method_beside_the_recorded_result(table_db, capsys):
    from stackopt.comparisons.store import Store
    code, out = _table(capsys, str(table_db))
    assert code == 0, out.err
    text = out.out
    with Store.open(table_db, create=False) as store:
        stored = {(r["experiment"], json.loads(r["params"])["reference_seed"], r["method"]): r
                  for r in store.rows()}
    line = _line(text, "nfg", 1).split(" | ")
    rec = ref.recorded("nfg", 1)
    assert line[1] == f"{rec.initial_objective:.4f}"
    assert line[2] == f"{rec.objective:.4f}" and line[3] == "0"
    initial = stored[("nfg", 1, "initial")]["leader_objective"]
    assert line[4] == f"{initial:.4f}"  # stackopt's scored initial objective
    assert line[5] == f"{initial:.4f}" and line[7] == "converged"
    assert line[8:] == ["-", "-", "not run |"]  # test-failed ran on seed 2 only
    line = _line(text, "nfg", 2).split(" | ")
    assert line[8:] == ["-", "-", "error |"]
    # the initial strategy never beats the reference's optimised one
    assert "initial: mean" in text and "mean gain over the initial +0.0000" in text
    assert "on 0 of 2 seeds" in text
    shortfall = max(ref.recorded('nfg', s).objective - stored[('nfg', s, 'initial')]['leader_objective']
                    for s in (1, 2))
    assert f"largest shortfall {shortfall:.4f}" in text


def test_table_sums_the_ir_violations_of_cyber_insurance(table_db, capsys):
    text = _table(capsys, str(table_db), "--experiment", "cyber")[1].out
    assert "nfg" not in text and "summed IR violation" in text
    line = _line(text, "cyber", 1).split(" | ")
    rec = ref.recorded("cyber", 1)
    assert line[2] == f"{rec.objective:.4f}" and line[3] == f"{rec.violation:.2g}"
    assert line[5] == "0.0000" and float(line[6]) <= 1e-9  # initial: no contract, no violation
    assert line[8] == "5.0000" and float(line[9]) == pytest.approx(5.0)  # the premium's breach


def test_table_counts_only_feasible_results_as_better(table_db, capsys):
    text = _table(capsys, str(table_db), "--experiment", "ssg")[1].out
    assert "note: the reference reimbursed every defender-target pair" in text
    line = _line(text, "ssg", 36).split(" | ")
    rec = ref.recorded("ssg", 36)
    assert line[1:5] == [f"{rec.initial_objective:.4f}", f"{rec.objective:.4f}", "0", "-3.8100"]
    gain = rec.objective - rec.initial_objective
    assert f"reference: mean {rec.objective:.4f}, mean gain over its initial {gain:+.4f}, over 1 seeds" in text
    assert ("test-ahead: mean -3.0000, mean gain over the initial +0.8100; better than the "
            "reference with violation <= 1e-06 on 1 of 1") in text
    assert "test-over: mean -2.0000, mean gain over the initial +1.8100; better than the " \
           "reference with violation <= 1e-06 on 0 of 1" in text
    text = _table(capsys, str(table_db), "--experiment", "ssg", "--feasibility", "0.1")[1].out
    assert "reference with violation <= 0.1 on 1 of 1" in text.split("test-over")[1]


def test_table_leaves_the_reference_out_where_it_recorded_another_budget(table_db, capsys):
    text = _table(capsys, str(table_db), "--experiment", "nfg-b3")[1].out
    line = _line(text, "nfg-b3", 1).split(" | ")
    assert line[1:4] == ["-", "-", "-"] and "budget=3.0" in text
    assert "better than the reference" not in text


def test_table_errors(tmp_path, table_db, capsys):
    code, out = _table(capsys, str(tmp_path / "missing.sqlite"))
    assert code == 2 and "does not exist" in out.err
    code, out = _table(capsys, str(table_db), "--experiment", "nothing")
    assert code == 2 and "holds no cells of reference instances" in out.err
    with pytest.raises(SystemExit):
        _table(capsys, str(table_db), "--feasibility", "-1")
    assert "expected a number >= 0, got '-1'" in capsys.readouterr().err
