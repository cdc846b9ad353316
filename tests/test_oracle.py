"""The equilibrium oracle: residual tolerance, seeding, active constraints, failure as a status."""
import numpy as np
import pyomo.environ as pyo

from stackopt import StackelbergGame, Status
from stackopt.kernel import kernel_of
from stackopt.models import build_game
from stackopt.oracle import EquilibriumOracle
from conftest import DUOPOLY_M, make_duopoly


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
