"""Implicit differentiation of the followers' equilibrium (paper eq. 5), for every game.

At an equilibrium the active constraints hold as equalities and the inactive
multipliers are zero, so the KKT residual of :mod:`stackopt.kernel` reduces to

    F_F(x, p) + A_F^T nu + G_AF^T lam_A = 0,   A x + E p = b,   G_A x + H_A p = h_A

over the free variables F (variables at a bound stay there). Its Jacobian in
``(x_F, nu, lam_A)`` is the KKT matrix ``K``; the leader needs the
vector-Jacobian product ``g^T dx/dp = -u^T M`` with ``K^T u = (g_F, 0, 0)`` and
``M = (dF_F/dp, E, H_A)``. ``K`` is not symmetric in multi-follower games, hence
the transpose. A singular ``K`` falls back to least squares and is flagged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import Factor, factor, kkt_matrix, solve


@dataclass
class Sensitivity:
    """The factorised KKT matrix at one equilibrium."""

    free: np.ndarray  # bool mask over x
    active: np.ndarray  # bool mask over the inequality rows
    factor: Factor  # LU of the KKT matrix K (least squares when singular)
    J: np.ndarray  # dense dF/dx at the equilibrium
    Jp: np.ndarray  # nonzeros of dF/dp at the equilibrium (kernel.Jp_rows, kernel.Jp_cols)

    @property
    def singular(self) -> bool:
        return self.factor.singular


def tangent(kernel, eq, dp: np.ndarray):
    """First-order change ``(dx, dnu, dlam)`` of the equilibrium for a leader step ``dp``.

    Uses the factorisation cached on ``eq`` (the oracle's predictor for warm starts).
    """
    sens = sensitivity(kernel, eq)
    k = kernel
    free, act = sens.free, sens.active
    jpdp = np.bincount(k.Jp_rows, weights=sens.Jp * dp[k.Jp_cols], minlength=k.n_x).astype(float)
    rhs = -np.concatenate([jpdp[free], k.eq.E @ dp if k.eq.E.size else np.zeros(0),
                           k.ineq.E[act] @ dp if k.ineq.E.size else np.zeros(0)])
    d = solve(sens.factor, rhs)
    nf, me = int(free.sum()), k.eq.M.shape[0]
    dx = np.zeros(k.n_x)
    dx[free] = d[:nf]
    dlam = np.zeros(k.ineq.M.shape[0])
    dlam[act] = d[nf + me:]
    return dx, d[nf:nf + me], dlam


def sensitivity(kernel, eq, reuse: Sensitivity | None = None) -> Sensitivity:
    """Build (once per equilibrium, cached on it) the KKT matrix and its factorisation.

    With ``reuse`` (the sensitivity of a nearby equilibrium with the same active
    sets), its game Jacobian and factorisation are kept and only ``dF/dp`` is
    evaluated anew: an approximation that saves the Jacobian where it is costly.
    """
    sens = eq.cache.get("sensitivity")
    if sens is not None:
        return sens
    k = kernel
    x, p, w, lam = eq.x, eq.p, eq.w, eq.lam
    tol_lb = 1e-9 * (1 + np.abs(np.where(np.isfinite(k.x_lb), k.x_lb, 0.0)))
    tol_ub = 1e-9 * (1 + np.abs(np.where(np.isfinite(k.x_ub), k.x_ub, 0.0)))
    # a bound whose multiplier vanishes is weakly active: counted free (one-sided derivative
    # into the interior), which keeps K regular where several bounds meet an equality
    fixed = ((x - k.x_lb <= tol_lb) & (w < 0)) | ((k.x_ub - x <= tol_ub) & (w > 0))
    free = ~fixed
    slack = k.ineq_rhs(p) - k.ineq.M @ x
    active = (lam > 0) | (slack <= 1e-9 * (1 + np.abs(k.ineq.rhs)))
    if (reuse is not None and np.array_equal(reuse.free, free)
            and np.array_equal(reuse.active, active)):
        sens = Sensitivity(free=free, active=active, factor=reuse.factor, J=reuse.J,
                           Jp=k.Jp_values(x, p))
        eq.cache["sensitivity"] = sens
        return sens
    J, Jp = k.jacobians(x, p)
    nf = int(free.sum())
    f = factor(kkt_matrix(J, k.eq.M, k.ineq.M, None if nf == k.n_x else free, active))
    sens = Sensitivity(free=free, active=active, factor=f, J=J, Jp=Jp)
    eq.cache["sensitivity"] = sens
    return sens


def vjp(kernel, eq, gx: np.ndarray) -> np.ndarray:
    """``gx^T dx*/dp`` for ``gx`` of shape ``(n_x,)`` or ``(n_x, r)``; result ``(n_p,)`` or ``(n_p, r)``."""
    sens = sensitivity(kernel, eq)
    gx = np.asarray(gx, dtype=float)
    vec = gx.ndim == 1
    g2 = gx[:, None] if vec else gx
    nf = int(sens.free.sum())
    n = sens.factor.K.shape[0]
    rhs = np.zeros((n, g2.shape[1]))
    rhs[:nf] = g2[sens.free]
    if n == 0:
        out = np.zeros((kernel.n_p, g2.shape[1]))
    else:
        u = solve(sens.factor, rhs, trans=True)
        ux = np.zeros((kernel.n_x, g2.shape[1]))
        ux[sens.free] = u[:nf]
        me = kernel.eq.M.shape[0]
        out = -np.column_stack([kernel.Jp_T_dot(sens.Jp, ux[:, r]) for r in range(ux.shape[1])])
        if me:
            out -= kernel.eq.E.T @ u[nf:nf + me]
        if sens.active.any():
            out -= kernel.ineq.E[sens.active].T @ u[nf + me:]
    return out[:, 0] if vec else out


def equilibrium_jacobian(kernel, eq) -> np.ndarray:
    """Dense ``dx*/dp`` (``n_x`` by ``n_p``): the forward solve, for tests and small games."""
    return vjp(kernel, eq, np.eye(kernel.n_x)).T


def leader_gradients(kernel, eq, weights: np.ndarray | None = None, leader_all=None):
    """Values and total derivatives in ``p`` of the leader's objective and constraints.

    Returns ``(objective, constraints, d objective/dp, d constraints/dp)``; with
    ``weights`` (length ``1 + n_c``) only the weighted sum's gradient is
    returned in place of the two gradients, at the cost of one adjoint solve.
    ``leader_all`` may pass ``kernel.leader_all(eq.x, eq.p)`` already computed.
    """
    obj, cons, Jx, jp = kernel.leader_all(eq.x, eq.p) if leader_all is None else leader_all
    if weights is not None:
        gx = weights @ Jx
        gp = np.bincount(kernel.Lp_cols, weights=weights[kernel.Lp_rows] * jp,
                         minlength=kernel.n_p).astype(float)
        return obj, cons, gp + vjp(kernel, eq, gx)
    _, Jp = kernel.leader_jacobian(eq.x, eq.p)
    total = Jp + vjp(kernel, eq, Jx.T).T
    return obj, cons, total[0], total[1:]
