"""The followers' stacked KKT system: one residual for Newton, the tangent and the adjoint.

With ``z = (x, nu, lam, w)`` (primal values, equality, inequality and bound
multipliers; ``w > 0`` at an upper bound, ``< 0`` at a lower one) the
residual of :mod:`stackopt.kernel.kernel`'s followers is

    F(x, p) + A^T nu + G^T lam + w = 0,      A x - b(p) = 0,
    min(lam, h(p) - G x) = 0,                x - clip(x + w, lb, ub) = 0.

Where the game has smooth rows (:mod:`stackopt.kernel.smooth_rows`: follower constraints
nonlinear in their own variables, in other followers' variables or with
coefficients in the leader's, and shared constraints), ``nu`` and ``lam`` go on
with their slots' multipliers ``sigma`` (after the linear rows'), stationarity
gains ``B(x, p)^T sigma``, and the slots' rows join the equalities
(``c_E(x, p) = 0``) and the complementarity (``min(sigma_I, -c_I(x, p)) = 0``).
The multipliers are per follower or shared as the game's concept says, so this
one residual is every concept's: Rosen's normalized (variational or weighted)
equilibria and any generalized Nash equilibrium alike.

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

(with smooth rows, ``+ B_F^T sigma`` and ``c_E = 0``, ``c_A = 0``) whose Jacobian in
``y`` is the KKT matrix ``K`` (:meth:`KKTResidual.matrix`; its first block is the
followers' Lagrangian Hessian ``dF/dx + d(B^T sigma)/dx``, its constraint columns
``B`` and rows ``C``) and whose Jacobian in ``p`` is only ever applied to vectors
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
    """Which bounds and inequality rows are held: boolean masks over ``x`` and the rows.

    The masks are values: the free variables, their count and the set's identity
    (:meth:`__eq__`) are derived once, as every Newton step, tangent and adjoint reads them.
    """

    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray

    def __post_init__(self):
        # derived masks (plain attributes, not fields): fixed, free, and the count n_free
        fixed = self.lower | self.upper
        set_ = object.__setattr__
        set_(self, "fixed", fixed)
        set_(self, "free", ~fixed)
        set_(self, "n_free", int(fixed.size - np.count_nonzero(fixed)))
        set_(self, "_key", (self.lower.shape, self.rows.shape, self.lower.tobytes(),
                            self.upper.tobytes(), self.rows.tobytes()))

    def __eq__(self, other) -> bool:
        return isinstance(other, ActiveSet) and self._key == other._key

    __hash__ = None


@dataclass
class Linearization:
    """The reduced KKT system factorised at one point ``(x, p)`` with its active set.

    ``J`` is the game Jacobian ``dF/dx`` there (with smooth rows, the Lagrangian
    Hessian ``dF/dx + d(B^T sigma)/dx``; dense or sparse, as the solver wants) and
    ``jp`` the nonzeros of ``dF/dp`` (at the kernel's ``Jp_rows``, ``Jp_cols``);
    ``smooth`` is ``(d(B^T sigma)/dp, Cp)`` there where the game has smooth rows.
    """

    x: np.ndarray
    p: np.ndarray
    active: ActiveSet
    factor: Factorization
    J: object
    jp: np.ndarray
    smooth: tuple | None = None

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
        self.smooth = k.smooth
        self.me_lin, self.mi_lin = k.eq.n_rows, k.ineq.n_rows  # the linear rows' multipliers
        self.n_x, self.m_e, self.m_i = k.n_x, k.n_eq, k.n_ineq
        self.lb, self.ub = k.x_lb, k.x_ub
        self.A, self.G = k.eq.M, k.ineq.M
        # small row blocks as dense arrays: scipy.sparse's per-call overhead dominates there
        small = (self.me_lin + self.mi_lin) * self.n_x <= 200_000
        self.A_op = self.A.toarray() if small else self.A
        self.G_op = self.G.toarray() if small else self.G
        self.AT, self.GT = (self.A_op.T, self.G_op.T) if small else (self.A.T.tocsr(), self.G.T.tocsr())
        self._last_p = self._last_rhs = None
        self._fixed_rhs = None  # (eq rows, inequality rows, (b, h)) where neither depends on p
        self._tol_lb = active_tol * (1 + np.abs(np.where(np.isfinite(self.lb), self.lb, 0.0)))
        self._tol_ub = active_tol * (1 + np.abs(np.where(np.isfinite(self.ub), self.ub, 0.0)))
        self._dense_rows = None

    # ---------------------------------------------------------------- value
    def value(self, x, nu, lam, w, p, F=None) -> np.ndarray:
        """The residual stacked as (stationarity, equalities, inequalities, bounds)."""
        if F is None:
            F = self.kernel.F(x, p)
        me, mi = self.me_lin, self.mi_lin
        r = F + w
        if me:
            r = r + self.AT @ nu[:me]
        if mi:
            r = r + self.GT @ lam[:mi]
        b, h = self.rhs(p)
        req = self.A_op @ x - b
        rin = np.minimum(lam[:mi], h - self.G_op @ x) if mi else lam[:0]
        rb = x - (x + w).clip(self.lb, self.ub)
        if self.smooth is None:
            return np.concatenate([r, req, rin, rb])
        sm = self.smooth
        r = r + sm.stationarity(x, p, self.sigma(nu, lam))
        c = sm.slot_values(x, p)
        return np.concatenate([r, req, c[:sm.n_eq], rin, np.minimum(lam[mi:], -c[sm.n_eq:]), rb])

    def sigma(self, nu, lam) -> np.ndarray:
        """The smooth slots' multipliers in ``(nu, lam)`` (equality slots first)."""
        return np.concatenate([nu[self.me_lin:], lam[self.mi_lin:]])

    def rhs(self, p):
        """``(b(p), h(p))``, kept for the last ``p``; where no row's right-hand side depends on
        the leader (the kernel's rows as they are now), kept for any ``p``."""
        k = self.kernel
        eq, ineq = k.eq, k.ineq
        if not (eq.depends_on_p or ineq.depends_on_p):
            kept = self._fixed_rhs
            if kept is None or kept[0] is not eq or kept[1] is not ineq:
                kept = self._fixed_rhs = (eq, ineq, (k.eq_rhs(p), k.ineq_rhs(p)))
            return kept[2]
        last = self._last_p
        if last is None or last.shape != np.shape(p) or not (last == p).all():
            self._last_rhs = (self.kernel.eq_rhs(p), self.kernel.ineq_rhs(p))
            self._last_p = np.array(p, dtype=float)
        return self._last_rhs

    @staticmethod
    def norm(res: np.ndarray) -> float:
        """Infinity norm, ``inf`` where anything is not finite."""
        res = np.abs(res)
        return float(res.max(initial=0.0)) if np.isfinite(res).all() else float("inf")

    # ------------------------------------------------------------ active set
    def classify(self, x, lam, w, p) -> ActiveSet:
        """The one active-set rule (see the module docstring)."""
        lower = (self.lb - x) - w > self._tol_lb
        upper = w - (self.ub - x) > self._tol_ub
        if self.mi_lin:
            h = self.rhs(p)[1]
            rows = lam[:self.mi_lin] - (h - self.G_op @ x) > self.active_tol * (1 + np.abs(h))
        else:
            rows = np.zeros(0, dtype=bool)
        if self.smooth is not None and self.smooth.n_in:
            sm = self.smooth
            c = sm.slot_values(x, p)[sm.n_eq:]
            held = lam[self.mi_lin:] + c > self.active_tol * sm.slot_bound_scale[sm.n_eq:]
            rows = np.concatenate([rows, held])
        return ActiveSet(lower=lower, upper=upper & ~lower, rows=rows)

    # ------------------------------------------------------------ Jacobians
    def jacobian(self, x, p, dense: bool, nu=None, lam=None):
        """The game Jacobian ``dF/dx``, dense or sparse; where smooth rows have second
        derivatives, the followers' Lagrangian Hessian ``dF/dx + d(B^T sigma)/dx`` at the
        multipliers ``nu``, ``lam`` (then required)."""
        J = self.kernel.Jx(x, p) if dense else self.kernel.Jx_sparse(x, p)
        if self.smooth is None or not self.smooth.has_hessian:
            return J
        if nu is None or lam is None:
            raise ValueError("the Lagrangian Hessian of a game with nonlinear constraints needs "
                             "the multipliers nu and lam")
        H = self.smooth.hessian_x(x, p, self.sigma(nu, lam), dense)
        return J + H if dense else sp.csr_matrix(J + H)

    def rows_dense(self):
        if self._dense_rows is None:
            self._dense_rows = (self.A.toarray(), self.G.toarray())
        return self._dense_rows

    def matrix(self, J, active: ActiveSet, x=None, p=None):
        """The reduced KKT matrix ``[[J_FF, A_F^T, G_AF^T], [A_F, 0, 0], [G_AF, 0, 0]]``,
        dense when ``J`` is; with smooth rows (the point ``(x, p)`` then required) their
        columns ``B`` and rows ``C`` join the equalities' and the active rows'."""
        if self.smooth is not None:
            return self._matrix_smooth(J, active, x, p)
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

    def _matrix_smooth(self, J, active: ActiveSet, x, p):
        """:meth:`matrix` of a game with smooth rows: columns ``[A; B_E; G; B_I]`` and rows
        ``[A; C_E; G; C_I]``, the active inequalities kept."""
        if x is None or p is None:
            raise ValueError("the KKT matrix of a game with smooth rows needs the point (x, p)")
        sm, dense = self.smooth, not sp.issparse(J)
        free = active.free
        if dense:
            A, G = self.rows_dense()
            Bm, Cm = sm.B(x, p, True), sm.C(x, p, True)
            cols = np.vstack([A, Bm[:sm.n_eq], np.vstack([G, Bm[sm.n_eq:]])[active.rows]])[:, free]
            rows = np.vstack([A, Cm[:sm.n_eq], np.vstack([G, Cm[sm.n_eq:]])[active.rows]])[:, free]
            Jf = J[np.ix_(free, free)]
            nf, nc = Jf.shape[0], rows.shape[0]
            K = np.zeros((nf + nc, nf + nc))
            K[:nf, :nf] = Jf
            K[:nf, nf:] = cols.T
            K[nf:, :nf] = rows
            return K
        Bm, Cm = sm.B(x, p, False), sm.C(x, p, False)
        cols = sp.vstack([self.A, Bm[:sm.n_eq], sp.vstack([self.G, Bm[sm.n_eq:]]).tocsr()[active.rows]],
                         format="csr")[:, free]
        rows = sp.vstack([self.A, Cm[:sm.n_eq], sp.vstack([self.G, Cm[sm.n_eq:]]).tocsr()[active.rows]],
                         format="csr")[:, free]
        Jf = sp.csr_matrix(J)[free][:, free]
        nc = rows.shape[0]
        return sp.bmat([[Jf, cols.T], [rows, sp.csr_matrix((nc, nc))]], format="csc")

    def split(self, y: np.ndarray, active: ActiveSet):
        """``y = (x_F, nu, lam_A)`` (or a matrix of such columns) as full-size ``(dx, dnu, dlam)``."""
        free, nf = active.free, active.n_free
        tail = y.shape[1:]
        if nf == self.n_x:  # every variable free: y begins with dx
            dx = np.array(y[:nf], dtype=float)
        else:
            dx = np.zeros((self.n_x,) + tail)
            dx[free] = y[:nf]
        dlam = np.zeros((self.m_i,) + tail)
        if self.m_i:
            dlam[active.rows] = y[nf + self.m_e:]
        return dx, y[nf:nf + self.m_e], dlam

    def p_jvp(self, lin: Linearization, dp: np.ndarray) -> np.ndarray:
        """``(dR/dp) dp`` for a leader direction ``dp``: the reduced residual's change."""
        k, p = self.kernel, lin.p
        free = lin.active.free
        if self.smooth is not None:
            Hp, Cp = lin.smooth
            sm = self.smooth
            cdp = Cp @ dp
            return np.concatenate([
                (k.Jp_dot(lin.jp, dp) + Hp @ dp)[free], -k.eq.rhs_jvp(p, dp), cdp[:sm.n_eq],
                np.concatenate([-k.ineq.rhs_jvp(p, dp), cdp[sm.n_eq:]])[lin.active.rows]])
        jdp = k.Jp_dot(lin.jp, dp)
        parts = [jdp if lin.active.n_free == self.n_x else jdp[free], -k.eq.rhs_jvp(p, dp)]
        if self.m_i:
            parts.append(-k.ineq.rhs_jvp(p, dp)[lin.active.rows])
        return np.concatenate(parts)

    def p_vjp(self, lin: Linearization, u: np.ndarray) -> np.ndarray:
        """``u^T dR/dp`` for ``u`` of shape ``(len(y),)`` or ``(len(y), r)``."""
        k, p = self.kernel, lin.p
        ux, unu, ulam = self.split(u, lin.active)
        vec = ux.ndim == 1
        if vec and self.smooth is None:  # one cotangent: no columns to stack
            out = k.Jp_T_dot(lin.jp, ux)
            if self.m_e and k.eq.depends_on_p:  # (b's derivative is zero otherwise: nothing to subtract)
                out -= k.eq.rhs_vjp(p, unu)
            if self.m_i and k.ineq.depends_on_p and lin.active.rows.any():
                out -= k.ineq.rhs_vjp(p, ulam)
            return out
        ux2 = ux[:, None] if vec else ux
        out = np.column_stack([k.Jp_T_dot(lin.jp, ux2[:, r]) for r in range(ux2.shape[1])])
        if self.smooth is not None:
            Hp, Cp = lin.smooth
            me, mi = self.me_lin, self.mi_lin
            u_sig = np.concatenate([unu[me:], ulam[mi:]])
            out += np.reshape(Hp.T @ ux2 + Cp.T @ np.reshape(u_sig, (u_sig.shape[0], -1)), out.shape)
            unu, ulam = unu[:me], ulam[:mi]
            if me:
                out -= np.reshape(k.eq.rhs_vjp(p, unu), out.shape)
            if mi and lin.active.rows[:mi].any():
                out -= np.reshape(k.ineq.rhs_vjp(p, ulam), out.shape)
            return out[:, 0] if vec else out
        if self.m_e:
            out -= np.reshape(k.eq.rhs_vjp(p, unu), out.shape)
        if self.m_i and lin.active.rows.any():
            out -= np.reshape(k.ineq.rhs_vjp(p, ulam), out.shape)
        return out[:, 0] if vec else out

    def linearize(self, x, lam, w, p, solver: LinearSolver, reuse: Linearization | None = None,
                  J=None, nu=None, jp=None) -> Linearization:
        """Factorise the reduced KKT matrix at ``(x, p)`` with the active set of ``(x, lam, w)``
        (the equality multipliers ``nu`` are needed where the game has smooth rows).

        With ``reuse`` (a linearisation of a nearby point with the same active
        set) its game Jacobian and factorization are kept and only ``dF/dp`` is
        evaluated here: an approximation that saves the Jacobian where it is costly.
        ``J`` and ``jp``: the game Jacobian and the nonzeros of ``dF/dp`` at ``(x, p)``,
        where the caller evaluated them already.
        """
        active = self.classify(x, lam, w, p)
        jp = self.kernel.Jp_values(x, p) if jp is None else jp
        smooth = None
        if self.smooth is not None:
            if nu is None:
                raise ValueError("linearize: a game with smooth rows needs the multipliers nu")
            smooth = (self.smooth.hessian_p(x, p, self.sigma(nu, lam)), self.smooth.Cp(x, p))
        if reuse is not None and reuse.active == active:
            return Linearization(x=x, p=p, active=active, factor=reuse.factor, J=reuse.J, jp=jp,
                                 smooth=smooth)
        if J is None:
            J = self.jacobian(x, p, solver.dense, nu, lam)
        return Linearization(x=x, p=p, active=active, factor=solver.factor(self.matrix(J, active, x, p)),
                             J=J, jp=jp, smooth=smooth)


def second_order_ok(system: KKTResidual, x, lam, w, p, tol: float = 1e-8, J=None, nu=None) -> bool:
    """Every follower's Hessian (of its Lagrangian, where smooth rows have curvature: then
    ``nu`` is needed) is PSD on the null space of its active constraints (a local Nash
    equilibrium, not merely a KKT point). Held bounds (the one rule of
    :meth:`KKTResidual.classify`) are removed; the test is on the remaining variables and the
    follower's equalities and active rows."""
    k = system.kernel
    if J is None:
        J = system.jacobian(x, p, True, nu, lam) if system.smooth is not None else k.Jx(x, p)
    J = J.toarray() if sp.issparse(J) else J
    active = system.classify(x, lam, w, p)
    fixed = active.fixed
    A, G = system.rows_dense()
    sm, mi = system.smooth, system.mi_lin
    if sm is not None:
        Bm = sm.B(x, p, True)
        held = np.concatenate([np.ones(sm.n_eq, dtype=bool), active.rows[mi:]])
    for i, sl in enumerate(k.slices):
        free = ~fixed[sl]
        if not free.any():
            continue
        idx = np.arange(sl.start, sl.stop)[free]
        H = J[np.ix_(idx, idx)]
        H = 0.5 * (H + H.T)
        rows = np.vstack([A[k.eq.owner == i][:, idx], G[active.rows[:mi] & (k.ineq.owner == i)][:, idx]])
        if sm is not None:
            mine = held & np.array([i in ws for ws in sm.slot_weights], dtype=bool)
            rows = np.vstack([rows, Bm[mine][:, idx]])
        Z = sla.null_space(rows) if rows.shape[0] else np.eye(idx.size)
        if Z.shape[1] == 0:
            continue
        ev = np.linalg.eigvalsh(Z.T @ H @ Z)
        if ev.min() < -tol * max(1.0, np.abs(ev).max()):
            return False
    return True
