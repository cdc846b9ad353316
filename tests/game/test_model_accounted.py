"""The Pyomo model is the source of truth: every active component of it belongs to a player (or is
an error naming it), every edit after a solve is what the next solve of every method uses, and a
leader's expression that cannot be differentiated, or cannot be evaluated, says so."""
import gc
import sys

import numpy as np
import pyomo.environ as pyo
import pytest

import stackopt
from stackopt import StackelbergGame, Status, solve
from stackopt.kernel import kernel_of
from stackopt.methods import available_methods
from stackopt.methods.mpec.pipeline import build_single_level


def cournot(capacity=None, declared=False):
    """Two firms q1, q2 in [0, 100] with price 100 - q1 - q2, cost 10 and a per-unit tax t in
    [0, 90] set by the leader, who maximises the tax revenue t (q1 + q2). The equilibrium is
    q1 = q2 = (90 - t) / 3: t = 45, q1 + q2 = 30; with q1 + q2 <= 20 met by the leader, t = 60."""
    game = StackelbergGame("cournot")
    m = game.model
    m.t = pyo.Var(bounds=(0, 90), initialize=0)
    f1, f2 = game.add_follower("f1"), game.add_follower("f2")
    for f in (f1, f2):
        f.q = pyo.Var(bounds=(0, 100), initialize=0)
    for f in (f1, f2):
        f.profit = pyo.Objective(expr=(100 - f1.q - f2.q) * f.q - (10 + m.t) * f.q, sense=pyo.maximize)
    cons = []
    if capacity is not None:
        m.capacity = pyo.Constraint(expr=f1.q + f2.q <= capacity)
        cons = [m.capacity] if declared else []
    game.set_leader([m.t], objective=m.t * (f1.q + f2.q), sense=pyo.maximize, constraints=cons)
    return game


def duopoly(coef=1.0):
    """The README's duopoly, firm 1's own cost a named Expression ``firm1.own`` (coef * x1^2),
    the leader's target for x1 a named Expression ``target`` and firm 1's constraint
    ``k x1 <= 50`` with k a mutable Param: pi[1] = 4.875 at coef 1, 2.625 at coef 0.5."""
    game = StackelbergGame("duopoly")
    m = game.model
    m.pi = pyo.Var([1, 2], bounds=(0, 10), initialize=0)
    f1, f2 = game.add_follower("firm1"), game.add_follower("firm2")
    f1.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f2.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f1.own = pyo.Expression(expr=coef * f1.x**2)
    f1.cost = pyo.Objective(expr=f1.own + 0.5 * f1.x * f2.x - m.pi[1] * f1.x)
    f1.k = pyo.Param(initialize=1.0, mutable=True)
    f1.limit = pyo.Constraint(expr=f1.k * f1.x <= 50.0)
    f2.cost = pyo.Objective(expr=1.5 * f2.x**2 - f1.x * f2.x - m.pi[2] * f2.x)
    m.target = pyo.Expression(expr=3.0)
    game.set_leader([m.pi], objective=-(f1.x - m.target) ** 2 - (f2.x - 1) ** 2, sense=pyo.maximize,
                    constraints=[f1.x + f2.x <= 3])
    return game


# ------------------------------------------------------------- every component accounted for
def _capacity_on_model():
    return cournot(capacity=20)


def _leader_only_on_model():
    g = duopoly()
    g.model.c = pyo.Constraint(expr=g.model.pi[1] + g.model.pi[2] <= 1)
    return g


def _one_follower_in_a_block():
    g = duopoly()
    g.model.extra = pyo.Block()
    g.model.extra.c = pyo.Constraint(expr=g.model.firm1.x >= 1)
    return g


def _objective_on_model():
    g = duopoly()
    g.model.welfare = pyo.Objective(expr=g.model.firm1.x + g.model.firm2.x)
    return g


def _variable_on_model():
    g = duopoly()
    g.model.z = pyo.Var(bounds=(0, 1))
    return g


ORPHANS = {
    "capacity": (_capacity_on_model, r"constraint 'capacity' belongs to no follower and is neither "
                 r"shared nor declared to the leader, so no method would use it: if it binds the "
                 r"followers 'f1', 'f2' together, declare it once with "
                 r"game\.add_shared_constraint\('capacity', game\.model\.capacity\); if the leader "
                 r"must keep it at the followers' equilibrium, pass it in set_leader\(constraints=\[\.\.\., "
                 r"game\.model\.capacity\]\)"),
    "leader only": (_leader_only_on_model, r"constraint 'c' belongs to no follower .* it uses only "
                    r"the leader's variables: pass it in set_leader\(constraints=\[\.\.\., game\.model\.c\]\)"),
    "in a block": (_one_follower_in_a_block, r"constraint 'extra\.c' \(on block 'extra', which is not a "
                   r"follower\) belongs to no follower .* if it is a constraint of follower 'firm1' alone, "
                   r"declare it on that follower's block"),
    "objective": (_objective_on_model, r"objective 'welfare' belongs to no follower .* pass it in "
                  r"set_leader\(objective=game\.model\.welfare"),
    "variable": (_variable_on_model, r"variable 'z' belongs to no follower .* pass it in "
                 r"set_leader\(variables=\[\.\.\., game\.model\.z\]\); or fix it"),
}


@pytest.mark.parametrize("kind", list(ORPHANS))
def test_a_component_of_nobody_is_an_error_naming_it(kind):
    build, match = ORPHANS[kind]
    with pytest.raises(ValueError, match=match):
        solve(build(), "initial")
    with pytest.raises(ValueError, match=match):  # the MPEC pipeline's clone is built from it
        build_single_level(build())
    with pytest.raises(ValueError, match=match):
        stackopt.evaluate(build(), [0.0] * (1 if kind == "capacity" else 2))


@pytest.mark.parametrize("method", available_methods())
def test_no_method_drops_a_constraint_of_nobody(method):
    with pytest.raises(ValueError, match="constraint 'capacity' belongs to no follower"):
        solve(cournot(capacity=20), method, time_limit=30)


@pytest.mark.parametrize("method", ["gradient", "implicit-ipopt", "mpec-ipopt", "slsqp"])
def test_the_same_constraint_declared_to_the_leader_is_kept(method):
    r = solve(cournot(capacity=20, declared=True), method, time_limit=60)
    assert r.status is Status.CONVERGED, r.message
    assert r.leader_values["t"] == pytest.approx(60.0, abs=1e-3)
    assert r.constraint_violation <= 1e-5
    assert r.follower_values["f1.q"] + r.follower_values["f2.q"] <= 20 + 1e-5


def test_deactivated_and_fixed_components_are_left_out():
    g = cournot(capacity=20)
    g.model.capacity.deactivate()
    g.model.note = pyo.Block()
    g.model.note.c = pyo.Constraint(expr=g.model.f1.q <= 1)
    g.model.note.deactivate()
    g.model.k = pyo.Var(initialize=2.0)
    g.model.k.fix()  # a fixed variable is a constant
    r = solve(g, "gradient")
    assert r.status is Status.CONVERGED and r.leader_values["t"] == pytest.approx(45.0, abs=1e-3)


def test_a_component_of_nobody_added_after_a_solve_is_seen():
    g = cournot()
    assert solve(g, "gradient").leader_values["t"] == pytest.approx(45.0, abs=1e-3)
    g.model.capacity = pyo.Constraint(expr=g.model.f1.q + g.model.f2.q <= 20)
    with pytest.raises(ValueError, match="constraint 'capacity' belongs to no follower"):
        solve(g, "gradient")
    g.set_leader([g.model.t], objective=g.model.t * (g.model.f1.q + g.model.f2.q),
                 sense=pyo.maximize, constraints=[g.model.capacity])
    assert solve(g, "gradient").leader_values["t"] == pytest.approx(60.0, abs=1e-3)


def test_a_component_of_a_kind_stackopt_does_not_read_is_an_error_naming_it():
    """A LogicalConstraint, Complementarity or SOSConstraint, on the model or a follower's block,
    would be dropped by every method: refused, also when added after a solve; deactivated, left out."""
    from pyomo.mpec import Complementarity, complements

    g = duopoly()
    solve(g, "initial")
    f1 = g.model.firm1
    f1.cc = Complementarity(expr=complements(f1.x >= 0, g.model.pi[1] >= 0))
    with pytest.raises(ValueError, match=r"'firm1\.cc' is a Complementarity, which stackopt does not "
                                         r"read, so no method would use it: write it with pyo\.Constraint"):
        solve(g, "initial")
    f1.cc.deactivate()
    solve(g, "initial")
    g.model.b = pyo.Block()
    g.model.b.y = pyo.BooleanVar()
    g.model.b.rule = pyo.LogicalConstraint(expr=g.model.b.y.implies(g.model.b.y))
    with pytest.raises(ValueError, match=r"'b\.rule' is a LogicalConstraint, which stackopt does not read"):
        solve(g, "mpec-ipopt")
    g.model.b.deactivate()
    g.model.sos = pyo.SOSConstraint(var=g.model.pi, sos=1)
    with pytest.raises(ValueError, match=r"'sos' is a SOSConstraint, which stackopt does not read"):
        solve(g, "gradient")
    g.model.sos.deactivate()
    assert solve(g, "gradient").status is Status.CONVERGED


def test_a_deleted_or_deactivated_follower_is_named():
    g = duopoly()
    solve(g, "initial")
    g.model.firm2.deactivate()
    with pytest.raises(ValueError, match="follower 'firm2' is deactivated"):
        solve(g, "initial")
    g.model.firm2.activate()
    solve(g, "initial")
    g.model.del_component(g.model.firm2)
    with pytest.raises(ValueError, match=r"follower 'firm2' is no longer on the model \(its block was "
                                         r"deleted\)"):
        solve(g, "gradient")


# ------------------------------------------------------------------ edits after a solve
def _edit_own_cost(g):
    g.model.firm1.own.set_value(0.5 * g.model.firm1.x ** 2)


def _edit_target(g):
    g.model.target.set_value(2.0)


def _edit_coefficient(g):
    g.model.firm1.k = 25.0  # x1 <= 2 binds: the leader wants x1 = 2.25


def _fix(g):
    g.model.pi[1].fix(2.0)


def _unfix(g):
    g.model.pi[1].unfix()


# name: (edits before the first solve on both games, edits after it)
EDITS = {
    "follower's named Expression": ([], [_edit_own_cost]),
    "leader's named Expression": ([], [_edit_target]),
    "fix, solve, unfix": ([_fix], [_unfix]),
    "follower constraint's coefficient": ([], [_edit_coefficient]),
}


def _same(edited, fresh):
    assert edited.status is fresh.status
    assert edited.leader_objective == pytest.approx(fresh.leader_objective, abs=1e-9)
    assert edited.constraint_violation == pytest.approx(fresh.constraint_violation, abs=1e-9)
    assert edited.initial_objective == pytest.approx(fresh.initial_objective, abs=1e-9)
    for k, v in fresh.leader_values.items():
        assert edited.leader_values[k] == pytest.approx(v, abs=1e-9), k


@pytest.mark.parametrize("method", ["gradient", "implicit-ipopt", "mpec-ipopt", "slsqp"])
@pytest.mark.parametrize("kind", list(EDITS))
def test_an_edit_after_a_solve_gives_what_a_fresh_build_gives(kind, method):
    before, after = EDITS[kind]
    game = duopoly()
    for edit in before:
        edit(game)
    first = solve(game, method)
    for edit in after:
        edit(game)
    edited = solve(game, method)
    fresh = duopoly()
    for edit in before + after:
        edit(fresh)
    _same(edited, solve(fresh, method))
    if kind != "fix, solve, unfix":  # the others change the answer
        moved = [abs(edited.leader_values[k] - v) for k, v in first.leader_values.items()]
        assert max(moved + [abs(edited.leader_objective - first.leader_objective)]) > 1e-3


def test_a_named_expression_edit_rebuilds_and_an_unchanged_game_does_not():
    game = duopoly()
    solve(game, "gradient")
    k = kernel_of(game)
    solve(game, "initial")
    assert kernel_of(game) is k  # nothing changed: nothing rebuilt
    _edit_own_cost(game)
    r = solve(game, "gradient")
    assert kernel_of(game) is not k
    assert r.leader_values["pi[1]"] == pytest.approx(2.625, abs=1e-4)


def test_what_a_signature_names_by_identity_stays_alive():
    """A structure's signature names objects by ``id``; the game keeps them alive with it, so no
    object made later can take the identity of one it names (a named Expression's replaced
    expression, which nothing else holds, would otherwise be freed and its address reused)."""
    game = duopoly()
    x, own = game.model.firm1.x, game.model.firm1.own
    own.set_value(x ** 2 * 0.75)  # (a component's initial expression is kept by Pyomo itself)
    stackopt.evaluate(game, [1.0, 0.0])  # reads the structure with this expression
    old = own.expr
    own.set_value(x ** 2 * 0.5)
    gc.collect()
    assert sys.getrefcount(old) > 2  # this test's name, getrefcount's argument, and the game
    got = stackopt.evaluate(game, [1.0, 0.0]).follower_values["firm1.x"]
    assert got == pytest.approx(stackopt.evaluate(duopoly(0.5), [1.0, 0.0]).follower_values[
        "firm1.x"], abs=1e-9)
    solve(game, "initial")  # the structure is read again: the replaced expression is let go
    gc.collect()
    assert sys.getrefcount(old) == 2


# ------------------------------------------------------ leader expressions and values
@pytest.mark.parametrize("make, match", [
    (lambda f1: pyo.Expr_if(IF=f1.x >= 1, THEN=f1.x, ELSE=0.0),
     r"the leader objective uses an expression of type Expr_ifExpression \(`Expr_if\(.*\)`\), which "
     r"stackopt cannot differentiate"),
    (lambda f1: pyo.sinh(f1.x), r"the leader objective uses the function 'sinh' \(`sinh\(firm1\.x\)`\)"),
])
def test_a_leader_objective_that_cannot_be_differentiated_is_refused_before_any_work(make, match):
    for method in ("gradient", "mpec-scip", "initial"):
        g = duopoly()
        g.set_leader([g.model.pi], objective=make(g.model.firm1), sense=pyo.maximize)
        with pytest.raises(ValueError, match=match):
            solve(g, method)


@pytest.mark.parametrize("method", ["gradient", "slsqp", "initial"])
def test_an_objective_that_is_nan_at_the_initial_strategy_says_so(method):
    g = duopoly()
    f1 = g.model.firm1
    g.set_leader([g.model.pi], objective=pyo.sqrt(f1.x - 1), sense=pyo.maximize)  # x1 = 0 at pi = 0
    r = solve(g, method)
    assert "did not converge" not in r.message
    assert "the followers' equilibrium was found" in r.message
    assert "the leader's objective cannot be evaluated there (not a finite number" in r.message
    assert r.status is not Status.CONVERGED


def test_evaluate_takes_a_result_s_leader_values():
    g = duopoly()
    r = solve(g, "gradient")
    by_name = stackopt.evaluate(g, r.leader_values)
    by_order = stackopt.evaluate(g, [r.leader_values["pi[1]"], r.leader_values["pi[2]"]])
    assert by_name.leader_objective == by_order.leader_objective == pytest.approx(r.leader_objective)
    with pytest.raises(ValueError, match=r"leader values by name must give each of the leader's "
                                         r"\(unfixed\) variables \['pi\[1\]', 'pi\[2\]'\]; missing: "
                                         r"\['pi\[2\]'\]"):
        stackopt.evaluate(g, {"pi[1]": 1.0})
    with pytest.raises(ValueError, match=r"unknown: \['pi\[3\]'\]"):
        stackopt.evaluate(g, {"pi[1]": 1.0, "pi[2]": 0.0, "pi[3]": 0.0})
    with pytest.raises(ValueError, match="leader values must be numbers"):
        stackopt.evaluate(g, {"pi[1]": "high", "pi[2]": 0.0})
    assert np.isfinite(stackopt.check_gradient(g, r.leader_values).max_relative_error)
