"""Implicit gradients against closed forms and central finite differences of re-solved equilibria."""
import dataclasses

import numpy as np
from games import DUOPOLY_M, make_duopoly
from test_oracle import _box_game

from stackopt import check_gradient
from stackopt.kernel import kernel_of
from stackopt.models import build_game
from stackopt.oracle import EquilibriumOracle, equilibrium_jacobian, leader_gradients, sensitivity


def test_duopoly_closed_form_nonsymmetric():
    g = make_duopoly()
    k = kernel_of(g)
    eq = EquilibriumOracle(k, tol=1e-12).solve(np.array([2.0, 1.0]), rng=0)
    Minv = np.linalg.inv(DUOPOLY_M)
    np.testing.assert_allclose(equilibrium_jacobian(k, eq), Minv, atol=1e-10)
    assert not np.allclose(sensitivity(k, eq).factor.K, sensitivity(k, eq).factor.K.T)
    _, _, gobj, gcons = leader_gradients(k, eq)
    x = eq.x
    dfdx = np.array([-2 * (x[0] - 3), -2 * (x[1] - 1)])
    np.testing.assert_allclose(gobj, dfdx @ Minv, rtol=1e-10)
    np.testing.assert_allclose(gcons[0], np.ones(2) @ Minv, rtol=1e-10)
    assert check_gradient(g, seed=0).max_relative_error <= 1e-5


def test_nfg_gradient_vs_finite_differences():
    g = build_game("nfg", seed=1, players=3, actions=4, budget=1.0)
    r = check_gradient(g, seed=1)
    assert r.max_relative_error <= 1e-5
    assert r.equilibrium_residual <= 1e-6


def test_active_set_gradient_vs_finite_differences():
    g = _box_game()
    r = check_gradient(g, leader_values=[1.5, -1.0])
    assert r.max_relative_error <= 1e-5
    # follower 1 sits at its bound: its equilibrium does not move with pi_1
    k = kernel_of(g)
    eq = EquilibriumOracle(k, tol=1e-12).solve(np.array([1.5, -1.0]), rng=0)
    assert np.allclose(equilibrium_jacobian(k, eq)[2], 0.0)


def test_singular_kkt_falls_back_and_is_flagged():
    g = make_duopoly()
    k = kernel_of(g)
    eq = EquilibriumOracle(k).solve(np.array([1.0, 1.0]), rng=0)
    sens = sensitivity(k, eq)
    assert not sens.singular
    eq = dataclasses.replace(eq)  # the same equilibrium, not yet linearised
    import stackopt.oracle.implicit as imp
    J = k.Jx(eq.x, eq.p)
    orig = k.Jx
    k.Jx = lambda x, p: np.zeros_like(J)  # a degenerate game Jacobian
    try:
        sens = imp.sensitivity(k, eq)
        assert sens.singular and sens.factor.lu is None
        assert np.all(np.isfinite(imp.vjp(k, eq, np.ones(2))))
    finally:
        k.Jx = orig
