"""The equilibrium oracle: residual tolerance, seeding, active constraints, failure as a status."""
import time

import numpy as np
import pyomo.environ as pyo
import pytest
from games import DUOPOLY_M, make_duopoly

from stackopt import StackelbergGame, Status
from stackopt.kernel import kernel_of
from stackopt.models import build_game
from stackopt.oracle import EquilibriumOracle, OracleCounters, sensitivity


def test_duopoly_equilibrium_closed_form():
    k = kernel_of(make_duopoly())
    o = EquilibriumOracle(k)
    p = np.array([3.0, 1.5])
    eq = o.solve(p, rng=1)
    assert eq.converged and eq.residual <= 1e-6
    np.testing.assert_allclose(eq.x, np.linalg.solve(DUOPOLY_M, p), atol=1e-7)


def test_nfg_residual_cold_and_warm():
    k = kernel_of(build_game("nfg", seed=3, players=3, actions=5, budget=1.0))
    o = EquilibriumOracle(k, tol=1e-6)
    eq = o.solve(k.p0, rng=7)
    assert eq.status is Status.CONVERGED and eq.residual <= 1e-6
    assert np.max(np.abs(o.residual(eq.x, eq.nu, eq.lam, eq.w, eq.p))) <= 1e-6
    p = k.p0 + np.random.default_rng(0).random(k.n_p)
    warm = o.solve(p, warm=eq)
    assert warm.converged and warm.residual <= 1e-6 and warm.relaxation_iterations == 0
    # each follower's strategy is a distribution
    for sl in k.slices:
        assert abs(warm.x[sl].sum() - 1) < 1e-9 and warm.x[sl].min() > 0


def test_same_seed_same_start():
    k = kernel_of(build_game("nfg", seed=3, players=2, actions=4))
    o = EquilibriumOracle(k)
    a, b = o.random_start(k.p0, 5), o.random_start(k.p0, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, o.random_start(k.p0, 6))


def _box_game():
    """Follower i minimises (x_i - pi_i - 0.25 x_j)^2 over [0, 1] with a shared budget row."""
    g = StackelbergGame("box")
    m = g.model
    m.pi = pyo.Var([0, 1], bounds=(-2, 2), initialize=0)
    fs = [g.add_follower(f"f{i}") for i in range(2)]
    for f in fs:
        f.x = pyo.Var([0, 1], bounds=(0, 1), initialize=0.5)
    for i, f in enumerate(fs):
        other = fs[1 - i]
        f.obj = pyo.Objective(expr=(f.x[0] - m.pi[i] - 0.25 * other.x[0]) ** 2 + (f.x[1] - 0.9) ** 2)
        f.cap = pyo.Constraint(expr=f.x[0] + f.x[1] <= 1.2)
    g.set_leader([m.pi], sum(f.x[0] for f in fs))
    return g


def test_active_bounds_and_inequalities():
    k = kernel_of(_box_game())
    o = EquilibriumOracle(k)
    # pi large: x[0] wants above 1 -> the capacity row binds
    eq = o.solve(np.array([1.5, -1.0]), rng=0)
    assert eq.converged
    x = eq.x.reshape(2, 2)
    assert abs(x[1, 0]) < 1e-9  # follower 1 pushed to its lower bound
    assert abs(x[0].sum() - 1.2) < 1e-9 and eq.lam[0] > 0  # capacity binds for follower 0
    # warm start across an active-set change
    eq2 = o.solve(np.array([0.1, 0.2]), warm=eq)
    assert eq2.converged and eq2.residual <= 1e-6


def test_non_convergence_is_a_status():
    k = kernel_of(build_game("nfg", seed=3, players=3, actions=5))
    o = EquilibriumOracle(k, tol=1e-30, max_newton=2, max_relaxation=2)
    eq = o.solve(k.p0, rng=0)
    assert eq.status is Status.NOT_CONVERGED and eq.residual > 0


# ----------------------------------------------------------------------- the API
def test_solve_keywords_and_their_errors():
    k = kernel_of(make_duopoly())
    o = EquilibriumOracle(k)
    p = np.array([3.0, 1.5])
    eq = o.solve(p, rng=1)
    with pytest.raises(ValueError, match="give warm= .* or x0= .*, not both"):
        o.solve(p, warm=eq, x0=eq.x)
    with pytest.raises(ValueError, match="warm must be an Equilibrium, got ndarray"):
        o.solve(p, warm=eq.x)
    with pytest.raises(ValueError, match=r"follower start must have shape \(2,\), got \(3,\)"):
        o.solve(p, x0=np.zeros(3))
    with pytest.raises(ValueError, match=r"leader values must have shape \(2,\)"):
        o.solve(np.zeros(3), rng=0)
    from_x0 = o.solve(p, x0=np.array([5.0, -5.0]))
    assert from_x0.converged
    np.testing.assert_allclose(from_x0.x, eq.x, atol=1e-7)


@pytest.mark.parametrize("options,match", [
    (dict(damping=2.0), r"damping must be in \(0, 1\], got 2.0"),
    (dict(handover_ladder=(1e-5, 1e-4)), "handover_ladder must be a decreasing sequence"),
    (dict(cold_start="newton"), "cold_start must be 'gradient-play', 'relaxation' or 'auto', got 'newton'"),
    (dict(tol=-1.0), "tol"),
    (dict(max_warm_newton=0), "max_warm_newton"),
    (dict(no_such_option=1), "no_such_option"),
])
def test_options_are_validated(options, match):
    with pytest.raises(ValueError, match=match):
        EquilibriumOracle(kernel_of(make_duopoly()), **options)


def test_counters_count_cold_and_warm_solves():
    k = kernel_of(make_duopoly())
    o = EquilibriumOracle(k)
    eq = o.solve(np.array([3.0, 1.5]), rng=1)
    warm = o.solve(np.array([3.1, 1.5]), warm=eq)
    # every solve returns its own work; the oracle's counters are their sum
    assert (eq.counters.cold_starts, eq.counters.warm_solves) == (1, 0)
    assert (warm.counters.cold_starts, warm.counters.warm_solves) == (0, 1)
    assert eq.counters.newton_iterations == eq.newton_iterations
    c = o.counters
    assert c == eq.counters + warm.counters
    assert (c.cold_starts, c.warm_solves, c.failures) == (1, 1, 0)
    assert c.newton_iterations >= 1 and c.best_responses == 0 and c.deviations == 0
    # the duopoly's followers are convex in their own quantities: no deviation search
    assert c.deviation_responses == 0
    assert OracleCounters().as_dict() == dict.fromkeys(c.as_dict(), 0)


def test_the_deadline_is_an_argument_of_each_solve():
    k = kernel_of(make_duopoly())
    o = EquilibriumOracle(k)
    late = o.solve(np.array([3.0, 1.5]), rng=1, deadline=time.perf_counter() - 1.0)
    assert not late.converged  # nothing can run past a deadline already gone
    assert o.solve(np.array([3.0, 1.5]), rng=1, deadline=time.perf_counter() + 60).converged
    assert o.config.time_limit == 600.0  # the option (its default) is never written


def test_equilibrium_without_a_system_cannot_be_linearised():
    from stackopt.oracle import Equilibrium
    e = Equilibrium(x=np.zeros(1), nu=np.zeros(0), lam=np.zeros(0), w=np.zeros(1), p=np.zeros(1),
                    residual=0.0, status=Status.CONVERGED)
    with pytest.raises(ValueError, match="carries no KKT system"):
        sensitivity(None, e)


# ----------------------------------------------------------------------- cold starts
def test_entropy_game_starts_cold_by_gradient_play_without_best_responses():
    # the explicit step leaves the entropy's domain; linearly implicit steps take over
    k = kernel_of(build_game("nfg", seed=0, players=2, actions=20, budget=1.0))
    o = EquilibriumOracle(k)
    e = o.solve(k.p0, rng=0)
    assert e.converged and o.counters.best_responses == 0
    assert e.relaxation_iterations <= 60 and e.newton_iterations <= 5


def test_follower_with_one_inequality_row_starts_cold_by_gradient_play():
    # MacMPEC nash1's followers: y1 <= 15 - x2 and y2 <= 15 - x1, a half-line each
    g = StackelbergGame("nash1")
    m = g.model
    m.x = pyo.Var([1, 2], bounds=(0, 10), initialize=0)
    a, b = g.add_follower("a"), g.add_follower("b")
    a.y, b.y = pyo.Var(initialize=0), pyo.Var(initialize=0)
    a.obj = pyo.Objective(expr=a.y ** 2 + (8 / 3) * a.y * b.y - 34 * a.y)
    b.obj = pyo.Objective(expr=b.y ** 2 + 1.25 * a.y * b.y - 24.25 * b.y)
    a.c = pyo.Constraint(expr=a.y <= 15 - m.x[2])
    b.c = pyo.Constraint(expr=b.y <= 15 - m.x[1])
    g.set_leader([m.x], ((m.x[1] - a.y) ** 2 + (m.x[2] - b.y) ** 2) / 2, sense=pyo.minimize)
    k = kernel_of(g)
    o = EquilibriumOracle(k)
    e = o.solve(np.array([5.0, 5.0]), rng=0)
    assert e.converged and o.counters.best_responses == 0
    # unconstrained Nash point: 2 y1 + 8/3 y2 = 34, 1.25 y1 + 2 y2 = 24.25 -> (5, 9)
    np.testing.assert_allclose(e.x, [5.0, 9.0], atol=1e-6)
    e = o.solve(np.array([10.0, 12.0]), rng=0)  # y1 <= 3 binds
    assert e.converged and e.x[0] == pytest.approx(3.0) and e.lam[0] > 0


@pytest.mark.parametrize("seed,start", [(0, 1), (0, 3), (0, 4), (1, 4), (2, 0)])
def test_handover_to_newton_keeps_the_equilibrium_gradient_play_selects(seed, start):
    """Games with several equilibria: the cold start (gradient play handing over to Newton
    once its steps are small) lands where the same play, run on to a 1e-11 step, lands."""
    import time

    from stackopt.oracle.dynamics import GradientPlay
    game = build_game("ssg", seed=seed, targets=12, defenders=3, coverable=5, resources=2.0)
    k = kernel_of(game)
    o = EquilibriumOracle(k, tol=1e-9)
    play = GradientPlay(k, o.sets, step=o.config.play_step, patience=o.config.play_patience)
    x0 = o.random_start(k.p0, np.random.default_rng([0, start]))
    e = o.solve(k.p0, x0=x0)
    h = play.run(x0, k.p0, time.perf_counter() + 60, 20_000, 1e-11)
    assert e.converged and h.settled and o.counters.best_responses == 0
    np.testing.assert_allclose(e.x, h.z[0], atol=1e-8)


def test_gradient_play_halves_its_step_where_it_oscillates_not_where_it_drifts():
    """A linear objective on a long interval: the play moves at a constant step along one
    direction (no halving: it reaches the bound); a stiff quadratic with the step above
    its stability limit: the play flips back and forth, halves its step and settles."""
    import time

    from stackopt.oracle.dynamics import GradientPlay
    for expr, target in ((lambda y: -y, 100.0), (lambda y: 3.0 * (y - 40.0) ** 2, 40.0)):
        g = StackelbergGame("one")
        m = g.model
        m.x = pyo.Var(bounds=(0, 1), initialize=0)
        f = g.add_follower("f")
        f.y = pyo.Var(bounds=(0, 100), initialize=0)
        f.obj = pyo.Objective(expr=expr(f.y) + m.x * f.y)
        g.set_leader([m.x], f.y, sense=pyo.minimize)
        k = kernel_of(g)
        o = EquilibriumOracle(k)
        h = GradientPlay(k, o.sets, step=0.5, patience=10).run(np.array([0.0]), np.array([0.0]),
                                                               time.perf_counter() + 60, 5000, 1e-9)
        assert h.settled and h.z[0][0] == pytest.approx(target, abs=1e-6)
        assert (h.eta == 0.5) == (target == 100.0)


def _polyhedral_follower():
    """One follower on a polyhedron of two rows (not a box and one row: its dynamics are best
    responses), whose response from the origin is 58 away."""
    g = StackelbergGame("one follower, two rows")
    m = g.model
    m.p = pyo.Var(bounds=(0, 1), initialize=0.0)
    f = g.add_follower("f")
    f.x = pyo.Var([1, 2], bounds=(0, 100), initialize=0.0)
    f.total = pyo.Constraint(expr=f.x[1] + f.x[2] <= 100)
    f.gap = pyo.Constraint(expr=f.x[1] - f.x[2] <= 40)
    f.obj = pyo.Objective(expr=(f.x[1] - 50 - m.p) ** 2 + (f.x[2] - 30) ** 2)
    g.set_leader([m.p], f.x[1], sense=pyo.minimize)
    return g


def test_a_follower_alone_reaches_its_response_in_one_undamped_sweep():
    k = kernel_of(_polyhedral_follower())
    o = EquilibriumOracle(k)
    assert o.config.cold_start != "gradient-play" or not o.sets.simple
    e = o.solve(np.zeros(1), x0=np.zeros(2))
    assert e.converged and e.x == pytest.approx([50.0, 30.0], abs=1e-8)
    # damped by a half, the sweeps would halve the distance from 58 one at a time
    assert e.counters.dynamics_steps <= 2


def test_best_responses_that_settle_where_newton_failed_stop_the_relaxation():
    """bard1988_ex1 just past its optimum's kink: the follower's response has a KKT residual
    of 6e-8 from which Newton does not finish; the relaxation stops instead of sweeping to
    max_relaxation (300) and returns that point, not converged."""
    k = kernel_of(build_game("library", problem="bard1988_ex1"))
    o = EquilibriumOracle(k)
    e = o.solve(np.array([1.00000002]), rng=np.random.default_rng(0))
    assert e.counters.dynamics_steps <= 5 and e.residual < 1e-6
