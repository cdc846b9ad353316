"""The MPEC pipeline on generalized Nash games: shared constraints under each concept,
constraints nonlinear in a follower's own variables, the leader's variables as coefficients;
every mode x solver."""
import numpy as np
import pyomo.environ as pyo
import pytest
from games import circle, coupled
from pyomo.repn.standard_repn import generate_standard_repn
from scipy.optimize import brentq

import stackopt
from stackopt import Status
from stackopt.methods.mpec import build_single_level
from stackopt.methods.mpec.modes.disjunctive import Disjunctive
from stackopt.methods.mpec.modes.scholtes import Regularization
from stackopt.methods.mpec.modes.smoothing import Smoothing
from stackopt.methods.mpec.slacks import is_linear, linear_pairs
from stackopt.models.gnep import harker, price_budget

WEIGHTS = {"a": 2.0, "b": 0.5}
MODES = [("regularization", "ipopt"), ("smoothing", "ipopt"), ("disjunctive", "scip"),
         ("regularization", "scip")]


def _snapshot(model):
    return sorted((c.name, bool(c.active)) for c in model.component_data_objects(pyo.Constraint)), \
        sorted((v.name, v.value) for v in model.component_data_objects(pyo.Var))


@pytest.mark.parametrize("concept", ["variational", "weighted", "any"])
def test_shared_constraint_is_written_once_with_the_concepts_multipliers(concept):
    g = coupled(concept, WEIGHTS if concept == "weighted" else None)
    before = _snapshot(g.model)
    sl = build_single_level(g)
    assert _snapshot(g.model) == before  # nothing written onto the user's model
    sb = sl.block.shared
    assert len(sb.constraints) == 1 and sb.constraints[1].active
    # the followers' copies (seen by core.kkt) are inactive: the row is there once
    for name in ("a", "b"):
        copies = list(sl.block.followers[name].constraints.values())
        assert sum(not c.active for c in copies) == 1
    cap_pairs = [p for p in sl.pairs if p.source is sb.constraints[1]]
    mult = sl.multipliers[g.model.cap]
    if concept == "any":
        assert len(sb.tie) == 0 and len(sb.multiplier) == 0
        assert sorted(p.follower for p in cap_pairs) == ["a", "b"]
        assert set(mult) == {"a", "b"}
    else:
        assert len(sb.tie) == 2 and len(sb.multiplier) == 1
        assert [p.follower for p in cap_pairs] == ["a, b"]
        assert mult[0] is None and mult[1] is sb.multiplier[1] and cap_pairs[0].multiplier is mult[1]
        # r_i alpha_i == mu: follower i's multiplier is the common one divided by its weight
        weights = {}
        for t in sb.tie.values():
            repn = generate_standard_repn(t.body - t.upper)
            coef = {v.name: c for v, c in zip(repn.linear_vars, repn.linear_coefs)}
            mu = coef.pop(mult[1].name)
            ((alpha, c),) = coef.items()
            weights[alpha.split(".")[1].split("[")[1].rstrip("]")] = -c / mu
        assert weights == (WEIGHTS if concept == "weighted" else {"a": 1.0, "b": 1.0})


@pytest.mark.parametrize("concept", ["variational", "weighted", "any"])
def test_the_oracles_equilibrium_satisfies_the_single_level_kkt_conditions(concept):
    """At p = (1, 1.2) every constraint of ``coupled`` binds (a disk of the leader's radius, a
    budget with the leader's coefficient, a row using the other's variable, the shared cap):
    the equilibrium stackopt.equilibrium finds, with its multipliers by name (the shared one
    divided by each follower's weight), makes every stationarity condition, tie and
    complementarity product of the single-level model vanish."""
    g = coupled(concept, WEIGHTS if concept == "weighted" else None)
    e = stackopt.equilibrium(g, {"p[1]": 1.0, "p[2]": 1.2})
    assert e.converged
    sl = build_single_level(g)
    for v in sl.model.component_data_objects(pyo.Var):
        if v.local_name in ("alpha", "gamma", "multiplier") or "kkt" in v.name or "shared" in v.name:
            v.set_value(0.0, skip_validation=True)
    for v in sl.leader_variables + sl.follower_variables:
        v.set_value(e.leader_values.get(v.name, e.follower_values.get(v.name)))
    weights = dict(zip(g.follower_names, g.structure().weights))
    cap = sl.block.shared.constraints[1]
    for c, mult in sl.multipliers.items():
        if c.ctype is pyo.Var:
            continue  # no variable is at a bound here
        value = e.multipliers[c.name]
        if c.name != "cap":
            mult[1].set_value(value)
        elif concept == "any":
            for f, (_, up) in mult.items():
                up.set_value(value[f])
        else:
            mult[1].set_value(value)
    if concept != "any":  # the followers' own multipliers of the cap, tied to the common one
        for name in ("a", "b"):
            fb = sl.block.followers[name]
            (copy,) = [c for c in fb.constraints.values() if not c.active]
            _, up = pyo.TransformationFactory("core.kkt").get_multiplier_from_object(fb, copy)
            up.set_value(e.multipliers["cap"] / weights[name])
    assert min(e.multipliers["cap"].values()) if concept == "any" else e.multipliers["cap"] > 1e-3
    for c in sl.block.component_data_objects(pyo.Constraint, active=True):
        if c.parent_block() is sl.block.objective.parent_block() and c.local_name.startswith("leader"):
            continue
        body = pyo.value(c.body)
        lo = pyo.value(c.lower) if c.has_lb() else -np.inf
        hi = pyo.value(c.upper) if c.has_ub() else np.inf
        assert lo - 1e-6 <= body <= hi + 1e-6, (c.name, body, lo, hi)
    for p in sl.pairs:
        assert abs(pyo.value(p.multiplier) * pyo.value(p.slack)) <= 1e-6, p.name
    assert pyo.value(cap.upper - cap.body) == pytest.approx(0.0, abs=1e-8)


# -------------------------------------------------------------- Harker with weights and "any"
def harker_weighted_optimum():
    """Harker's game taxed at tau, shared="weighted" with r = (1, 2): follower i's multiplier of
    the cap is s / r_i. Slack cap (tau <= 1): x1 = 5 + 4 tau. Binding cap, x2 = 15 - x1:
    2 x1 + (8/3) x2 - 34 + s = 0 gives s = (2/3) x1 - 6 (>= 0 from tau = 1, where x1 = 9);
    2 x2 + (5/4) x1 - 24.25 + tau + s / 2 = 0 gives x1 = 6.6 + 2.4 tau (x1 <= 10 up to
    tau = 17/12). The leader's (x1 - 9.5)^2 + tau^2 / 100 = (2.4 tau - 2.9)^2 + tau^2 / 100
    there, least at tau* = 6.96 / 5.77 = 1.2062 (inside the piece); on [0, 1] it is at least
    (4 - 4.5)^2 = 0.25 and beyond 17/12 at least 0.25. f* = 2.9^2 - 6.96^2 / 5.77."""
    return 6.96 / 5.77, 2.9 ** 2 - 6.96 ** 2 / 5.77


def _harker(concept):
    g = harker()
    g.shared = concept
    if concept == "weighted":
        g.shared_weights = {"player1": 1.0, "player2": 2.0}
    return g


@pytest.mark.parametrize("mode,solver", MODES)
def test_weighted_shared_constraint_in_every_mode_and_solver(mode, solver):
    tau, best = harker_weighted_optimum()
    res = stackopt.solve(_harker("weighted"), "mpec", mode=mode, solver=solver, time_limit=60)
    assert res.leader_objective == pytest.approx(best, rel=1e-5), res.message
    assert res.leader_values["tau"] == pytest.approx(tau, abs=1e-3)
    if solver == "scip":
        assert res.status is Status.OPTIMAL and res.bound <= best + 1e-6
    else:
        assert res.status is Status.CONVERGED, res.message


def test_weighted_optimum_by_the_implicit_gradient():
    """The oracle's methods solve the same weighted equilibrium (the MPEC's is the same game)."""
    _, best = harker_weighted_optimum()
    res = stackopt.solve(_harker("weighted"), "implicit-ipopt")
    assert res.status is Status.CONVERGED
    assert res.leader_objective == pytest.approx(best, rel=1e-6)


def test_any_concept_is_optimistic_over_every_generalized_equilibrium():
    """Under "any" the MPEC ranges over every generalized Nash equilibrium: at tau = 0 the
    point (9.5, 5.5) on the cap is one (player 1's multiplier (2/3) 9.5 - 6 >= 0, player 2's
    0.75 * 9.5 - 5.75 >= 0), so the optimistic optimum is 0, certified by SCIP; the
    variational equilibrium's optimum is 0.01085 (harker_tax)."""
    res = stackopt.solve(_harker("any"), "mpec-scip", time_limit=60)
    assert res.status is Status.OPTIMAL and res.claimed_objective == pytest.approx(0.0, abs=1e-6)
    assert res.bound == pytest.approx(0.0, abs=1e-6)
    ipopt = stackopt.solve(_harker("any"), "mpec-ipopt", time_limit=60)
    assert ipopt.status is Status.CONVERGED
    assert ipopt.claimed_objective == pytest.approx(0.0, abs=1e-6)


# -------------------------------------------------------------- nonlinear slacks
def test_nonlinear_slacks_are_linked_where_the_mode_needs_it():
    """price_budget's budgets p x_i <= B_i have the leader's price as coefficient: the slack
    2 - p x1 is bilinear. The big-M mode links it through t == 2 - p x1, bounded by interval
    arithmetic (t <= 2 - 0.5 * 0); the linear bound slacks are kept."""
    g = price_budget()
    sl = build_single_level(g)
    nonlinear = [p for p in sl.pairs if not is_linear(p.slack)]
    assert [p.follower for p in nonlinear] == ["buyer1", "buyer2"]
    blk = pyo.Block(concrete=True)
    sl.block.add_component("probe", blk)
    linked = linear_pairs(blk, sl.pairs)
    assert all(is_linear(p.slack) for p in linked)
    assert len(blk.slack_link) == 2
    assert [(t.lb, t.ub) for t in blk.slack_link.values()] == [(0.0, 2.0), (0.0, 10.0)]
    new = [p for p in linked if all(p is not q for q in sl.pairs)]
    assert [p.slack for p in new] == list(blk.slack_link.values())
    assert [p.source for p in new] == [p.source for p in nonlinear]
    assert Disjunctive.linear_slacks and Smoothing.linear_slacks and not Regularization.linear_slacks


def test_unbounded_nonlinear_slack_names_the_pair_for_big_m():
    """A budget r u <= 1 with u unbounded below: interval arithmetic gives the linked slack
    1 - r u no upper bound, and big-M says which pair needs one; formulation='sos1' needs
    none. The follower's response is u = 1 / r, the leader's (1/r - 0.8)^2 + 0.1 r on
    [1, 2] is least where its derivative -2 (1/r - 0.8) / r^2 + 0.1 vanishes."""
    g = stackopt.StackelbergGame("budget")
    m = g.model
    m.r = pyo.Var(bounds=(1.0, 2.0), initialize=1.0)
    f = g.add_follower("f")
    f.u = pyo.Var(bounds=(None, 10.0), initialize=0.0)
    f.obj = pyo.Objective(expr=(f.u - 3.0) ** 2)
    f.budget = pyo.Constraint(expr=m.r * f.u <= 1.0)
    g.set_leader([m.r], objective=(f.u - 0.8) ** 2 + 0.1 * m.r, sense=pyo.minimize)
    res = stackopt.solve(g, "mpec-scip")
    assert res.status is Status.ERROR
    assert "needs an upper bound on its slack 1.0 - r*f.u, which interval arithmetic" in res.message
    sos = stackopt.solve(g, "mpec-scip", formulation="sos1", time_limit=60)
    r = brentq(lambda r: -2 * (1 / r - 0.8) / r ** 2 + 0.1, 1.0, 2.0)
    assert sos.status is Status.OPTIMAL
    assert sos.leader_values["r"] == pytest.approx(r, abs=1e-4)


def test_a_nonlinear_equality_is_allowed_and_the_result_says_its_kkt_points_may_not_be_best_responses():
    """A follower on the circle u1^2 + u2^2 = 1 nearest to (p, 1): its KKT points are the
    nearest and the farthest point. The optimistic MPEC may hold the farthest one (u1 =
    -p / |(p, 1)|, least at p = 3); the result names the follower and why, and the scored
    objective is the nearest point's (the equilibrium the oracle finds after its search)."""
    g = circle(sense=pyo.minimize)
    assert build_single_level(g).nonconvex == {
        "f": "its set is not provably convex in its own variables (f.circle)"}
    res = stackopt.solve(g, "mpec-scip", time_limit=60)
    assert res.status is Status.OPTIMAL
    assert "KKT conditions are not sufficient for follower(s) 'f': its set is not provably " \
           "convex in its own variables (f.circle)" in res.message
    p = res.leader_values["p"]
    assert res.claimed_objective == pytest.approx(-3 / np.sqrt(10), abs=1e-5)
    assert res.leader_objective == pytest.approx(p / np.sqrt(p * p + 1), abs=1e-6)  # nearest point
    harker_tax = stackopt.solve(harker(), "mpec-scip", time_limit=60)
    assert "not sufficient" not in harker_tax.message
