"""MPEC modes x solvers: the registry, option checks, honest statuses, SCIP in a subprocess."""
import json
import multiprocessing as mp
import sys

import pyomo.environ as pyo
import pytest
from test_mpec import bard, cournot, run

import stackopt
from stackopt import StackelbergGame, Status
from stackopt.methods import get_method, method_config
from stackopt.methods.mpec import MODES, SOLVERS
from stackopt.methods.mpec.solvers import scip as scip_solver
from stackopt.methods.mpec.solvers.scip_process import _finite


def unbounded_follower():
    """Leader x in [0, 1]; the follower minimises (x - 2) y over y >= 0, unbounded below
    for every x < 2: no follower optimum, no KKT point, at any leader strategy."""
    g = StackelbergGame("unbounded")
    m = g.model
    m.x = pyo.Var(bounds=(0, 1), initialize=0.5)
    f = g.add_follower("f")
    f.y = pyo.Var(bounds=(0, None), initialize=0.0)
    f.obj = pyo.Objective(expr=(m.x - 2) * f.y)
    g.set_leader([m.x], (m.x - 0.3) ** 2 + 0.01 * f.y, sense=pyo.minimize)
    return g


def shifted(a=2.0, x_ub=5.0):
    """min (x - a)^2 + y over x in [0, x_ub], y = argmin (y - x)^2 over [0, 10]: y = x, so
    x = a - 1/2 (or x_ub if smaller)."""
    g = StackelbergGame("shifted")
    m = g.model
    m.a = pyo.Param(mutable=True, initialize=a)
    m.x = pyo.Var(bounds=(0, x_ub), initialize=0.0)
    f = g.add_follower("f")
    f.y = pyo.Var(bounds=(0, 10))
    f.obj = pyo.Objective(expr=(f.y - m.x) ** 2)
    g.set_leader([m.x], (m.x - m.a) ** 2 + f.y, sense=pyo.minimize)
    return g


# ------------------------------------------------------------------ registry
def test_modes_and_solvers_are_registered_with_aliases():
    assert MODES["scholtes"] is MODES["regularization"]
    assert MODES["fortuny-amat-mccarl"] is MODES["disjunctive"] is MODES["big-m"]
    assert set(SOLVERS) >= {"ipopt", "scip"}
    assert method_config("mpec", {"mode": "scholtes"}).mode == "regularization"
    assert method_config("mpec", {"mode": "big-m"}).mode == "disjunctive"
    # the presets keep only their own options
    assert "starts" not in get_method("mpec-scip").CONFIG and "gap_tol" in get_method("mpec-scip").CONFIG
    assert "gap_tol" not in get_method("mpec-ipopt").CONFIG and "starts" in get_method("mpec-ipopt").CONFIG


def test_mpec_with_mode_and_solver_matches_the_presets():
    via_mode = run("mpec", bard(), time_limit=60, mode="disjunctive")  # its solver: scip
    assert via_mode.status is Status.OPTIMAL and via_mode.claimed_objective == pytest.approx(5.0, rel=1e-5)
    local = run("mpec", bard(), mode="regularization", solver="ipopt")
    assert local.status is Status.CONVERGED and local.claimed_objective == pytest.approx(5.0, rel=1e-6)


def test_regularization_solved_globally_by_scip():
    out = run("mpec", bard(), time_limit=60, mode="regularization", solver="scip")
    assert out.status is Status.OPTIMAL
    assert out.claimed_objective == pytest.approx(5.0, rel=1e-5)
    assert out.bound <= out.claimed_objective + 1e-9
    assert out.leader == pytest.approx([1.0], abs=1e-3)
    assert "regularization at eps=1e-08" in out.message


def test_impossible_choices_are_refused():
    with pytest.raises(ValueError, match=r"(?s)option 'mode'.*unknown mode 'convex-hull'"):
        method_config("mpec", {"mode": "convex-hull"})
    with pytest.raises(ValueError, match=r"(?s)option 'solver'.*unknown solver 'gurobi'"):
        method_config("mpec", {"solver": "gurobi"})
    with pytest.raises(ValueError, match="mode 'disjunctive' cannot be solved by solver 'ipopt': "
                                         "it writes binary variables and SOS1 sets"):
        run("mpec", bard(), mode="disjunctive", solver="ipopt")
    with pytest.raises(ValueError, match="option 'starts' does not apply to mode 'disjunctive' "
                                         "with solver 'scip'"):
        run("mpec", bard(), mode="disjunctive", starts=2)
    with pytest.raises(ValueError, match="multiplier_bound applies to formulation='bigm', not 'sos1'"):
        run("mpec-scip", bard(), formulation="sos1", multiplier_bound=10.0)
    # through solve(): a result with the reason, no exception
    res = stackopt.solve(bard(), "mpec", mode="disjunctive", solver="ipopt")
    assert res.status is Status.ERROR and "cannot be solved by solver 'ipopt'" in res.message


@pytest.mark.parametrize("option,value", [
    ("eps_initial", float("nan")), ("eps_final", float("inf")), ("starts", True),
    ("starts", 2.5), ("polish", 1), ("tol", "small"), ("ipopt_options", [("tol", 1)]),
])
def test_non_finite_and_boolean_option_values_are_refused(option, value):
    with pytest.raises(ValueError, match=f"option '{option}' of method 'mpec-ipopt'"):
        method_config("mpec-ipopt", {option: value})


@pytest.mark.parametrize("option,value", [("gap_tol", float("nan")), ("kill_grace", True),
                                          ("link_arguments", "yes"), ("scip_params", 3)])
def test_scip_option_values_are_refused(option, value):
    with pytest.raises(ValueError, match=f"option '{option}' of method 'mpec-scip'"):
        method_config("mpec-scip", {option: value})


# ------------------------------------------------------------------ domains
def test_integer_variables_are_honoured_by_scip_and_refused_for_ipopt():
    """Leader x integer in [0, 3]; y = x; min (x - 1.4)^2: x = 1, value 0.16 (continuous: 1.4)."""
    g = shifted(a=1.4, x_ub=3.0)
    g.model.x.domain = pyo.Integers
    g.set_leader([g.model.x], (g.model.x - g.model.a) ** 2, sense=pyo.minimize)
    with pytest.raises(ValueError, match="leader variable 'x' has the domain Integers, which Ipopt"):
        run("mpec-ipopt", g)
    out = run("mpec-scip", g, time_limit=60)
    assert out.status is Status.OPTIMAL
    assert out.leader == pytest.approx([1.0]) and out.claimed_objective == pytest.approx(0.16, rel=1e-6)
    h = shifted()
    h.model.f.y.domain = pyo.Binary
    for method in ("mpec-ipopt", "mpec-scip"):
        with pytest.raises(ValueError, match="variable 'f.y' of follower 'f' has the domain Binary"):
            run(method, h)


@pytest.mark.parametrize("method", ["mpec-ipopt", "mpec-scip"])
def test_edits_of_the_model_are_read_at_every_solve(method):
    g = shifted()
    first = run(method, g, time_limit=60)
    assert first.leader == pytest.approx([1.5], abs=1e-4)
    g.model.a = 3.0  # a Param value
    fresh = run(method, shifted(a=3.0), time_limit=60)
    again = run(method, g, time_limit=60)
    assert again.leader == pytest.approx([2.5], abs=1e-4) == fresh.leader
    assert again.claimed_objective == pytest.approx(fresh.claimed_objective, rel=1e-6)
    g.model.x.setub(1.0)  # a bound
    bounded = run(method, g, time_limit=60)
    assert bounded.leader == pytest.approx([1.0], abs=1e-6)
    assert bounded.claimed_objective == pytest.approx(run(method, shifted(3.0, 1.0), time_limit=60)
                                                      .claimed_objective, rel=1e-6)


# ------------------------------------------------------------------ statuses
def test_unbounded_follower_is_not_called_infeasible_by_ipopt():
    out = run("mpec-ipopt", unbounded_follower())
    assert out.status is Status.NOT_CONVERGED
    assert "no KKT point of follower 'f'" in out.message and "unbounded" in out.message
    assert 0.0 <= out.leader[0] <= 1.0
    assert out.claimed_objective is None  # no objective claimed from a failed solve
    # a failed solve's point is no answer: no NLP of any start was solved, so the leader's
    # initial values are returned
    assert out.leader == pytest.approx([0.5], abs=0.0)
    assert "the leader's initial values are returned" in out.message
    res = stackopt.solve(unbounded_follower(), "mpec-ipopt")
    assert res.status is Status.NOT_CONVERGED
    assert 0.0 <= res.leader_values["x"] <= 1.0


def test_unbounded_follower_is_proven_without_kkt_point_by_scip():
    out = run("mpec-scip", unbounded_follower(), time_limit=60, formulation="sos1")
    assert out.status is Status.INFEASIBLE
    assert "has no KKT point" in out.message
    assert out.bound is None and out.gap is None and out.claimed_objective is None
    assert 0.0 <= out.leader[0] <= 1.0


def test_leader_infeasibility_is_still_infeasible():
    g = bard()
    g.set_leader([g.model.x], (g.model.x - 3) ** 2, sense=pyo.minimize, constraints=[g.model.x >= 9])
    out = run("mpec-ipopt", g)
    assert out.status is Status.INFEASIBLE and "leader's constraints stay violated" in out.message


def test_scip_infinity_is_never_a_number():
    assert _finite(1e20) is None and _finite(-1e20) is None and _finite(float("inf")) is None
    assert _finite(3.5) == 3.5
    out = run("mpec-scip", cournot(), time_limit=1e-9)
    assert out.status is Status.TIME_LIMIT
    assert out.bound is None and out.gap is None
    res = stackopt.solve(cournot(), "mpec-scip", time_limit=1e-9)
    assert res.bound is None and res.gap is None and json.dumps(res.summary())


def _writes_error(job, result):
    code = f"import json; json.dump({{'error': 'boom'}}, open({result!r}, 'w'))"
    return [sys.executable, "-c", code]


def test_scip_process_error_is_a_solver_error(monkeypatch):
    monkeypatch.setattr(scip_solver, "child_command", _writes_error)
    out = run("mpec-scip", bard(), time_limit=10)
    assert out.status is Status.SOLVER_ERROR and "SCIP: boom" in out.message


def _solve_in_daemon(queue):
    res = stackopt.solve(bard(), "mpec-scip", time_limit=60)
    queue.put((res.status.value, res.claimed_objective, res.message))


def test_mpec_scip_runs_inside_a_daemonic_process():
    """A default Dask worker is a daemonic process, which may not have multiprocessing
    children; the SCIP process is started with subprocess."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_solve_in_daemon, args=(queue,), daemon=True)
    proc.start()
    try:
        status, objective, message = queue.get(timeout=120)
    finally:
        proc.join(30)
    assert status == "optimal", message
    assert objective == pytest.approx(5.0, rel=1e-5)


# ------------------------------------------------------------------ smoothing
def test_smoothing_writes_fischer_burmeister_equations():
    from stackopt.methods.mpec import build_single_level
    from stackopt.methods.mpec.modes.smoothing import Smoothing

    sl = build_single_level(bard())
    sl.deactivate_complementarity()
    mode = Smoothing(method_config("mpec", {"mode": "smoothing"}))
    block = mode.apply(sl)
    assert len(block.equations) == len(sl.pairs)
    assert mode.schedule() == pytest.approx([1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8])
    mode.set_parameter(block, 0.25)
    assert (block.eps.lb, block.eps.ub) == (0.25, 0.25)
    p = sl.pairs[0]
    for v in sl.leader_variables + sl.follower_variables:
        v.set_value(0.0)
    s = pyo.value(p.slack)
    assert s > 0
    p.multiplier.set_value(0.25 / s)  # lambda * s = eps: the equation holds
    assert pyo.value(block.equations[1].body) == pytest.approx(0.0, abs=1e-12)
    p.multiplier.set_value(2 * 0.25 / s)
    assert abs(pyo.value(block.equations[1].body)) > 1e-3


def test_smoothing_with_both_solvers():
    out = run("mpec", bard(), mode="fischer-burmeister", polish=False)
    assert out.status is Status.CONVERGED
    assert out.claimed_objective == pytest.approx(5.0, rel=1e-5)
    assert out.history[-1]["eps"] == pytest.approx(1e-8)
    assert out.history[-1]["complementarity"] == pytest.approx(1e-8, rel=1e-3)  # pinned to eps
    glob = run("mpec", bard(), time_limit=5, mode="smoothing", solver="scip")
    assert glob.status in (Status.OPTIMAL, Status.TIME_LIMIT)
    assert glob.claimed_objective == pytest.approx(5.0, rel=1e-4)  # SCIP's incumbent
    assert "smoothing at eps=1e-08" in glob.message


def test_a_mode_registered_from_outside_is_usable(monkeypatch):
    """Adding a mode: a Reformulation subclass and its registration; the ``mpec`` method
    accepts it by name (here an exact product lambda * s <= 0 for SCIP)."""
    from stackopt.methods.mpec import Reformulation, register_mode

    monkeypatch.setattr("stackopt.methods.mpec.registry.MODES", dict(MODES))

    @register_mode("exact-product")
    class ExactProduct(Reformulation):
        solvers = ("scip",)

        def setup(self, block, sl):
            block.products = pyo.ConstraintList()

        def add_pair(self, block, k, pair):
            block.products.add(pair.multiplier * pair.slack <= 0)

    out = run("mpec", bard(), time_limit=60, mode="exact-product")
    assert out.status is Status.OPTIMAL
    assert out.claimed_objective == pytest.approx(5.0, rel=1e-5)
    assert "exact-product" not in MODES  # the registry is restored


# ------------------------------------------------------------------ non-finite data
def _with_nan_param():
    g = shifted()
    g.model.a = float("nan")
    return g


def _with_inf_coefficient():
    g = bard()
    g.model.lower.c3.set_value(float("inf") * g.model.x + 2 * g.model.lower.y <= 14)
    return g


def _with_nan_fixed():
    g = shifted()
    g.model.w = pyo.Var(initialize=float("nan"))
    g.model.w.fix()
    g.set_leader([g.model.x], (g.model.x - g.model.a) ** 2 + g.model.w * g.model.f.y,
                 sense=pyo.minimize)
    return g


@pytest.mark.parametrize("make,match", [
    (_with_nan_param, "parameter 'a' in the leader objective has the non-finite value nan"),
    (_with_inf_coefficient, r"constraint 'lower.c3' of follower 'lower' has the coefficient inf"),
    (_with_nan_fixed, "variable 'w' in the leader objective has the non-finite value nan"),
])
@pytest.mark.parametrize("method", ["mpec-ipopt", "mpec-scip"])
def test_non_finite_data_is_refused(make, match, method):
    with pytest.raises(ValueError, match=match):
        run(method, make(), time_limit=10)
