"""The followers' feasible sets: projections onto them and seeded random starts.

Follower ``i``'s set is ``{lb_i <= x_i <= ub_i, A_i x_i = b_i(p), G_i x_i <= h_i(p)}``.
Where every follower has at most one row besides its box (a simplex, a
capacity, a budget: *simple* sets) the Euclidean projection is exact and cheap,
every follower's block at once (:mod:`stackopt.oracle.boxrow`), and it also returns the
normal-cone decomposition ``u - x = tau a + w`` that a hand-over to Newton needs
as multipliers. Other
sets are projected follower by follower with Ipopt (the adapter of
:mod:`stackopt.solvers.nlp`), its status checked. Where the game has smooth rows
(:mod:`stackopt.kernel.smooth_rows`: nonlinear, leader-dependent or coupling
constraints, shared constraints) a follower's set depends on the others'
values (a generalized Nash game), and the projection is onto the *joint* set of
every follower's constraints and the shared ones at once: one QP-like problem by
Ipopt, exact derivatives where every smooth row uses only its followers'
variables. Its result is feasible for every follower at once, which the cold
starts need; for a game whose rows are its followers' own and shared ones, it is
the projection of the variational inequality whose solution is the variational
equilibrium.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from stackopt.core import Status
from stackopt.solvers import ArrayCallbacks, LinearRowCallbacks, ipopt_solve

from .boxrow import project_rows, warm_projection


@dataclass
class Projection:
    """``x = P(u)`` and the normal cone's parts: ``u - x = A^T nu + G^T lam + w``
    (``lam >= 0``; ``w <= 0`` at lower, ``>= 0`` at upper bounds). ``ok`` is False
    where some follower's set looked empty or Ipopt failed."""

    x: np.ndarray
    nu: np.ndarray
    lam: np.ndarray
    w: np.ndarray
    ok: bool = True
    status: Status | None = None  # Ipopt's, where a joint projection ran


class FollowerSets:
    """Projections onto every follower's set and seeded random starts (see the module docstring)."""

    def __init__(self, kernel, ipopt_tol: float = 1e-10):
        k = self.kernel = kernel
        self.ipopt_tol = ipopt_tol
        self.rows = []  # per follower: (kind, row index) or None for a box only
        simple = k.smooth is None  # smooth rows: the joint set, by Ipopt
        for i, sl in enumerate(k.slices):
            eq = np.nonzero(k.eq.owner == i)[0]
            ineq = np.nonzero(k.ineq.owner == i)[0]
            if not simple:
                self.rows.append(None)
            elif eq.size + ineq.size > 1:
                simple = False
                self.rows.append(None)
            elif eq.size:
                self.rows.append(("eq", int(eq[0]), k.eq.M[eq[0]].toarray()[0, sl]))
            elif ineq.size:
                self.rows.append(("ineq", int(ineq[0]), k.ineq.M[ineq[0]].toarray()[0, sl]))
            else:
                self.rows.append(None)
        self.simple = simple
        self.blocks = _padded_blocks(k, self.rows) if simple else None
        if self.blocks is not None and k.uses_loops:
            warm_projection()  # its compiled loop ready before any solve's first projection
        # every follower has a row and the blocks are x's entries in order: views, not gathers
        self._tiled = self.blocks is not None and bool(self.blocks[1].all()) and bool(
            np.array_equal(self.blocks[0].ravel(), np.arange(k.n_x)))
        self._centers: dict = {}
        self._empty: dict = {}  # infeasible followers, by p where the rows depend on it
        self._last_p = self._last_rhs = None

    # ------------------------------------------------------------ projection
    def _rhs(self, p):
        """``(b(p), h(p))``, kept for the last ``p`` (a play projects many times at one ``p``)."""
        if self._last_p is None or not np.array_equal(self._last_p, p):
            k = self.kernel
            self._last_rhs = (k.eq_rhs(p), k.ineq_rhs(p))
            self._last_p = np.array(p, dtype=float)
        return self._last_rhs

    def project(self, u: np.ndarray, p: np.ndarray) -> Projection:
        """Euclidean projection of ``u`` on every follower's set, with the multipliers."""
        k = self.kernel
        lb, ub = k.x_lb, k.x_ub
        x = np.clip(u, lb, ub)
        if k.smooth is not None:
            return _project_joint(self, u, p)
        nu, lam = np.zeros(k.eq.n_rows), np.zeros(k.ineq.n_rows)
        if not self.simple:
            ok = _project_general(self, u, x, p)
            w = u - x - k.eq.M.T @ nu - k.ineq.M.T @ lam
            w[(x > lb) & (x < ub)] = 0.0
            return Projection(x=x, nu=nu, lam=lam, w=w, ok=ok)
        w = u - x
        if self.blocks is None:  # box only
            return Projection(x=x, nu=nu, lam=lam, w=w)
        idx, valid, eq, r, A, _ = self.blocks
        b = self.row_rhs(p)
        if self._tiled:  # views of u and the bounds, not gathers (the same values)
            U, LO, HI = u.reshape(idx.shape), lb.reshape(idx.shape), ub.reshape(idx.shape)
        else:
            U, LO, HI = (np.where(valid, a[idx], 0.0) for a in (u, lb, ub))
        X, tau, W = project_rows(U, eq, A, b, LO, HI, compiled=k.uses_loops)
        fine = np.isfinite(tau)
        nu[r[eq & fine]], lam[r[~eq & fine]] = tau[eq & fine], tau[~eq & fine]
        if self._tiled and fine.all():  # every entry is in a block: X and W are x and w
            return Projection(x=X.reshape(-1), nu=nu, lam=lam, w=W.reshape(-1))
        take = valid & fine[:, None]
        x[idx[take]], w[idx[take]] = X[take], W[take]
        return Projection(x=x, nu=nu, lam=lam, w=w, ok=bool(fine.all()))

    def row_rhs(self, p) -> np.ndarray:
        """The right-hand side of each padded block's row (:attr:`blocks`) at ``p``."""
        _, _, eq, r, _, _ = self.blocks
        b_eq, h = self._rhs(p)
        b = np.empty(r.size)
        b[eq], b[~eq] = b_eq[r[eq]], h[r[~eq]]
        return b

    def stationary_duals(self, x: np.ndarray, F: np.ndarray, proj: Projection):
        """Multipliers for ``x`` (a projection's result) from stationarity ``F + A^T nu + w = 0``:
        the projection says which bounds and rows hold; each follower's row multiplier is the
        least-squares fit on its free coordinates and the held bounds take the rest.
        Simple sets only. Returns ``(nu, lam, w)``."""
        k = self.kernel
        nu, lam = proj.nu.copy(), proj.lam.copy()
        held = ((x <= k.x_lb) | (x >= k.x_ub)) & (proj.w != 0)
        g = F.copy()
        for i, sl in enumerate(k.slices):
            row = self.rows[i]
            if row is None:
                continue
            kind, r, a = row
            mult = nu if kind == "eq" else lam
            free = ~held[sl] & (a != 0)
            if (kind == "eq" or proj.lam[r] != 0) and free.any():
                mult[r] = -float(a[free] @ F[sl][free]) / float(a[free] @ a[free])
            g[sl] += mult[r] * a
        return nu, lam, np.where(held, -g, 0.0)

    def follower_rows(self, i: int, p):
        """Follower ``i``'s rows over its own variables: ``cl <= M x_i <= cu`` (dense ``M``)."""
        k = self.kernel
        sl = k.slices[i]
        eq_rows, in_rows = k.eq.owner == i, k.ineq.owner == i
        M = np.vstack([k.eq.M[eq_rows][:, sl].toarray(), k.ineq.M[in_rows][:, sl].toarray()])
        b = k.eq_rhs(p)[eq_rows]
        cl = np.concatenate([b, np.full(int(in_rows.sum()), -np.inf)])
        cu = np.concatenate([b, k.ineq_rhs(p)[in_rows]])
        return M, cl, cu

    def infeasible(self, p) -> list[str]:
        """The followers whose linear rows and bounds have no common point at ``p``
        (see :func:`infeasible_followers`), kept per ``p`` where the rows depend on it
        and once otherwise."""
        return list(self._by_p(self._empty, p, lambda: infeasible_followers(self, p)))

    def _by_p(self, cache: dict, p, compute):
        """``compute()`` kept in ``cache`` per ``p`` where the followers' rows depend on it,
        once otherwise (at most 64 values kept)."""
        k = self.kernel
        key = np.asarray(p, dtype=float).tobytes() if (k.eq.depends_on_p or k.ineq.depends_on_p) else b""
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = compute()
        return cache[key]

    # ---------------------------------------------------------------- starts
    def random_start(self, p: np.ndarray, rng) -> Projection:
        """A seeded random feasible point, strictly inside where possible.

        ``u`` is uniform in the bounds (``[-1, 1]`` around a missing bound) and
        projected on each follower's set; the start is ``c + 0.9 (P(u) - c)``
        with ``c`` the projection of the bounds' midpoint, so that functions such
        as ``log`` are defined at the start.
        """
        rng = np.random.default_rng(rng)
        k = self.kernel
        lo = np.where(np.isfinite(k.x_lb), k.x_lb, np.minimum(k.x_ub, 0.0) - 1.0)
        hi = np.where(np.isfinite(k.x_ub), k.x_ub, np.maximum(k.x_lb, 0.0) + 1.0)
        u = lo + (hi - lo) * rng.random(k.n_x)
        c = self._by_p(self._centers, p, lambda: self.project(0.5 * (lo + hi), p).x)
        pu = self.project(u, p)
        x = c + 0.9 * (pu.x - c)
        if k.smooth is not None:  # a nonlinear set (an equality): back onto it
            back = self.project(x, p)
            x, pu = back.x, Projection(back.x, pu.nu, pu.lam, pu.w, pu.ok and back.ok)
        return Projection(x=x, nu=pu.nu, lam=pu.lam, w=np.zeros(k.n_x), ok=pu.ok)

    def feasible(self, u: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``u`` (a start given by the caller) projected on the followers' sets."""
        k = self.kernel
        u = np.asarray(u, dtype=float)
        if u.shape != (k.n_x,):
            raise ValueError(f"follower start must have shape ({k.n_x},), got {u.shape}")
        if not np.all(np.isfinite(u)):
            raise ValueError("follower start must be finite")
        return self.project(u, p).x


def _padded_blocks(k, rows):
    """The followers with a row as one padded array: ``(idx, valid, eq, r, A, of)``, row
    ``q`` one follower's variable indices (``valid`` its own entries), whether its row is
    an equality, the row's index among the kernel's equalities or inequalities, and its
    coefficients; ``of[i]`` is follower ``i``'s row (-1 without a row); ``None`` where no
    follower has a row."""
    have = [(i, row) for i, row in enumerate(rows) if row is not None]
    if not have:
        return None
    width = max(k.slices[i].stop - k.slices[i].start for i, _ in have)
    idx = np.zeros((len(have), width), dtype=np.intp)
    valid = np.zeros((len(have), width), dtype=bool)
    A = np.zeros((len(have), width))
    for q, (i, (_, _, a)) in enumerate(have):
        sl = k.slices[i]
        n = sl.stop - sl.start
        idx[q, :n], valid[q, :n], A[q, :n] = np.arange(sl.start, sl.stop), True, a
    eq = np.array([row[0] == "eq" for _, row in have])
    r = np.array([row[1] for _, row in have], dtype=np.intp)
    of = np.full(len(rows), -1, dtype=np.intp)
    of[[i for i, _ in have]] = np.arange(len(have))
    return idx, valid, eq, r, A, of


def _project_general(sets: FollowerSets, u, x, p) -> bool:
    """Follower by follower, a QP by Ipopt where the follower has rows; ``x`` is
    overwritten with the result. Returns whether every solve succeeded."""
    k = sets.kernel
    ok = True
    for i, sl in enumerate(k.slices):
        M, cl, cu = sets.follower_rows(i, p)
        if M.shape[0] == 0:
            continue
        run = ipopt_solve(_ProjectionQP(M, u[sl]), x[sl], k.x_lb[sl], k.x_ub[sl], cl, cu,
                          options={"tol": sets.ipopt_tol})
        ok &= run.ok
        x[sl] = np.clip(run.x, k.x_lb[sl], k.x_ub[sl])
    return ok


def infeasible_followers(sets: FollowerSets, p) -> list[str]:
    """The followers whose linear rows and bounds have no common point at ``p``: one
    LP per follower with rows (HiGHS through SciPy, a few milliseconds), except for a
    follower of one row that its box meets (:func:`_row_meets_box`, e.g. a simplex)."""
    k, out = sets.kernel, []
    if k.smooth is not None:  # the joint set: Ipopt's own test, naming every follower it binds
        lo = np.where(np.isfinite(k.x_lb), k.x_lb, np.minimum(k.x_ub, 0.0) - 1.0)
        hi = np.where(np.isfinite(k.x_ub), k.x_ub, np.maximum(k.x_lb, 0.0) + 1.0)
        if _project_joint(sets, 0.5 * (lo + hi), p).status is Status.INFEASIBLE:
            bound = sorted({i for fs in k.smooth.followers for i in fs})
            return [k.follower_names[i] for i in bound]
    with_rows = set(k.eq.owner.tolist()) | set(k.ineq.owner.tolist())
    for i, sl in enumerate(k.slices):
        if i not in with_rows:
            continue
        M, cl, cu = sets.follower_rows(i, p)
        if M.shape[0] == 0 or (M.shape[0] == 1 and _row_meets_box(M[0], cl[0], cu[0], k.x_lb[sl],
                                                                   k.x_ub[sl])):
            continue
        from scipy.optimize import linprog  # here: importing it costs a tenth of a second

        eq = np.isfinite(cl) & (cl == cu)
        up, lo = np.isfinite(cu) & ~eq, np.isfinite(cl) & ~eq
        A_ub = np.vstack([M[up], -M[lo]])
        b_ub = np.concatenate([cu[up], -cl[lo]])
        res = linprog(np.zeros(M.shape[1]), A_ub=A_ub if A_ub.size else None,
                      b_ub=b_ub if A_ub.size else None, A_eq=M[eq] if eq.any() else None,
                      b_eq=cl[eq] if eq.any() else None,
                      bounds=list(zip(np.where(np.isfinite(k.x_lb[sl]), k.x_lb[sl], None),
                                      np.where(np.isfinite(k.x_ub[sl]), k.x_ub[sl], None))),
                      method="highs")
        if res.status == 2:  # infeasible
            out.append(k.follower_names[i])
    return out


def _row_meets_box(a, lo, hi, lb, ub) -> bool:
    """Whether ``lo <= a x <= hi`` holds somewhere in the box ``lb <= x <= ub``: the range of
    ``a x`` over the box is an interval, from the sum of each term's least value to the sum of
    its largest (infinite where a bound the row holds is). False also where that is not a clear
    yes, e.g. a coefficient not a number (the caller's LP then decides)."""
    with np.errstate(invalid="ignore"):
        ends = np.stack([a * lb, a * ub])
    ends = np.where(a == 0.0, 0.0, ends)  # 0 * inf: a variable the row does not hold
    least, largest = float(ends.min(axis=0).sum()), float(ends.max(axis=0).sum())  # may be -/+inf
    return bool(least <= hi and largest >= lo)  # NaN: False


class _ProjectionQP(LinearRowCallbacks):
    """``min 1/2 ||x - target||^2`` subject to linear rows ``M x``."""

    def __init__(self, M, target):
        self.M, self.target = M, np.asarray(target, float)
        self.tril = np.tril_indices(M.shape[1])
        self.eye = np.eye(M.shape[1])[self.tril]

    def objective(self, x):
        return 0.5 * float(np.sum((x - self.target) ** 2))

    def gradient(self, x):
        return x - self.target

    def hessianstructure(self):
        return self.tril

    def hessian(self, x, lagrange, obj_factor):
        return obj_factor * self.eye


def _project_joint(sets: FollowerSets, u, p) -> Projection:
    """The projection of ``u`` on the joint set of every follower's constraints (linear and
    smooth rows) and the shared ones, by Ipopt; the multipliers of the smooth rows go to
    every slot of their row. ``ok`` where Ipopt converged; ``status`` Ipopt's."""
    k = sets.kernel
    sm = k.smooth
    b, h = sets._rhs(p)
    me, mi = k.eq.n_rows, k.ineq.n_rows
    eq = sm.equality
    cl = np.concatenate([b, np.full(mi, -np.inf), np.zeros(sm.n_rows)])
    cu = np.concatenate([b, h, np.zeros(sm.n_rows)])
    cl[me + mi:][~eq] = -np.inf
    prob = _JointProjectionQP(k, u, p)
    opts = {"tol": sets.ipopt_tol}
    if not sm.self_contained:
        opts["hessian_approximation"] = "limited-memory"
    for x0 in _joint_starts(k, u):  # Ipopt from u itself, then from points of the box
        run = ipopt_solve(prob, x0, k.x_lb, k.x_ub, cl, cu, options=opts)
        if run.ok:
            break
    x = np.clip(run.x, k.x_lb, k.x_ub)
    mult = run.mult_g
    mu = mult[me + mi:]
    sigma = mu[sm.slot_row]
    nu = np.concatenate([mult[:me], sigma[:sm.n_eq]])
    lam = np.concatenate([np.maximum(mult[me:me + mi], 0.0), np.maximum(sigma[sm.n_eq:], 0.0)])
    w = u - x - k.eq.M.T @ mult[:me] - k.ineq.M.T @ mult[me:me + mi] - _row_gradients(sm, x, p).T @ mu
    w[(x > k.x_lb) & (x < k.x_ub)] = 0.0
    return Projection(x=x, nu=nu, lam=lam, w=w, ok=run.ok, status=run.status)


def _joint_starts(k, u):
    """Ipopt's starts for a joint projection: ``u`` in the box, then two fixed points of the
    box off its centre (a nonlinear set such as a circle has no usable derivative at
    the centre, where a projection of the midpoint would start)."""
    yield np.clip(u, k.x_lb, k.x_ub)
    lo = np.where(np.isfinite(k.x_lb), k.x_lb, np.minimum(k.x_ub, 0.0) - 1.0)
    hi = np.where(np.isfinite(k.x_ub), k.x_ub, np.maximum(k.x_lb, 0.0) + 1.0)
    t = (np.arange(1, k.n_x + 1) * 0.6180339887498949) % 1.0  # spread over the coordinates
    for frac in (0.25 + 0.5 * t, 0.75 - 0.5 * t):
        yield lo + frac * (hi - lo)


def _row_gradients(sm, x, p) -> sp.csr_matrix:
    """Every smooth row's gradient in ``x`` (rows by ``n_x``)."""
    jac = sm.derivatives(x, p)[1]
    rows, cols = sm.jacobian_structure
    isx = cols < sm.n_x
    return sp.csr_matrix((jac[isx], (rows[isx], cols[isx])), shape=(sm.n_rows, sm.n_x))


class _JointProjectionQP(ArrayCallbacks):
    """``min 1/2 ||x - u||^2`` over every follower's linear rows and the smooth rows at ``p``."""

    def __init__(self, k, u, p):
        self.k, self.u, self.p = k, np.asarray(u, float), np.asarray(p, float)
        sm = self.sm = k.smooth
        self.M = sp.vstack([k.eq.M, k.ineq.M], format="coo")
        jr, jc = sm.jacobian_structure
        isx = jc < sm.n_x
        self.jx = np.flatnonzero(isx)
        off = self.M.shape[0]
        self.jac_struct = (np.concatenate([self.M.row, off + jr[isx]]), np.concatenate([self.M.col, jc[isx]]))
        # lower triangle of I + sum_r mu_r hess c_r: identity, then each row's entries
        h_row, h_j, h_v = sm.hessian_structure
        keep = (h_v < sm.n_x) & (h_v <= h_j)
        self.h_at = np.flatnonzero(keep)
        self.h_row = h_row[keep]
        n = k.n_x
        self.hess_struct = (np.concatenate([np.arange(n), h_j[keep]]),
                            np.concatenate([np.arange(n), h_v[keep]]))

    def objective(self, x):
        return 0.5 * float(np.sum((x - self.u) ** 2))

    def gradient(self, x):
        return x - self.u

    def constraints(self, x):
        return np.concatenate([self.M @ x, self.sm.values(x, self.p)])

    def jacobianstructure(self):
        return self.jac_struct

    def jacobian(self, x):
        return np.concatenate([self.M.data, self.sm.derivatives(x, self.p)[1][self.jx]])

    def hessianstructure(self):
        return self.hess_struct

    def hessian(self, x, lagrange, obj_factor):
        mu = np.asarray(lagrange)[self.M.shape[0]:]
        vals = self.sm.second_derivatives(x, self.p)[self.h_at] * mu[self.h_row]
        return np.concatenate([np.full(self.k.n_x, obj_factor), vals])
