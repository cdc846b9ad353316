"""Black-box baselines: slsqp, trust-region, initial."""
from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo
import pytest

import stackopt
from stackopt import Status
from stackopt.game import initial_leader
from stackopt.methods import MethodOutput, method_config
from stackopt.methods.blackbox.isolate import isolated as _isolated
from stackopt.methods.blackbox.method import _ScipyView, _violation
from stackopt.models import build_game


def _duopoly(x_init=None, x_bounds=(0.0, 200.0)):
    """henderson_quandt1958 with a chosen leader start: F(x) = x (3x/8 - 70), optimum -9800/3."""
    game = build_game("library", problem="henderson_quandt1958")
    game.model.x.setlb(x_bounds[0])
    game.model.x.setub(x_bounds[1])
    game.model.x.value = x_init
    return game


# ------------------------------------------------------------------ initial
def test_initial_reads_none_as_zero_and_clips_to_bounds():
    game = _duopoly(x_init=None, x_bounds=(5.0, 200.0))
    assert initial_leader(game).tolist() == [5.0]
    res = stackopt.solve(game, "initial")
    assert res.status is Status.CONVERGED
    assert res.leader_values == {"x": 5.0}
    assert res.leader_objective == pytest.approx(5.0 * (3 * 5.0 / 8 - 70))
    game.model.x.value = 500.0
    assert initial_leader(game).tolist() == [200.0]
    game.model.x.value = 42.0
    assert initial_leader(game).tolist() == [42.0]


# ------------------------------------------------------ black-box evaluation
def _box(game, method="slsqp", deadline=float("inf"), **options):
    """What scipy sees of the leader's problem, with ``method``'s options."""
    return _ScipyView(game, method_config(method, options), 0, deadline)


def test_finite_differences_match_the_analytic_derivative():
    game = _duopoly(x_init=50.0)
    for scheme in ("forward", "central"):
        box = _box(game, fd_scheme=scheme, fd_step=1e-6)
        g = box.gradient(np.array([50.0]))
        assert g[0] == pytest.approx(3 * 50.0 / 4 - 70, abs=1e-4)  # dF/dx = 3x/4 - 70
        assert box.value(np.array([50.0])) == pytest.approx(50.0 * (3 * 50 / 8 - 70))


def test_maximisation_is_turned_into_minimisation_and_back():
    game = build_game("library", problem="cournot3")
    box = _box(game)
    pt = box.evaluate(np.array([195 / 4]))
    assert box.sign == -1.0
    assert -pt.f == pytest.approx(114075 / 112, rel=1e-9)


def test_repeated_points_are_cached_and_warm_started():
    game = _duopoly(x_init=10.0)
    box = _box(game)
    box.evaluate(np.array([10.0]))
    box.evaluate(np.array([10.0]))
    assert box.prob.calls == 1
    box.gradient(np.array([10.0]))
    box.constraint_jacobian(np.array([10.0]))  # shares the gradient's oracle calls
    assert box.prob.calls == 2
    # a nearby point is solved from the cached equilibrium by Newton in one step or two
    prob = box.prob
    near = prob.nearest(np.array([10.5]))  # the cached point, its factorisation kept on it
    assert near.p.tolist() == [10.0 + 1e-6 * 10.0] and near.linearizations is None
    eq = prob.oracle.solve(np.array([10.5]), warm=near.equilibria[0], linearization=prob.linearize(near)[0])
    assert eq.converged and eq.newton_iterations <= 2 and eq.relaxation_iterations == 0
    assert prob.evaluate(np.array([10.5])).found and near.linearizations is not None
    assert prob.calls == 3 and prob.failed == 0


def test_evaluation_clips_to_the_leader_box():
    game = _duopoly(x_init=10.0)
    box = _box(game)
    assert box.evaluate(np.array([-5.0])).p.tolist() == [0.0]


def test_best_point_prefers_feasible_then_lower_objective():
    game = build_game("library", problem="shimizu_aiyoshi1981")
    box = _box(game)
    box.evaluate(np.array([2.0]))  # y = 14 > x: infeasible, F = 4 + 16
    assert _violation(box.best) > 0
    box.evaluate(np.array([12.0]))  # y = 8: feasible, F = 144 + 4
    box.evaluate(np.array([11.0]))  # y = 9: feasible, F = 121 + 1
    box.evaluate(np.array([3.0]))  # infeasible
    assert box.best.p.tolist() == [11.0]
    assert box.best.f == pytest.approx(122.0)


def test_finite_difference_points_are_candidates_for_the_best_point():
    box = _box(_duopoly(x_init=50.0))  # F(x) = x (3x/8 - 70) falls for x < 280/3
    box.gradient(np.array([50.0]))
    assert box.best.p.tolist() == [50.0 + 1e-6 * 50.0]


# ---------------------------------------------------------------- methods
@pytest.mark.parametrize("method", ["slsqp", "trust-region"])
def test_methods_solve_the_duopoly(method):
    res = stackopt.solve(_duopoly(x_init=10.0), method, seed=0)
    assert res.status is Status.CONVERGED, res.message
    assert res.leader_objective == pytest.approx(-9800 / 3, rel=1e-7)
    assert res.leader_values["x"] == pytest.approx(280 / 3, rel=1e-4)
    assert res.claimed_objective == pytest.approx(res.leader_objective, rel=1e-7)
    assert len(res.history) >= 1 and res.history[-1]["oracle_calls"] > 1


@pytest.mark.parametrize("method", ["slsqp", "trust-region"])
def test_leader_constraints_are_respected(method):
    """shimizu_aiyoshi1981: the optimum x = y = 10 has the leader's constraint y <= x active."""
    game = build_game("library", problem="shimizu_aiyoshi1981")
    game.model.x.value = 12.0
    res = stackopt.solve(game, method, seed=0)
    assert res.constraint_violation <= 1e-6
    assert res.leader_objective == pytest.approx(100.0, rel=1e-5)


def test_alias_trust_constr():
    res = stackopt.solve(_duopoly(x_init=10.0), "trust-constr", seed=0, maxiter=3)
    assert res.method == "trust-constr"
    assert res.status in (Status.MAX_ITERATIONS, Status.CONVERGED)


def test_iteration_limit_gives_its_status():
    res = stackopt.solve(_duopoly(x_init=10.0), "slsqp", seed=0, maxiter=1)
    assert res.status is Status.MAX_ITERATIONS


def test_same_seed_same_result():
    a = stackopt.solve(build_game("library", problem="gnash19"), "slsqp", seed=3)
    b = stackopt.solve(build_game("library", problem="gnash19"), "slsqp", seed=3)
    assert a.leader_values == b.leader_values and a.leader_objective == b.leader_objective


@pytest.mark.parametrize("bad,match", [
    ({"fd_scheme": "backward"}, "fd_scheme"),
    ({"maxiter": 0}, "maxiter"),
    ({"fd_step": -1.0}, "fd_step"),
    ({"oracle_tol": 0.0}, "oracle_tol"),
    ({"no_such_option": 1}, "unknown option 'no_such_option'"),
])
def test_bad_options_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        stackopt.solve(_duopoly(x_init=10.0), "slsqp", **bad)


# -------------------------------------------------------------- time limit
def _slow_game():
    """NFG(3 players, 5 actions): 375 leader variables, so every gradient costs 375 oracle calls."""
    return build_game("nfg", seed=1, players=3, actions=5, budget=1.0)


@pytest.mark.parametrize("isolate", [True, False])
def test_time_limit_returns_best_point_with_status(isolate):
    game = _slow_game()
    stackopt.solve(game, "initial")  # compile the kernel outside the timed run
    limit = 0.3
    t0 = time.perf_counter()
    res = stackopt.solve(game, "slsqp", seed=0, time_limit=limit, maxiter=10_000, isolate=isolate,
                         kill_grace=0.5, fd_scheme="central")
    elapsed = time.perf_counter() - t0
    assert res.status is Status.TIME_LIMIT, res.message
    assert "time limit" in res.message
    assert res.wall_time_s < limit + 0.5 + 1.0  # limit + grace + process start-up
    assert elapsed < 30  # includes scoring
    assert np.isfinite(res.leader_objective)
    assert res.constraint_violation <= 1e-6  # the best point is feasible (the start is)


def test_isolated_run_is_stopped_and_keeps_the_reported_best_point():
    def stuck(report):
        report("best", {"p": np.array([7.0]), "objective": -1.5, "x": np.array([1.0]),
                        "n_oracle": 3, "n_failed": 0})
        report("history", {"iteration": 1.0})
        time.sleep(60)  # stands for scipy's uninterruptible compiled code

    t0 = time.perf_counter()
    out = _isolated(stuck, time.perf_counter() + 0.5, 0.5, fallback=np.array([0.0]))
    assert time.perf_counter() - t0 < 5
    assert out.status is Status.TIME_LIMIT
    assert out.leader.tolist() == [7.0] and out.claimed_objective == -1.5
    assert out.history == [{"iteration": 1.0}]


def test_isolated_run_without_a_point_returns_the_fallback():
    out = _isolated(lambda report: time.sleep(60), time.perf_counter() + 0.3, 0.3,
                    fallback=np.array([2.0]))
    assert out.status is Status.TIME_LIMIT and out.leader.tolist() == [2.0]
    assert "no point" in out.message


def test_isolated_run_passes_results_and_errors_through():
    done = MethodOutput(leader=np.array([1.0]), status=Status.CONVERGED, message="ok")
    out = _isolated(lambda report: done, time.perf_counter() + 10, 10, fallback=np.array([0.0]))
    assert out.status is Status.CONVERGED and out.message == "ok"

    def fails(report):
        raise ArithmeticError("boom")

    with pytest.raises(RuntimeError, match="ArithmeticError: boom"):
        _isolated(fails, time.perf_counter() + 10, 10, fallback=np.array([0.0]))


def test_a_failure_inside_the_method_becomes_a_status(monkeypatch):
    """A crashing optimiser gives a result with status ERROR; no exception escapes solve."""
    def broken(*args, **kwargs):
        raise FloatingPointError("scipy exploded")

    monkeypatch.setattr("scipy.optimize.minimize", broken)  # the method imports it where it runs
    res = stackopt.solve(_duopoly(x_init=10.0), "slsqp", seed=0)
    assert res.status is Status.ERROR and "scipy exploded" in res.message
    res = stackopt.solve(_duopoly(x_init=10.0), "slsqp", seed=0, time_limit=20)  # in the child
    assert res.status is Status.ERROR and "scipy exploded" in res.message


def test_leader_without_bounds_is_allowed():
    """Unbounded leader variables: scipy gets infinite bounds, finite differences still work."""
    game = stackopt.StackelbergGame("free")
    m = game.model
    m.p = pyo.Var(initialize=0.0)
    f = game.add_follower("f")
    f.y = pyo.Var(bounds=(-10, 10))
    f.obj = pyo.Objective(expr=(f.y - m.p) ** 2)
    game.set_leader([m.p], objective=(f.y - 3) ** 2 + 0.1 * m.p ** 2, sense=pyo.minimize)
    for method in ("slsqp", "trust-region"):
        res = stackopt.solve(game, method, seed=0)
        assert res.leader_values["p"] == pytest.approx(3 / 1.1, rel=1e-4)


def test_daemonic_process_runs_in_process(monkeypatch):
    """A daemonic worker may not fork children: the optimiser then runs in-process."""
    import multiprocessing as mp

    monkeypatch.setattr(mp.current_process(), "_config", {**mp.current_process()._config,
                                                          "daemon": True})
    assert mp.current_process().daemon
    res = stackopt.solve(_duopoly(x_init=10.0), "slsqp", seed=0, time_limit=20)
    assert res.status is Status.CONVERGED
    assert res.leader_objective == pytest.approx(-9800 / 3, rel=1e-7)
