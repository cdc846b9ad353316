"""Implicit differentiation of the followers' equilibrium (paper eq. 5), for every game.

As in JAXopt's ``implicit_diff``, one optimality function is differentiated
and the linear solve is an argument: the optimality function is the reduced
KKT residual ``R(y, p) = 0`` of :mod:`stackopt.oracle.residual` (its active set from
the one classifier there), factorised once per equilibrium by
:func:`sensitivity` with the oracle's linear solver; the caller holds that
factorisation (a :class:`~stackopt.residual.Linearization`) and passes it to
the products below, which factorise anew where it is not given. Then

* :func:`root_vjp`: ``g^T dy/dp = -u^T dR/dp`` with ``K^T u = g`` (the adjoint;
  ``K`` is not symmetric in multi-follower games, hence the transpose);
* :func:`root_jvp`: ``dy = -K^{-1} (dR/dp) dp`` (the tangent).

``dR/dp`` is never formed: only its products with vectors. A singular ``K``
is answered by least squares and flagged (``Linearization.singular``).
"""
from __future__ import annotations

import numpy as np

from .residual import Linearization


def root_vjp(system, lin: Linearization, cotangent: np.ndarray) -> np.ndarray:
    """``cotangent^T dy*/dp`` for a cotangent on ``y = (x_F, nu, lam_A)`` (vector or columns)."""
    if lin.factor.n == 0:
        return np.zeros((system.kernel.n_p,) + np.shape(cotangent)[1:])
    u = lin.factor.solve(cotangent, trans=True)
    return -system.p_vjp(lin, u)


def root_jvp(system, lin: Linearization, dp: np.ndarray) -> np.ndarray:
    """``(dy*/dp) dp`` on ``y = (x_F, nu, lam_A)``."""
    if lin.factor.n == 0:
        return np.zeros(0)
    return -lin.factor.solve(system.p_jvp(lin, dp))


def sensitivity(kernel, eq, reuse: Linearization | None = None, jacobians=None) -> Linearization:
    """The factorised KKT system at ``eq``, computed here and returned to the caller.

    With ``reuse`` (the linearization of a nearby equilibrium with the same active
    set), its game Jacobian and factorization are kept and only ``dF/dp`` is
    evaluated anew: an approximation that saves the Jacobian where it is costly.
    ``jacobians``: ``(dF/dx, nonzeros of dF/dp)`` at ``eq``, where the caller evaluated
    them already (:func:`game_jacobians`).
    """
    if eq.system is None or eq.solver is None:
        raise ValueError("this Equilibrium carries no KKT system: build it with an "
                         "EquilibriumOracle (or pass system= and solver=)")
    J, jp = (None, None) if jacobians is None else jacobians
    return eq.system.linearize(eq.x, eq.lam, eq.w, eq.p, eq.solver, reuse=reuse, J=J, nu=eq.nu, jp=jp)


def game_jacobians(eqs) -> list | None:
    """``(dF/dx, nonzeros of dF/dp)`` of several equilibria at one leader strategy,
    evaluated together where that is one pass of the compiled terms for four of them
    (:meth:`~stackopt.kernel.GameKernel.Jx_points`: equilibria of one oracle with a dense
    solver, on a game of compiled loops without smooth rows, whose Jacobian is then
    ``dF/dx`` alone); each the one-point values to the last bit. None where they are
    not (one equilibrium, or another case): :func:`sensitivity` evaluates each."""
    if len(eqs) < 2:
        return None
    system, p = eqs[0].system, eqs[0].p
    if (system is None or system.smooth is not None or not system.kernel.uses_loops
            or any(e.system is not system or e.solver is None or not e.solver.dense
                   or not np.array_equal(e.p, p) for e in eqs)):
        return None
    X = np.array([e.x for e in eqs])
    return list(zip(system.kernel.Jx_points(X, p), system.kernel.Jp_points(X, p)))


def tangent(kernel, eq, dp: np.ndarray, lin: Linearization | None = None):
    """First-order change ``(dx, dnu, dlam)`` of the equilibrium for a leader step ``dp``
    (``lin``: the factorisation at ``eq``, if the caller holds it)."""
    lin = sensitivity(kernel, eq) if lin is None else lin
    return eq.system.split(root_jvp(eq.system, lin, np.asarray(dp, dtype=float)), lin.active)


def vjp(kernel, eq, gx: np.ndarray, lin: Linearization | None = None) -> np.ndarray:
    """``gx^T dx*/dp`` for ``gx`` of shape ``(n_x,)`` or ``(n_x, r)``; result ``(n_p,)`` or ``(n_p, r)``."""
    lin = sensitivity(kernel, eq) if lin is None else lin
    gx = np.asarray(gx, dtype=float)
    free = lin.active.free
    ct = np.zeros((lin.factor.n,) + gx.shape[1:])
    ct[:lin.active.n_free] = gx[free]
    return root_vjp(eq.system, lin, ct)


def equilibrium_jacobian(kernel, eq, lin: Linearization | None = None) -> np.ndarray:
    """Dense ``dx*/dp`` (``n_x`` by ``n_p``): the forward solve, for tests and small games."""
    return vjp(kernel, eq, np.eye(kernel.n_x), lin).T


def leader_gradients(kernel, eq, weights: np.ndarray | None = None, leader_all=None,
                     lin: Linearization | None = None):
    """Values and total derivatives in ``p`` of the leader's objective and constraints.

    Returns ``(objective, constraints, d objective/dp, d constraints/dp)``; with
    ``weights`` (length ``1 + n_c``) only the weighted sum's gradient is
    returned in place of the two gradients, at the cost of one adjoint solve.
    ``leader_all`` may pass ``kernel.leader_all(eq.x, eq.p)`` already computed, ``lin``
    the factorisation at ``eq``.
    """
    obj, cons, Jx, jp = kernel.leader_all(eq.x, eq.p) if leader_all is None else leader_all
    if weights is not None:
        gx = weights @ Jx
        gp = np.bincount(kernel.Lp_cols, weights=weights[kernel.Lp_rows] * jp,
                         minlength=kernel.n_p).astype(float, copy=False)
        return obj, cons, gp + vjp(kernel, eq, gx, lin)
    _, Jp = kernel.leader_jacobian(eq.x, eq.p)
    total = Jp + vjp(kernel, eq, Jx.T, lin).T
    return obj, cons, total[0], total[1:]
