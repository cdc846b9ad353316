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

import warnings

import numpy as np
import scipy.linalg as sla


@dataclass
class Sensitivity:
    """The factorised KKT matrix at one equilibrium."""

    free: np.ndarray  # bool mask over x
    active: np.ndarray  # bool mask over the inequality rows
    K: np.ndarray
    lu: tuple | None  # LU factors of K, None when singular
    singular: bool
    J: np.ndarray  # dense dF/dx at the equilibrium
    Jp: np.ndarray  # nonzeros of dF/dp at the equilibrium (kernel.Jp_rows, kernel.Jp_cols)


def sensitivity(kernel, eq) -> Sensitivity:
    """Build (once per equilibrium, cached on it) the KKT matrix and its factorisation."""
    sens = eq.cache.get("sensitivity")
    if sens is not None:
        return sens
    k = kernel
    x, p, w, lam = eq.x, eq.p, eq.w, eq.lam
    tol_lb = 1e-9 * (1 + np.abs(np.where(np.isfinite(k.x_lb), k.x_lb, 0.0)))
    tol_ub = 1e-9 * (1 + np.abs(np.where(np.isfinite(k.x_ub), k.x_ub, 0.0)))
    fixed = ((x - k.x_lb <= tol_lb) & (w <= 0)) | ((k.x_ub - x <= tol_ub) & (w >= 0))
    free = ~fixed
    slack = k.ineq_rhs(p) - k.ineq.M @ x
    active = (lam > 0) | (slack <= 1e-9 * (1 + np.abs(k.ineq.rhs)))
    J, Jp = k.jacobians(x, p)
    A, G = k.eq.M[:, free], k.ineq.M[active][:, free]
    nf, me, ma = int(free.sum()), A.shape[0], G.shape[0]
    K = np.zeros((nf + me + ma, nf + me + ma))
    K[:nf, :nf] = J[np.ix_(free, free)]
    K[:nf, nf:nf + me] = A.T
    K[:nf, nf + me:] = G.T
    K[nf:nf + me, :nf] = A
    K[nf + me:, :nf] = G
    lu, singular = None, True
    if K.size:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sla.LinAlgWarning)
                lu = sla.lu_factor(K, check_finite=False)
            d = np.abs(np.diag(lu[0]))
            singular = not (np.all(np.isfinite(lu[0])) and d.min() > 1e-12 * max(d.max(), 1.0))
        except (ValueError, np.linalg.LinAlgError):
            singular = True
        if singular:
            lu = None
    else:
        singular = False
    sens = Sensitivity(free=free, active=active, K=K, lu=lu, singular=singular, J=J, Jp=Jp)
    eq.cache["sensitivity"] = sens
    return sens


def _solve_transposed(sens: Sensitivity, rhs: np.ndarray) -> np.ndarray:
    if sens.lu is not None:
        return sla.lu_solve(sens.lu, rhs, trans=1, check_finite=False)
    return np.linalg.lstsq(sens.K.T, rhs, rcond=None)[0]


def vjp(kernel, eq, gx: np.ndarray) -> np.ndarray:
    """``gx^T dx*/dp`` for ``gx`` of shape ``(n_x,)`` or ``(n_x, r)``; result ``(n_p,)`` or ``(n_p, r)``."""
    sens = sensitivity(kernel, eq)
    gx = np.asarray(gx, dtype=float)
    vec = gx.ndim == 1
    g2 = gx[:, None] if vec else gx
    nf = int(sens.free.sum())
    n = sens.K.shape[0]
    rhs = np.zeros((n, g2.shape[1]))
    rhs[:nf] = g2[sens.free]
    if n == 0:
        out = np.zeros((kernel.n_p, g2.shape[1]))
    else:
        u = _solve_transposed(sens, rhs)
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
        gp = np.bincount(kernel.Lp_cols, weights=weights[kernel.Lp_rows] * jp, minlength=kernel.n_p)
        return obj, cons, gp + vjp(kernel, eq, gx)
    _, Jp = kernel.leader_jacobian(eq.x, eq.p)
    total = Jp + vjp(kernel, eq, Jx.T).T
    return obj, cons, total[0], total[1:]
