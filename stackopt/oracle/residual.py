"""The followers' stacked KKT system: one residual for Newton, the tangent and the adjoint.

With ``z = (x, nu, lam, w)`` (primal values, equality, inequality and bound
multipliers; ``w > 0`` at an upper bound, ``< 0`` at a lower one) the
residual of :mod:`stackopt.kernel`'s followers is

    F(x, p) + A^T nu + G^T lam + w = 0,      A x - b(p) = 0,
    min(lam, h(p) - G x) = 0,                x - clip(x + w, lb, ub) = 0.

**One active-set rule** (:meth:`KKTResidual.classify`) decides which bounds
and inequalities are held as equalities, for the semismooth Newton step, the
tangent predictor, the adjoint and the second-order test alike. Each
complementarity pair is a slack ``a >= 0`` (``x - lb``, ``ub - x`` or
``h - G x``) and a multiplier ``b >= 0`` (``-w``, ``w`` or ``lam``); the pair is
*active* when ``b - a > active_tol * (1 + |bound|)``. This is the branch the
``min`` of the residual takes, so a Newton step and the derivatives agree; a
weakly active pair (both zero) counts inactive, which gives the one-sided
derivative into the interior and keeps the KKT matrix regular where several
bounds meet an equality.

With the active set fixed, the residual reduces to a smooth system
``R(y, p) = 0`` in ``y = (x_F, nu, lam_A)`` (free variables, all equality
multipliers, active inequality multipliers):

    F_F(x, p) + A_F^T nu + G_AF^T lam_A = 0,   A x - b(p) = 0,   G_A x - h_A(p) = 0,

whose Jacobian in ``y`` is the KKT matrix ``K`` (:meth:`KKTResidual.matrix`)
and whose Jacobian in ``p`` is only ever applied to vectors
(:meth:`KKTResidual.p_jvp`, :meth:`KKTResidual.p_vjp`). :meth:`linearize`
factorises ``K`` with the linear solver passed in (:mod:`stackopt.oracle.linalg`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .linalg import Factorization, LinearSolver


@dataclass(frozen=True)
class ActiveSet:
    """Which bounds and inequality rows are held: boolean masks over ``x`` and the rows."""

    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray

    @property
    def fixed(self) -> np.ndarray:
        return self.lower | self.upper

    @property
    def free(self) -> np.ndarray:
        return ~(self.lower | self.upper)

    def __eq__(self, other) -> bool:
        return (isinstance(other, ActiveSet) and np.array_equal(self.lower, other.lower)
                and np.array_equal(self.upper, other.upper) and np.array_equal(self.rows, other.rows))

    __hash__ = None


@dataclass
class Linearization:
    """The reduced KKT system factorised at one point ``(x, p)`` with its active set.

    ``J`` is the game Jacobian ``dF/dx`` there (dense or sparse, as the solver
    wants) and ``jp`` the nonzeros of ``dF/dp`` (at the kernel's ``Jp_rows``,
    ``Jp_cols``).
    """

    x: np.ndarray
    p: np.ndarray
    active: ActiveSet
    factor: Factorization
    J: object
    jp: np.ndarray

    @property
    def singular(self) -> bool:
        return self.factor.singular


class KKTResidual:
    """Value, active set, reduced Jacobians and linearisation of the followers' KKT system."""

    def __init__(self, kernel, active_tol: float = 1e-10):
        if not active_tol >= 0:
            raise ValueError(f"active_tol must be >= 0, got {active_tol!r}")
        k = kernel
        self.kernel, self.active_tol = k, float(active_tol)
        self.n_x, self.m_e, self.m_i = k.n_x, k.eq.n_rows, k.ineq.n_rows
        self.lb, self.ub = k.x_lb, k.x_ub
        self.A, self.G = k.eq.M, k.ineq.M
        # small row blocks as dense arrays: scipy.sparse's per-call overhead dominates there
        small = (self.m_e + self.m_i) * self.n_x <= 200_000
        self.A_op = self.A.toarray() if small else self.A
        self.G_op = self.G.toarray() if small else self.G
        self.AT, self.GT = (self.A_op.T, self.G_op.T) if small else (self.A.T.tocsr(), self.G.T.tocsr())
        self._last_p = self._last_rhs = None
        self._tol_lb = active_tol * (1 + np.abs(np.where(np.isfinite(self.lb), self.lb, 0.0)))
        self._tol_ub = active_tol * (1 + np.abs(np.where(np.isfinite(self.ub), self.ub, 0.0)))
        self._dense_rows = None

    # ---------------------------------------------------------------- value
    def value(self, x, nu, lam, w, p, F=None) -> np.ndarray:
        """The residual stacked as (stationarity, equalities, inequalities, bounds)."""
        if F is None:
            F = self.kernel.F(x, p)
        r = F + w
        if self.m_e:
            r = r + self.AT @ nu
        if self.m_i:
            r = r + self.GT @ lam
        b, h = self.rhs(p)
        req = self.A_op @ x - b
        rin = np.minimum(lam, h - self.G_op @ x)
        rb = x - np.clip(x + w, self.lb, self.ub)
        return np.concatenate([r, req, rin, rb])

    def rhs(self, p):
        """``(b(p), h(p))``, kept for the last ``p``."""
        if self._last_p is None or not np.array_equal(self._last_p, p):
            self._last_rhs = (self.kernel.eq_rhs(p), self.kernel.ineq_rhs(p))
            self._last_p = np.array(p, dtype=float)
        return self._last_rhs

    @staticmethod
    def norm(res: np.ndarray) -> float:
        """Infinity norm, ``inf`` where anything is not finite."""
        return float(np.max(np.abs(res), initial=0.0)) if np.all(np.isfinite(res)) else float("inf")

    # ------------------------------------------------------------ active set
    def classify(self, x, lam, w, p) -> ActiveSet:
        """The one active-set rule (see the module docstring)."""
        lower = (self.lb - x) - w > self._tol_lb
        upper = w - (self.ub - x) > self._tol_ub
        if self.m_i:
            h = self.rhs(p)[1]
            rows = lam - (h - self.G_op @ x) > self.active_tol * (1 + np.abs(h))
        else:
            rows = np.zeros(0, dtype=bool)
        return ActiveSet(lower=lower, upper=upper & ~lower, rows=rows)

    # ------------------------------------------------------------ Jacobians
    def jacobian(self, x, p, dense: bool):
        """The game Jacobian ``dF/dx``, dense or sparse."""
        return self.kernel.Jx(x, p) if dense else self.kernel.Jx_sparse(x, p)

    def rows_dense(self):
        if self._dense_rows is None:
            self._dense_rows = (self.A.toarray(), self.G.toarray())
        return self._dense_rows

    def matrix(self, J, active: ActiveSet):
        """The reduced KKT matrix ``[[J_FF, A_F^T, G_AF^T], [A_F, 0, 0], [G_AF, 0, 0]]``,
        dense when ``J`` is."""
        free = active.free
        allfree = bool(free.all())
        if sp.issparse(J):
            Jf = J if allfree else J[free][:, free]
            Af = self.A if allfree else self.A[:, free]
            Gf = self.G[active.rows] if allfree else self.G[active.rows][:, free]
            C = sp.vstack([Af, Gf], format="csr")
            nc = C.shape[0]
            return sp.bmat([[Jf, C.T], [C, sp.csr_matrix((nc, nc))]], format="csc")
        A, G = self.rows_dense()
        if allfree:
            Jf, Af, Gf = J, A, G[active.rows]
        else:
            Jf = J[np.ix_(free, free)]
            Af, Gf = A[:, free], G[np.ix_(active.rows, free)]
        nf, me, ma = Jf.shape[0], Af.shape[0], Gf.shape[0]
        K = np.zeros((nf + me + ma, nf + me + ma))
        K[:nf, :nf] = Jf
        if me:
            K[:nf, nf:nf + me] = Af.T
            K[nf:nf + me, :nf] = Af
        if ma:
            K[:nf, nf + me:] = Gf.T
            K[nf + me:, :nf] = Gf
        return K

    def split(self, y: np.ndarray, active: ActiveSet):
        """``y = (x_F, nu, lam_A)`` (or a matrix of such columns) as full-size ``(dx, dnu, dlam)``."""
        free = active.free
        nf = int(free.sum())
        tail = y.shape[1:]
        dx = np.zeros((self.n_x,) + tail)
        dx[free] = y[:nf]
        dlam = np.zeros((self.m_i,) + tail)
        dlam[active.rows] = y[nf + self.m_e:]
        return dx, y[nf:nf + self.m_e], dlam

    def p_jvp(self, lin: Linearization, dp: np.ndarray) -> np.ndarray:
        """``(dR/dp) dp`` for a leader direction ``dp``: the reduced residual's change."""
        k, p = self.kernel, lin.p
        free = lin.active.free
        parts = [k.Jp_dot(lin.jp, dp)[free], -k.eq.rhs_jvp(p, dp)]
        if self.m_i:
            parts.append(-k.ineq.rhs_jvp(p, dp)[lin.active.rows])
        return np.concatenate(parts)

    def p_vjp(self, lin: Linearization, u: np.ndarray) -> np.ndarray:
        """``u^T dR/dp`` for ``u`` of shape ``(len(y),)`` or ``(len(y), r)``."""
        k, p = self.kernel, lin.p
        ux, unu, ulam = self.split(u, lin.active)
        vec = ux.ndim == 1
        ux2 = ux[:, None] if vec else ux
        out = np.column_stack([k.Jp_T_dot(lin.jp, ux2[:, r]) for r in range(ux2.shape[1])])
        if self.m_e:
            out -= np.reshape(k.eq.rhs_vjp(p, unu), out.shape)
        if self.m_i and lin.active.rows.any():
            out -= np.reshape(k.ineq.rhs_vjp(p, ulam), out.shape)
        return out[:, 0] if vec else out

    def linearize(self, x, lam, w, p, solver: LinearSolver, reuse: Linearization | None = None,
                  J=None) -> Linearization:
        """Factorise the reduced KKT matrix at ``(x, p)`` with the active set of ``(x, lam, w)``.

        With ``reuse`` (a linearisation of a nearby point with the same active
        set) its game Jacobian and factorization are kept and only ``dF/dp`` is
        evaluated here: an approximation that saves the Jacobian where it is costly.
        """
        active = self.classify(x, lam, w, p)
        jp = self.kernel.Jp_values(x, p)
        if reuse is not None and reuse.active == active:
            return Linearization(x=x, p=p, active=active, factor=reuse.factor, J=reuse.J, jp=jp)
        if J is None:
            J = self.jacobian(x, p, solver.dense)
        return Linearization(x=x, p=p, active=active, factor=solver.factor(self.matrix(J, active)),
                             J=J, jp=jp)


def second_order_ok(system: KKTResidual, x, lam, w, p, tol: float = 1e-8, J=None) -> bool:
    """Every follower's Hessian is PSD on the null space of its active constraints (a local
    Nash equilibrium, not merely a KKT point). Held bounds (the one rule of
    :meth:`KKTResidual.classify`) are removed; the test is on the remaining variables and the
    follower's equalities and active rows."""
    k = system.kernel
    J = k.Jx(x, p) if J is None else (J.toarray() if sp.issparse(J) else J)
    active = system.classify(x, lam, w, p)
    fixed = active.fixed
    A, G = system.rows_dense()
    for i, sl in enumerate(k.slices):
        free = ~fixed[sl]
        if not free.any():
            continue
        idx = np.arange(sl.start, sl.stop)[free]
        H = J[np.ix_(idx, idx)]
        H = 0.5 * (H + H.T)
        rows = np.vstack([A[k.eq.owner == i][:, idx], G[active.rows & (k.ineq.owner == i)][:, idx]])
        Z = sla.null_space(rows) if rows.shape[0] else np.eye(idx.size)
        if Z.shape[1] == 0:
            continue
        ev = np.linalg.eigvalsh(Z.T @ H @ Z)
        if ev.min() < -tol * max(1.0, np.abs(ev).max()):
            return False
    return True
