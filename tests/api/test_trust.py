"""Results you can trust: the model is read at every solve, bad values are refused up front,
statuses say exactly what was shown, and time limits hold."""
import time

import numpy as np
import pyomo.environ as pyo
import pytest

import stackopt
from stackopt import Method, MethodOutput, StackelbergGame, Status, register_method, solve
from stackopt.models import build_game


def duopoly(a=1.0, ub=10.0, cap=3.0, extra=False):
    """The tests' duopoly with mutable Params: the first firm's own cost a (in a*x1^2), the
    leader's target t for x1, the cap of the leader's constraint x1 + x2 <= cap, and the
    right-hand side of the first firm's constraint x1 <= rhs."""
    game = StackelbergGame("duopoly")
    m = game.model
    m.a = pyo.Param(initialize=a, mutable=True)
    m.t = pyo.Param(initialize=3.0, mutable=True)
    m.cap = pyo.Param(initialize=cap, mutable=True)
    m.pi = pyo.Var([1, 2], bounds=(0, ub), initialize=0)
    f1, f2 = game.add_follower("firm1"), game.add_follower("firm2")
    f1.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f2.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f1.cost = pyo.Objective(expr=m.a * f1.x**2 + 0.5 * f1.x * f2.x - m.pi[1] * f1.x)
    f2.cost = pyo.Objective(expr=1.5 * f2.x**2 - f1.x * f2.x - m.pi[2] * f2.x)
    f1.rhs = pyo.Param(initialize=50.0, mutable=True)
    f1.limit = pyo.Constraint(expr=f1.x <= f1.rhs)
    if extra:
        f2.extra = pyo.Constraint(expr=f2.x <= 0.5)
    game.set_leader([m.pi], objective=-(f1.x - m.t) ** 2 - (f2.x - 1) ** 2, sense=pyo.maximize,
                    constraints=[f1.x + f2.x <= m.cap])
    return game


def _same(edited, fresh):
    assert edited.status is fresh.status
    assert edited.leader_objective == pytest.approx(fresh.leader_objective, abs=1e-9)
    assert edited.constraint_violation == pytest.approx(fresh.constraint_violation, abs=1e-9)
    for k, v in fresh.leader_values.items():
        assert edited.leader_values[k] == pytest.approx(v, abs=1e-9), k


# ------------------------------------------------------------------ edits
def _edit_param(g):
    g.model.t = 4.0


def _edit_bound(g):
    g.model.pi[1].setub(1.0)


def _edit_leader_rhs(g):
    g.model.cap = 2.0


def _edit_follower_rhs(g):
    g.model.firm1.rhs = 1.5  # binds: the leader wants x1 = 2.25


def _edit_add_constraint(g):
    g.model.firm2.extra = pyo.Constraint(expr=g.model.firm2.x <= 0.5)


def _edit_deactivate(g):
    g.model.firm1.limit.deactivate()


def _edit_fix(g):
    g.model.pi[2].fix(0.5)


EDITS = {"param": _edit_param, "setub": _edit_bound, "leader rhs": _edit_leader_rhs,
         "follower rhs": _edit_follower_rhs, "added constraint": _edit_add_constraint,
         "deactivated constraint": _edit_deactivate, "fixed variable": _edit_fix}


@pytest.mark.parametrize("method", ["gradient", "implicit-ipopt", "mpec-ipopt", "slsqp"])
@pytest.mark.parametrize("kind", list(EDITS))
def test_an_edit_after_a_solve_is_what_the_next_solve_uses(kind, method):
    """Each edit after a first solve gives what the same edit gives before any solve."""
    game = duopoly()
    first = solve(game, method)
    EDITS[kind](game)
    edited = solve(game, method)
    fresh_game = duopoly()
    EDITS[kind](fresh_game)
    _same(edited, solve(fresh_game, method))
    if kind != "deactivated constraint":  # the others change the answer
        assert abs(edited.leader_objective - first.leader_objective) > 1e-3, kind


def test_a_value_edit_does_not_recompile():
    from stackopt.kernel import kernel_of
    game = duopoly()
    solve(game, "gradient")
    k = kernel_of(game)
    key = k.data_key
    game.model.a = 2.0
    solve(game, "gradient")
    assert kernel_of(game) is k and k.data_key != key
    game.model.firm2.extra = pyo.Constraint(expr=game.model.firm2.x <= 0.5)
    solve(game, "gradient")
    assert kernel_of(game) is not k  # a structural change rebuilds


def test_edits_are_scored_on_the_edited_model():
    game = duopoly()
    solve(game, "mpec-ipopt")
    game.model.pi[1].setub(1.0)
    r = solve(game, "mpec-ipopt")
    assert r.leader_values["pi[1]"] <= 1.0 + 1e-9
    # the scored objective is the edited game's at the returned strategy
    ev = stackopt.evaluate(duopoly(ub=1.0), [r.leader_values["pi[1]"], r.leader_values["pi[2]"]])
    assert r.leader_objective == pytest.approx(ev.leader_objective, abs=1e-9)


# ---------------------------------------------------------- bad values
def _nan_game(where):
    game = StackelbergGame("nan")
    m = game.model
    m.p = pyo.Var(bounds=(0, 1 if where != "bound" else float("nan")), initialize=0)
    f = game.add_follower("f")
    f.x = pyo.Var(bounds=(-5, 5))
    f.obj = pyo.Objective(expr=(f.x - m.p) ** 2)
    coef = float("nan") if where == "coefficient" else 1.0
    rhs = float("nan") if where == "rhs" else 4.0
    f.c = pyo.Constraint(expr=coef * f.x <= rhs)
    lead = float("nan") if where == "objective" else 2.0
    game.set_leader([m.p], objective=lead * f.x, sense=pyo.maximize)
    return game


@pytest.mark.parametrize("where,match", [
    ("objective", r"the leader objective has the coefficient nan"),
    ("coefficient", r"constraint 'f.c' of follower 'f' has the coefficient nan"),
    ("rhs", r"Constraint 'f.c' created with an invalid non-finite upper bound"),  # Pyomo's own check
    ("bound", r"Var 'p' created with an invalid non-finite upper bound"),
])
def test_non_finite_data_is_refused_naming_it(where, match):
    with pytest.raises(ValueError, match=match):
        solve(_nan_game(where), "gradient")


def test_non_finite_values_set_after_a_solve_are_refused_naming_them():
    game = duopoly()
    solve(game, "gradient", steps=5)
    game.model.firm1.rhs = float("nan")  # a right-hand side
    with pytest.raises(ValueError, match=r"Constraint 'firm1.limit' created with an invalid "
                                         r"non-finite upper bound"):  # Pyomo's own check
        solve(game, "gradient")
    game.model.firm1.rhs = 50.0
    game.model.firm1.x.setub(float("inf"))
    game.model.pi[1].value = float("nan")
    with pytest.raises(ValueError, match=r"variable 'pi\[1\]' has the value nan"):
        solve(game, "gradient")


def test_a_mutable_param_set_to_nan_is_refused_naming_it():
    game = duopoly()
    solve(game, "gradient", steps=5)
    game.model.a = float("nan")
    with pytest.raises(ValueError, match=r"mutable Param 'a' has value nan"):
        solve(game, "gradient")


def test_integer_variables_are_refused_naming_them():
    game = duopoly()
    game.model.firm1.x.domain = pyo.Integers
    with pytest.raises(ValueError, match=r"variable 'firm1.x' has the domain Integers; method 'gradient'"):
        solve(game, "gradient")


@pytest.mark.parametrize("option,value,match", [
    ("lr", float("inf"), r"option 'lr' of method 'gradient': expected a finite number, got inf"),
    ("lr", float("nan"), r"option 'lr' of method 'gradient'"),
    ("mu", float("nan"), r"option 'mu' of method 'gradient'"),
    ("feasibility_tol", float("nan"), r"option 'feasibility_tol' of method 'gradient'"),
    ("stationarity_tol", float("inf"), r"option 'stationarity_tol' of method 'gradient': expected a finite"),
    ("steps", True, r"option 'steps' of method 'gradient': expected a number, got True"),
    ("steps", -5, r"option 'steps' of method 'gradient': expected a positive integer, got -5"),
])
def test_bad_options_are_refused_naming_them(option, value, match):
    with pytest.raises(ValueError, match=match):
        solve(duopoly(), "gradient", **{option: value})


def test_a_boolean_seed_is_refused():
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer, got True"):
        solve(duopoly(), "gradient", seed=True)


# ---------------------------------------------------------------- statuses
@register_method("test-claims-converged")
class _ClaimsConverged(Method):
    """Says converged at the leader's initial values without looking."""

    def run(self, game, config, seed, time_limit):
        from stackopt.kernel import kernel_of
        return MethodOutput(leader=kernel_of(game).p0.copy(), status=Status.CONVERGED)


def _empty_follower():
    """The follower's constraints x1 + x2 >= 5 + p and x1 + x2 <= 4 contradict each other."""
    game = StackelbergGame("empty")
    m = game.model
    m.p = pyo.Var(bounds=(0, 1), initialize=0.5)
    f = game.add_follower("f")
    f.x = pyo.Var([1, 2], bounds=(0, 10))
    f.obj = pyo.Objective(expr=(f.x[1] - m.p) ** 2 + f.x[2] ** 2)
    f.c1 = pyo.Constraint(expr=f.x[1] + f.x[2] >= 5 + m.p)
    f.c2 = pyo.Constraint(expr=f.x[1] + f.x[2] <= 4)
    game.set_leader([m.p], objective=f.x[1], sense=pyo.maximize)
    return game


def test_converged_needs_an_equilibrium_at_the_answer():
    r = solve(_empty_follower(), "test-claims-converged", time_limit=20)
    assert r.status is Status.EQUILIBRIUM_NOT_FOUND
    assert "did not converge at the final strategy" in r.message
    assert "follower 'f' has no feasible point" in r.message


def test_a_follower_without_feasible_points_is_named_at_once():
    game = _empty_follower()
    from stackopt.kernel import kernel_of
    kernel_of(game)  # compiled outside the timing
    for method in ("gradient", "implicit-ipopt"):
        t0 = time.perf_counter()
        r = solve(game, method)
        assert time.perf_counter() - t0 < 2.0
        assert r.status is Status.INFEASIBLE
        assert "follower 'f' has no feasible point at this leader strategy" in r.message


def test_an_unbounded_follower_is_named():
    game = StackelbergGame("unbounded")
    m = game.model
    m.p = pyo.Var(bounds=(0, 1), initialize=0.5)
    f = game.add_follower("f")
    f.x = pyo.Var()
    f.obj = pyo.Objective(expr=-(m.p + 1) * f.x)
    game.set_leader([m.p], objective=f.x, sense=pyo.maximize)
    r = solve(game, "gradient")
    assert r.status is Status.NOT_CONVERGED
    assert "follower 'f' moved beyond" in r.message and "unbounded" in r.message


# ---------------------------------------------------------------- time limits
def test_time_limit_bounds_the_whole_solve():
    from stackopt.api import scoring_grace
    game = build_game("ssg", seed=1, targets=60, defenders=5)
    t0 = time.perf_counter()
    r = solve(game, "gradient", steps=10**6, time_limit=5.0)
    elapsed = time.perf_counter() - t0
    assert r.status is Status.TIME_LIMIT
    assert elapsed <= 5.0 + scoring_grace(5.0) + 0.5, elapsed
    assert np.isfinite(r.leader_objective)
