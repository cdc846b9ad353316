"""The MPEC pipeline and its two reformulations on small bilevel problems with known optima."""
import sys
import time

import pyomo.environ as pyo
import pytest

import stackopt
from stackopt import StackelbergGame, Status
from stackopt.methods import get_method, method_config
from stackopt.methods.mpec import build_single_level
from stackopt.methods.mpec.solvers import scip as scip_mod


def bard(y_ub=10.0):
    """min (x-3)^2 + (y-2)^2, 0 <= x <= 8, y in argmin (y-5)^2 s.t. -2x+y <= 1, x-2y <= 2, x+2y <= 14.

    The follower's response is y = min(5, 1+2x, (14-x)/2); on y = 1+2x the
    leader's objective (x-3)^2 + (2x-1)^2 is least at x = 1 (value 5), the other
    pieces give at least 9. Optimum (x, y) = (1, 3), value 5 (Bard 1998).
    """
    g = StackelbergGame("bard")
    m = g.model
    m.x = pyo.Var(bounds=(0, 8), initialize=0.0)
    f = g.add_follower("lower")
    f.y = pyo.Var(bounds=(0, y_ub))
    f.obj = pyo.Objective(expr=(f.y - 5) ** 2)
    f.c1 = pyo.Constraint(expr=-2 * m.x + f.y <= 1)
    f.c2 = pyo.Constraint(expr=m.x - 2 * f.y <= 2)
    f.c3 = pyo.Constraint(expr=m.x + 2 * f.y <= 14)
    g.set_leader([m.x], (m.x - 3) ** 2 + (f.y - 2) ** 2, sense=pyo.minimize)
    return g


def cournot(price_floor=True):
    """Leader firm q0 and two follower firms in Cournot-Nash; price 10 - Q, unit cost 1.

    Follower 2 has capacity q2 <= 1 (a constraint), so q2 = 1, q1 = (8 - q0)/2 and
    the leader's profit is q0 (4 - q0/2). With the leader's constraint Q <= 6.5
    (Q = 5 + q0/2, so q0 <= 3) the optimum is q0 = 3, q1 = 2.5, q2 = 1, profit 7.5;
    without it q0 = 4, q1 = 2, profit 8. (The regime q0 >= 6 with q2 < 1 gives at
    most 6 and violates Q <= 6.5.)
    """
    g = StackelbergGame("cournot")
    m = g.model
    m.q0 = pyo.Var(bounds=(0, 10), initialize=1.0)
    firms = [g.add_follower("firm1"), g.add_follower("firm2")]
    for b in firms:
        b.q = pyo.Var(bounds=(0, 10), initialize=1.0)
    total = m.q0 + firms[0].q + firms[1].q
    for b in firms:
        b.profit = pyo.Objective(expr=b.q * (10 - total) - b.q, sense=pyo.maximize)
    firms[1].capacity = pyo.Constraint(expr=firms[1].q <= 1)
    cons = [total <= 6.5] if price_floor else []
    g.set_leader([m.q0], m.q0 * (10 - total) - m.q0, sense=pyo.maximize, constraints=cons)
    return g


def run(method, game, time_limit=None, **options):
    cfg = method_config(method, options)
    return get_method(method)().run(game, cfg, 0, time_limit)


def snapshot(model):
    comps = sorted((c.name, c.ctype.__name__, bool(c.active) if hasattr(c, "active") else None)
                   for c in model.component_objects(descend_into=True))
    values = sorted((v.name, v.value, v.lb, v.ub, v.fixed)
                    for v in model.component_data_objects(pyo.Var, descend_into=True))
    return comps, values


# ------------------------------------------------------------------ pipeline
def test_pipeline_builds_kkt_per_follower_and_leaves_user_model_alone():
    g = cournot()
    before = snapshot(g.model)
    sl = build_single_level(g)
    assert snapshot(g.model) == before
    assert g.model.component("stackopt_mpec") is None
    assert sl.model.component("stackopt_mpec") is sl.block
    assert [v.name for v in sl.leader_variables] == ["q0"]
    assert [v.name for v in sl.follower_variables] == ["firm1.q", "firm2.q"]
    assert all(v.model() is sl.model for v in sl.leader_variables + sl.follower_variables)
    # pairs: bounds 0 <= q <= 10 of both firms and firm2's capacity
    assert len(sl.pairs) == 5
    assert {p.follower for p in sl.pairs} == {"firm1", "firm2"}
    # constraint <-> multiplier map keyed by the user's components
    low, up = sl.multipliers[g.model.firm2.capacity]
    assert low is None and up.model() is sl.model
    assert sl.multipliers[g.model.firm1.q][0] is not None
    # every follower has one stationarity condition, others' quantities are data
    for name in ("firm1", "firm2"):
        kkt = sl.block.followers[name].kkt
        assert len(kkt.stationarity_conditions) == 1
        assert {v.name for v in kkt.parameterize_wrt} == {"q0", "firm1.q", "firm2.q"} - {f"{name}.q"}
    # stationarity of firm1 at the known equilibrium (q0=3, q1=2.5, q2=1, interior) is zero
    sl.leader_variables[0].set_value(3.0)
    sl.follower_variables[0].set_value(2.5)
    sl.follower_variables[1].set_value(1.0)
    for p in sl.pairs:
        if p.follower == "firm1":
            p.multiplier.set_value(0.0)
    body = sl.block.followers["firm1"].kkt.stationarity_conditions[1].body
    assert pyo.value(body) == pytest.approx(0.0, abs=1e-12)


def test_params_and_named_expressions_are_translated_to_the_clone():
    """Leader min (x - a)^2 + y with a mutable Param a = 2 and a named Expression;
    follower min (y - x)^2 over y in [0, 10] gives y = x, so x = a - 1/2 = 1.5, value 1.75."""
    g = StackelbergGame("named")
    m = g.model
    m.a = pyo.Param(mutable=True, initialize=2.0)
    m.x = pyo.Var(bounds=(0, 5), initialize=0.0)
    f = g.add_follower("f")
    f.y = pyo.Var(bounds=(0, 10))
    f.gap = pyo.Expression(expr=f.y - m.x)
    f.obj = pyo.Objective(expr=f.gap ** 2)
    m.cost = pyo.Expression(expr=(m.x - m.a) ** 2 + f.y)
    g.set_leader([m.x], m.cost, sense=pyo.minimize)
    sl = build_single_level(g)
    from pyomo.core.expr.visitor import identify_mutable_parameters, identify_variables
    obj = sl.block.objective.expr
    assert all(v.model() is sl.model for v in identify_variables(obj))
    assert all(p.model() is sl.model for p in identify_mutable_parameters(obj))
    out = run("mpec-ipopt", g, starts=1)
    assert out.claimed_objective == pytest.approx(1.75, rel=1e-6)
    assert out.leader == pytest.approx([1.5], abs=1e-5)


def test_equality_constrained_follower():
    """HTP 9.3.5: min 0.5((y1-2)^2 + (y2-2)^2), y in argmin 0.5 y1^2 + y2 s.t. y1 + y2 = x,
    0 <= y <= 10, x in [0, 10]; the follower plays y1 = min(x, 1), optimum x = 3, value 0.5."""
    g = StackelbergGame("htp935")
    m = g.model
    m.x = pyo.Var(bounds=(0, 10), initialize=0.0)
    f = g.add_follower("f")
    f.y = pyo.Var([1, 2], bounds=(0, 10))
    f.obj = pyo.Objective(expr=0.5 * f.y[1] ** 2 + f.y[2])
    f.split = pyo.Constraint(expr=f.y[1] + f.y[2] == m.x)
    g.set_leader([m.x], 0.5 * ((f.y[1] - 2) ** 2 + (f.y[2] - 2) ** 2), sense=pyo.minimize)
    sl = build_single_level(g)
    gamma = sl.multipliers[f.split]
    assert not isinstance(gamma, tuple) and gamma.parent_component().name.endswith("gamma")
    assert all(p.source is not gamma for p in sl.pairs) and len(sl.pairs) == 4  # bounds only
    for method in ("mpec-ipopt", "mpec-scip"):
        out = run(method, g, time_limit=60)
        assert out.claimed_objective == pytest.approx(0.5, rel=1e-6), method
        assert out.leader == pytest.approx([3.0], abs=1e-4), method


def test_unsupported_function_for_scip_is_named():
    g = bard()
    g.set_leader([g.model.x], pyo.atan(g.model.x) + g.model.lower.y, sense=pyo.minimize)
    with pytest.raises(ValueError, match="function 'atan' .* has no SCIP counterpart"):
        run("mpec-scip", g, time_limit=10)


def test_pipeline_refuses_existing_block_name_and_bad_names():
    g = bard()
    g.model.taken = pyo.Block()
    with pytest.raises(ValueError, match="block name 'taken' is already used"):
        build_single_level(g, block_name="taken")
    with pytest.raises(ValueError, match="block_name must be a Python identifier"):
        build_single_level(g, block_name="not valid")


def test_dump_writes_single_level_model(tmp_path):
    g = bard()
    gms = tmp_path / "bard.gms"
    build_single_level(g, dump=gms)
    text = gms.read_text()
    assert "stationarity" in text and "complements" in text
    sl = build_single_level(g)
    nl = sl.dump(tmp_path / "bard.nl")
    header = nl.read_text().splitlines()[1].split()
    assert int(header[0]) >= 7  # x, y and five multipliers at least
    with pytest.raises(ValueError, match="needs an extension"):
        sl.dump(tmp_path / "noext")
    # the method option writes it too
    out = run("mpec-ipopt", g, dump=str(tmp_path / "via_option.gms"))
    assert out.status is Status.CONVERGED and (tmp_path / "via_option.gms").exists()


# ----------------------------------------------------------------- mpec-ipopt
def test_mpec_ipopt_bard_known_optimum():
    g = bard()
    before = snapshot(g.model)
    out = run("mpec-ipopt", g)
    assert out.status is Status.CONVERGED
    assert out.claimed_objective == pytest.approx(5.0, rel=1e-6)
    assert out.leader == pytest.approx([1.0], abs=1e-5)
    assert out.follower_hint == pytest.approx([3.0], abs=1e-5)
    sweep = [h for h in out.history if h.get("start") == 0]
    assert sweep[0]["eps"] == pytest.approx(0.1) and sweep[-1]["eps"] == pytest.approx(1e-8)
    assert sweep[-1]["complementarity"] <= 1e-6
    assert "polished" in out.message
    assert snapshot(g.model) == before


def test_mpec_ipopt_two_followers_with_leader_constraint():
    out = run("mpec-ipopt", cournot())
    assert out.status is Status.CONVERGED
    assert out.claimed_objective == pytest.approx(7.5, rel=1e-6)
    assert out.leader == pytest.approx([3.0], abs=1e-5)
    assert out.follower_hint == pytest.approx([2.5, 1.0], abs=1e-5)
    free = run("mpec-ipopt", cournot(price_floor=False), exact_hessian=False, starts=1)
    assert free.status is Status.CONVERGED
    assert free.claimed_objective == pytest.approx(8.0, rel=1e-6)


def test_polishing_makes_complementarity_exact():
    """Shimizu-Aiyoshi (1981) Ex. 1: min x^2 + (y-10)^2, x in [0, 15], x - y >= 0 (leader's),
    y in argmin (x + 2y - 30)^2 s.t. x + y <= 20, 0 <= y <= 20. Optimum x = y = 10, value 100;
    the regularised sweep stops about 6e-4 short, polishing reaches it."""
    g = StackelbergGame("shimizu")
    m = g.model
    m.x = pyo.Var(bounds=(0, 15), initialize=0.0)
    f = g.add_follower("f")
    f.y = pyo.Var(bounds=(0, 20), initialize=0.0)
    f.obj = pyo.Objective(expr=(m.x + 2 * f.y - 30) ** 2)
    f.c = pyo.Constraint(expr=m.x + f.y <= 20)
    g.set_leader([m.x], m.x ** 2 + (f.y - 10) ** 2, sense=pyo.minimize, constraints=[f.y - m.x <= 0])
    raw = run("mpec-ipopt", g, polish=False, starts=1)
    out = run("mpec-ipopt", g, starts=1)
    assert raw.status is Status.CONVERGED and out.status is Status.CONVERGED
    assert abs(out.claimed_objective - 100.0) < 1e-6 < abs(raw.claimed_objective - 100.0)
    assert out.leader == pytest.approx([10.0], abs=1e-7)


def test_mpec_ipopt_failures_give_statuses():
    g = bard()
    g.set_leader([g.model.x], (g.model.x - 3) ** 2, sense=pyo.minimize,
                 constraints=[g.model.x >= 9])  # x <= 8 by its bounds
    out = run("mpec-ipopt", g)
    assert out.status is Status.INFEASIBLE
    assert "eps=0.1" in out.message
    slow = run("mpec-ipopt", bard(), time_limit=1e-6)
    assert slow.status is Status.TIME_LIMIT
    assert slow.leader.shape == (1,)


def test_mpec_ipopt_options_are_validated():
    with pytest.raises(ValueError, match="option 'eps_factor' of method 'mpec-ipopt'"):
        method_config("mpec-ipopt", {"eps_factor": 1.5})
    with pytest.raises(ValueError, match="eps_final must be <= eps_initial"):
        run("mpec-ipopt", bard(), eps_initial=1e-3, eps_final=1e-2)


# ------------------------------------------------------------------ mpec-scip
@pytest.mark.parametrize("formulation", ["bigm", "sos1"])
def test_mpec_scip_bard_certified(formulation):
    out = run("mpec-scip", bard(), time_limit=60, formulation=formulation)
    assert out.status is Status.OPTIMAL
    assert out.claimed_objective == pytest.approx(5.0, rel=1e-5)
    assert out.bound <= out.claimed_objective + 1e-9  # minimisation: a lower bound
    assert out.bound == pytest.approx(5.0, rel=1e-5)
    assert out.gap <= 1e-5
    assert out.leader == pytest.approx([1.0], abs=2e-3)


def test_mpec_scip_two_followers_and_multiplier_bound():
    out = run("mpec-scip", cournot(), time_limit=60)
    assert out.status is Status.OPTIMAL
    assert out.claimed_objective == pytest.approx(7.5, rel=1e-5)
    assert out.bound >= out.claimed_objective - 1e-9  # maximisation: an upper bound
    assert out.leader == pytest.approx([3.0], abs=1e-3)
    bounded = run("mpec-scip", cournot(price_floor=False), time_limit=60, multiplier_bound=100.0)
    assert bounded.status is Status.OPTIMAL
    assert bounded.claimed_objective == pytest.approx(8.0, rel=1e-5)


def test_mpec_scip_is_optimistic():
    """Follower min x*y over 0 <= y <= 1: at x = 0 every y is optimal; the leader
    (min x^2 - y) is given y = 1, value -1, where a pessimistic leader gets 0."""
    g = StackelbergGame("tie")
    g.model.x = pyo.Var(bounds=(0, 1), initialize=0.5)
    f = g.add_follower("f")
    f.y = pyo.Var(bounds=(0, 1))
    f.obj = pyo.Objective(expr=g.model.x * f.y)
    g.set_leader([g.model.x], g.model.x ** 2 - f.y, sense=pyo.minimize)
    out = run("mpec-scip", g, time_limit=60)
    assert out.status is Status.OPTIMAL
    assert out.claimed_objective == pytest.approx(-1.0, abs=1e-6)
    assert out.follower_hint == pytest.approx([1.0], abs=1e-6)


def test_mpec_scip_missing_bound_names_the_variable():
    g = bard(y_ub=None)
    with pytest.raises(ValueError, match=r"needs an upper bound on variable 'lower\.y'"):
        run("mpec-scip", g, time_limit=10)
    # disjunctive formulations need no bound
    out = run("mpec-scip", g, time_limit=60, formulation="sos1")
    assert out.status is Status.OPTIMAL
    assert out.claimed_objective == pytest.approx(5.0, rel=1e-5)


def test_mpec_scip_time_limit_and_infeasible():
    g = bard()
    g.set_leader([g.model.x], (g.model.x - 3) ** 2, sense=pyo.minimize,
                 constraints=[g.model.x >= 9])
    assert run("mpec-scip", g, time_limit=30).status is Status.INFEASIBLE
    out = run("mpec-scip", cournot(), time_limit=30, scip_params={"limits/nodes": 1,
                                                                 "presolving/maxrounds": 0})
    assert out.status in (Status.MAX_ITERATIONS, Status.OPTIMAL)  # a node budget, or solved at once
    tiny = run("mpec-scip", cournot(), time_limit=1e-9)
    assert tiny.status is Status.TIME_LIMIT
    assert tiny.leader.shape == (1,)


CHATTY_HANG = """
import sys, time
chunk = "x" * 65536 + "\\n"
for _ in range(200):  # 13 MB of output, far beyond any pipe buffer
    sys.stdout.write(chunk)
    sys.stderr.write(chunk)
sys.stdout.flush()
time.sleep(3600)
"""


def _chatty_hang(job, result):
    return [sys.executable, "-c", CHATTY_HANG]


def _crash(job, result):
    return [sys.executable, "-c", "import os; os._exit(3)"]


def test_scip_guard_kills_a_hanging_chatty_solver(monkeypatch, tmp_path):
    monkeypatch.setattr(scip_mod, "child_command", _chatty_hang)
    start = time.perf_counter()
    out = scip_mod.run_scip(str(tmp_path), columns=1, time_limit=0.5, params={}, grace=0.5)
    elapsed = time.perf_counter() - start
    assert out["status"] is Status.TIME_LIMIT
    assert "killed" in out["message"]
    assert elapsed < 10
    # through the method: a result with a status, no exception
    res = run("mpec-scip", bard(), time_limit=0.5, kill_grace=0.5)
    assert res.status is Status.TIME_LIMIT
    assert res.leader == pytest.approx([0.0])


def test_scip_crash_gives_solver_error(monkeypatch):
    monkeypatch.setattr(scip_mod, "child_command", _crash)
    out = run("mpec-scip", bard(), time_limit=10)
    assert out.status is Status.SOLVER_ERROR
    assert "exit code 3" in out.message


def test_mpec_scip_options_are_validated():
    with pytest.raises(ValueError, match="option 'formulation' of method 'mpec-scip'"):
        method_config("mpec-scip", {"formulation": "convex-hull"})
    with pytest.raises(ValueError, match="option 'multiplier_bound'"):
        method_config("mpec-scip", {"multiplier_bound": -1.0})
    with pytest.raises(ValueError, match=r"(?s)option 'kill_grace'.*got -1"):
        method_config("mpec-scip", {"kill_grace": -1})


# ---------------------------------------------------------- through solve()
def test_registered_names_and_solve_never_raises(monkeypatch):
    names = stackopt.available_methods()
    assert "mpec-ipopt" in names and "mpec-scip" in names
    assert get_method("scholtes") is get_method("mpec-ipopt")
    assert get_method("fortuny-amat-mccarl") is get_method("mpec-scip")
    res = stackopt.solve(bard(), method="mpec-ipopt", time_limit=1e-6)
    assert res.status is Status.TIME_LIMIT
    monkeypatch.setattr(scip_mod, "child_command", _crash)
    res = stackopt.solve(bard(), method="mpec-scip", time_limit=10)
    assert res.status is Status.SOLVER_ERROR
