"""The gradient method ends on impossible leader constraints, keeps its budget, and stops
the same way whatever the units of the objectives and constraints."""
import time
import tracemalloc

import numpy as np
import pytest
from games import make_duopoly as duopoly  # the README's duopoly, its parts multiplied
from games import scaled

from stackopt import Status, solve
from stackopt.api import scoring_grace
from stackopt.methods.gradient import lagrangian
from stackopt.methods.gradient.lagrangian import AugmentedLagrangian
from stackopt.models import build_game

FACTORS = [1e-9, 1e9]


def _strategy(r):
    return np.array(list(r.leader_values.values()))


@pytest.fixture
def imported():
    """The first solve of a process imports SciPy's and Pyomo's modules (seconds, more
    under tracemalloc): done before a solve whose time is measured."""
    solve(duopoly(), "initial")


# ------------------------------------------------------------------- impossible constraints
@pytest.mark.parametrize("followers", [1.0, 1e-9])
def test_an_impossible_leader_constraint_ends_infeasible_in_bounded_time_and_memory(followers, imported):
    # x1 + x2 = (4 pi1 + 1.5 pi2) / 6.5 >= 0 on the leader's box: x1 + x2 <= -1000 cannot hold;
    # the smallest violation, 1000, is at pi = 0. This run never returned before.
    limit = 20.0
    tracemalloc.start()
    t0 = time.perf_counter()
    r = solve(duopoly(cap=-1000.0, followers=followers), "gradient", seed=0, time_limit=limit)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed <= limit + scoring_grace(limit)
    assert peak <= 64 * 2**20, peak
    assert r.status is Status.INFEASIBLE, r.message
    assert "stationary" in r.message and "smallest violation" in r.message
    assert r.constraint_violation == pytest.approx(1000.0, rel=1e-6)
    np.testing.assert_allclose(_strategy(r), [0.0, 0.0], atol=1e-6)


def _no_infeasibility_rule(monkeypatch):
    """Take away the infeasibility rule: the violation's model always falls."""
    monkeypatch.setattr(AugmentedLagrangian, "violation_model", lambda self, pt: (1.0, 0.0))


def _never_stationary(monkeypatch):
    """Take away the infeasibility rule and the rule on failed line searches (the inner solves
    that take no step between them do not move): only the budget and the deadline can end
    the spin."""
    _no_infeasibility_rule(monkeypatch)
    monkeypatch.setattr(lagrangian, "MAX_STALLS", 10**9)


def test_the_outer_loop_keeps_the_step_budget(monkeypatch):
    # at the violation's minimiser on the box the inner solves take no step: the outer
    # iterations themselves count against `steps`
    # (a penalty this large holds the start, the violation's minimiser, from the first step)
    _never_stationary(monkeypatch)
    r = solve(duopoly(cap=-1000.0), "gradient", seed=0, steps=40, mu=1e15, time_limit=60.0)
    assert r.status is Status.MAX_ITERATIONS, r.message
    assert "40 outer iterations" in r.message
    assert r.constraint_violation == pytest.approx(1000.0, rel=1e-6)


def test_inner_solves_that_do_not_move_do_not_hide_failed_line_searches(monkeypatch):
    # the same spin with the rule on failed searches kept: the inner solves that stop at once
    # (no step) between the failed ones used to reset their count, and the run went on to
    # the step budget
    _no_infeasibility_rule(monkeypatch)
    r = solve(duopoly(cap=-1000.0), "gradient", seed=0, steps=40, mu=1e15, time_limit=60.0)
    assert r.status is Status.NOT_CONVERGED, r.message
    assert "no decrease along the projected gradient 3 times in a row" in r.message
    assert "outer iterations:" not in r.message and r.history[-1]["step"] < 40


def test_the_outer_loop_keeps_the_time_limit_with_bounded_memory(monkeypatch, imported):
    _never_stationary(monkeypatch)
    limit = 3.0
    tracemalloc.start()
    t0 = time.perf_counter()
    r = solve(duopoly(cap=-1000.0), "gradient", seed=0, steps=10**9, mu=1e15, time_limit=limit)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.status is Status.TIME_LIMIT, r.message
    assert elapsed <= limit + scoring_grace(limit)
    assert peak <= 64 * 2**20, peak


def test_a_feasible_answer_is_never_called_infeasible():
    r = solve(duopoly(), "gradient", seed=0)
    assert r.status is Status.CONVERGED and "infeasible" not in r.message


def test_infeasibility_is_told_from_a_violation_the_bounds_can_remove():
    # x1 + x2 <= 0 holds only at pi = 0, on the leader's bounds: the iterates approach it with
    # small violations whose remedy is a short step to the bound, not a stationary violation
    r = solve(duopoly(cap=0.0), "gradient", seed=0)
    assert r.status is Status.CONVERGED, r.message
    # a thousandth beyond: the smallest violation is 1e-3, at pi = 0
    r = solve(duopoly(cap=-1e-3), "gradient", seed=0)
    assert r.status is Status.INFEASIBLE, r.message
    assert r.constraint_violation == pytest.approx(1e-3, rel=1e-6)


# ------------------------------------------------------------------------ scale-free stopping
def test_followers_objectives_times_1e9_below_are_solved_as_the_game_itself():
    # the same equilibria: before, the oracle's absolute tolerance took any point for one
    ref = solve(duopoly(), "gradient", seed=0)
    small = solve(duopoly(followers=1e-9), "gradient", seed=0)
    assert ref.status is small.status is Status.CONVERGED
    np.testing.assert_allclose(_strategy(small), _strategy(ref), rtol=1e-6, atol=1e-5)
    assert small.leader_values["pi[1]"] == pytest.approx(4.875, abs=1e-4)


def test_a_tiny_leader_objective_is_not_converged_at_its_start():
    # stationarity 3e-8 at the start once compared with an absolute 1e-6: 0 steps, 'converged'
    r = solve(duopoly(leader=1e-9), "gradient", seed=0)
    assert r.status is Status.CONVERGED and len(r.history) > 10
    assert r.leader_values["pi[1]"] == pytest.approx(4.875, abs=1e-4)


@pytest.mark.parametrize("what,constraint", [
    ("leader", True), ("cons", True), ("followers", True), ("leader", False), ("followers", False)])
def test_the_duopoly_scaled_by_any_factor_gives_the_same_strategy(what, constraint):
    ref = solve(duopoly(constraint=constraint), "gradient", seed=0)
    assert ref.status is Status.CONVERGED
    for c in FACTORS:
        r = solve(duopoly(constraint=constraint, **{what: c}), "gradient", seed=0)
        assert r.status is ref.status, (c, r.message)
        np.testing.assert_allclose(_strategy(r), _strategy(ref), rtol=1e-6, atol=1e-6 * 10)


@pytest.mark.parametrize("problem", ["shimizu_aiyoshi1981", "gnash10"])
@pytest.mark.parametrize("what", ["leader", "cons", "followers"])
def test_a_library_problem_scaled_by_any_factor_gives_the_same_strategy(problem, what):
    ref = solve(build_game("library", problem=problem), "gradient", seed=0)
    assert ref.status is Status.CONVERGED
    for c in FACTORS:
        r = solve(scaled(build_game("library", problem=problem), **{what: c}), "gradient", seed=0)
        assert r.status is ref.status, (c, r.message)
        np.testing.assert_allclose(_strategy(r), _strategy(ref), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("what", ["leader", "cons", "followers"])
def test_implicit_ipopt_is_scale_free_too(what):
    ref = solve(duopoly(), "implicit-ipopt", seed=0)
    assert ref.status is Status.CONVERGED
    for c in FACTORS:
        r = solve(duopoly(**{what: c}), "implicit-ipopt", seed=0)
        assert r.status is ref.status, (c, r.message)
        np.testing.assert_allclose(_strategy(r), _strategy(ref), rtol=1e-6, atol=1e-6 * 10)


# trust-constr's interior point stops about 1e-4 inside the active bound pi[2] >= 0, where exactly
# depending on its path's rounding: its strategies agree to that, SLSQP's to the gradient method's
AGREE = {"slsqp": 1e-5, "trust-region": 5e-5}


@pytest.mark.parametrize("method", ["slsqp", "trust-region"])
@pytest.mark.parametrize("what", ["leader", "cons"])
def test_the_black_box_methods_are_scale_free_too(method, what):
    # SLSQP's ftol and trust-constr's gtol are absolute: they see the leader's objective and
    # constraint divided by their magnitudes at the start (before: SLSQP stopped at pi = 0 with
    # the objective times 1e-9, trust-constr at pi[1] = 0.015)
    ref = solve(duopoly(), method, seed=0)
    assert ref.status is Status.CONVERGED, ref.message
    np.testing.assert_allclose(_strategy(ref), [4.875, 0.0], atol=2e-4)
    for c in FACTORS:
        r = solve(duopoly(**{what: c}), method, seed=0)
        assert r.status is ref.status, (c, r.message)
        np.testing.assert_allclose(_strategy(r), _strategy(ref), rtol=1e-6, atol=AGREE[method])
