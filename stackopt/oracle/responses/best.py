"""Each follower's best response to the others and the leader, with its multipliers.

``BR_i(x_-i, p) = argmin f_i(x_i, x_-i, p)`` over follower ``i``'s set, solved
from the follower's current values (a local solver: the followers' own
adjustment). Followers with a box only are solved by a projected Newton
method on their block of the game Jacobian, all responses of a sweep at once
(:mod:`stackopt.oracle.responses.box`; no solver set-up per call); followers with a
box and one row (a simplex, a budget) by spectral projected gradient on the
exact projection (:mod:`stackopt.oracle.responses.row`); other followers with rows,
and any run of those two that does not finish, by Ipopt through
:func:`stackopt.solvers.ipopt_solve` with exact derivatives, its return status checked: a
failure is flagged (``BestResponse.ok``), never taken silently; callers count the responses
and the failures they received. Ipopt gets the time left before the caller's ``deadline``
(a follower whose objective Ipopt cannot settle, e.g. one with ``abs()`` of its own
variables, would otherwise run its iterations past it); past the deadline a response is
not attempted and is flagged as failed.
A follower bound by smooth rows (:mod:`stackopt.kernel.smooth_rows`: its nonlinear,
leader-dependent or coupling constraints and the shared ones) responds over the set the
others' values leave it, by Ipopt, with the exact Hessian of its Lagrangian in its own
variables.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from stackopt.solvers import LinearRowCallbacks, ipopt_solve

from .box import BoxNewtonBatch
from .row import RowResponses


@dataclass
class BestResponse:
    """Follower ``i``'s response ``x`` (its own variables), the multipliers of its rows
    (``nu``, ``lam``, in the kernel's row order restricted to the follower) and bounds (``w``),
    and whether the solver reported success."""

    x: np.ndarray
    nu: np.ndarray
    lam: np.ndarray
    w: np.ndarray
    ok: bool
    smooth: dict | None = None  # smooth row index -> the follower's multiplier of it


class BestResponses:
    """Best-response solvers for every follower (see the module docstring)."""

    def __init__(self, kernel, sets, config):
        self.k, self.sets = kernel, sets
        # plain attributes: read in every best response
        keys = ("br_tol", "br_acceptable_tol", "br_max_iter", "br_newton_iter", "br_spg_iter",
                "br_exact_hessian_max", "armijo", "min_step")
        self.config = cfg = type("BestResponseOptions", (), {key: config[key] for key in keys})()
        self.box_only = np.array([not kernel.constrained(i) for i in range(len(kernel.slices))], dtype=bool)
        self.box = BoxNewtonBatch(kernel, cfg.br_tol, cfg.br_newton_iter, cfg.armijo, cfg.min_step)
        self.rows = RowResponses(kernel, sets, cfg.br_tol, cfg.br_spg_iter)

    def solve(self, i: int, x: np.ndarray, p: np.ndarray, deadline: float = np.inf) -> BestResponse:
        """Follower ``i``'s response from ``x``."""
        return self.batch(np.array([i]), np.asarray(x, dtype=float)[None, :], p, deadline)[0]

    def batch(self, owners: np.ndarray, X: np.ndarray, p: np.ndarray,
              deadline: float = np.inf, tol: float | None = None) -> list[BestResponse]:
        """The responses of follower ``owners[b]`` from ``X[b]`` (each row a full point):
        box-only followers' all at once, then those with a box and one row all at once, the
        rest (and any of those that did not finish) one by one by Ipopt, each within the time
        left before ``deadline`` (a ``time.perf_counter()`` value). A response with ``ok``
        False is one Ipopt did not solve (the batched methods hand theirs to Ipopt). ``tol``:
        the batched methods' stopping tolerance, by default ``br_tol`` (Ipopt keeps its own)."""
        k = self.k
        out: list = [None] * len(owners)
        box = np.flatnonzero(self.box_only[owners])
        if box.size:
            Y, w, ok = self.box.solve(owners[box], X[box], p, tol)
            at = 0
            for r, b in enumerate(box):
                sl = k.slices[owners[b]]
                m = sl.stop - sl.start
                if ok[r]:
                    out[b] = BestResponse(Y[r, sl], np.zeros(0), np.zeros(0), w[at:at + m], True)
                at += m
        rows = np.array([b for b, i in enumerate(owners) if out[b] is None and self.rows.applies(int(i))],
                        dtype=np.intp)
        if rows.size:  # a box and one row: exact projections, no solver set-up
            for b, res in zip(rows, self.rows.batch(owners[rows], X[rows], p, tol)):
                if res is not None:
                    y, tau, w = res
                    row, eq = np.array([tau]), self.sets.rows[owners[b]][0] == "eq"
                    out[b] = BestResponse(y, row if eq else np.zeros(0), np.zeros(0) if eq else row, w, True)
        return [br if br is not None else self._solve_one(int(i), X[b], p, deadline)
                for b, (i, br) in enumerate(zip(owners, out))]

    def _solve_one(self, i, x, p, deadline=np.inf) -> BestResponse:
        """Follower ``i``'s response by Ipopt (general polyhedra, and where the batched
        methods did not finish); past ``deadline`` not attempted (``ok`` False)."""
        k = self.k
        sl = k.slices[i]
        left = deadline - time.perf_counter()
        if left <= 0:
            n_eq, n_ineq = int(np.sum(k.eq.owner == i)), int(np.sum(k.ineq.owner == i))
            return BestResponse(np.clip(x[sl], k.x_lb[sl], k.x_ub[sl]), np.zeros(n_eq), np.zeros(n_ineq),
                                np.zeros(sl.stop - sl.start), False)
        br = self._ipopt(i, x, p, left if np.isfinite(left) else None)
        if not np.all(np.isfinite(br.x)):
            br.x = np.clip(x[sl], k.x_lb[sl], k.x_ub[sl])
        return br

    # ----------------------------------------------------------------- Ipopt
    def _ipopt(self, i, x, p, time_limit=None) -> BestResponse:
        k, cfg = self.k, self.config
        sl = k.slices[i]
        M, cl, cu = self.sets.follower_rows(i, p)
        # bound_relax_factor 0: the response lies in the follower's set exactly (Ipopt relaxes
        # bounds and rows by 1e-8 by default, a KKT residual of that size where the set is a point)
        opts = {"tol": cfg.br_tol, "max_iter": cfg.br_max_iter, "acceptable_tol": cfg.br_acceptable_tol,
                "mu_strategy": "adaptive", "bound_relax_factor": 0.0}
        if k.n_x > cfg.br_exact_hessian_max:  # the exact Hessian block costs a whole game Jacobian
            opts["hessian_approximation"] = "limited-memory"
        x0 = np.clip(x[sl], k.x_lb[sl], k.x_ub[sl])
        rows = k.smooth.response_rows(i, sl) if k.smooth is not None else None
        if rows is not None and rows.rows.size:
            n_lin = M.shape[0]
            cl = np.concatenate([cl, np.where(rows.equality, 0.0, -np.inf)])
            cu = np.concatenate([cu, np.zeros(rows.rows.size)])
            run = ipopt_solve(_SmoothCallbacks(k, i, x, p, M, rows), x0, k.x_lb[sl], k.x_ub[sl], cl, cu,
                              options=opts, time_limit=time_limit)
            n_eq = int(np.sum(k.eq.owner == i))
            return BestResponse(np.clip(run.x, k.x_lb[sl], k.x_ub[sl]), run.mult_g[:n_eq],
                                run.mult_g[n_eq:n_lin], run.mult_x_U - run.mult_x_L, run.ok,
                                smooth=dict(zip(rows.rows.tolist(), run.mult_g[n_lin:].tolist())))
        run = ipopt_solve(_Callbacks(k, i, x, p, M), x0, k.x_lb[sl], k.x_ub[sl], cl, cu, options=opts,
                          time_limit=time_limit)
        n_eq = int(np.sum(k.eq.owner == i))
        return BestResponse(np.clip(run.x, k.x_lb[sl], k.x_ub[sl]), run.mult_g[:n_eq],
                            run.mult_g[n_eq:], run.mult_x_U - run.mult_x_L, run.ok)


class _Callbacks(LinearRowCallbacks):
    """Follower ``i``'s problem with the others held at ``x``, for cyipopt."""

    def __init__(self, k, i, x, p, M):
        self.k, self.i, self.x, self.p, self.M = k, i, x.copy(), p, M
        self.sl = k.slices[i]
        self.tril = np.tril_indices(self.sl.stop - self.sl.start)

    def _full(self, xi):
        x = self.x.copy()
        x[self.sl] = xi
        return x

    def objective(self, xi):
        return float(self.k.follower_objectives(self._full(xi), self.p)[self.i])

    def gradient(self, xi):
        return self.k.F(self._full(xi), self.p)[self.sl]

    def hessianstructure(self):
        return self.tril

    def hessian(self, xi, lagrange, obj_factor):
        H = self.k.Jx(self._full(xi), self.p)[self.sl, self.sl]
        return obj_factor * (0.5 * (H + H.T))[self.tril]


class _SmoothCallbacks(_Callbacks):
    """Follower ``i``'s problem with the others held at ``x``, its linear rows ``M`` and the
    smooth rows binding it (``rows``, :meth:`SmoothRows.response_rows`), for cyipopt."""

    def __init__(self, k, i, x, p, M, rows):
        super().__init__(k, i, x, p, M)
        self.rows, self.sm = rows, k.smooth
        r, c = np.indices(M.shape)
        n_lin = M.shape[0]
        self.jac_struct = (np.concatenate([r.ravel(), n_lin + rows.jac_row]),
                           np.concatenate([c.ravel(), rows.jac_col]))
        keep = rows.hess_j <= rows.hess_i  # lower triangle
        self.h_keep = np.flatnonzero(keep)
        self.h_struct = (np.concatenate([self.tril[0], rows.hess_i[keep]]),
                         np.concatenate([self.tril[1], rows.hess_j[keep]]))

    def constraints(self, xi):
        c = self.sm.values(self._full(xi), self.p)[self.rows.rows]
        return np.concatenate([self.M @ xi, c])

    def jacobianstructure(self):
        return self.jac_struct

    def jacobian(self, xi):
        jac = self.sm.derivatives(self._full(xi), self.p)[1]
        return np.concatenate([self.M.ravel(), jac[self.rows.jac_at]])

    def hessianstructure(self):
        return self.h_struct

    def hessian(self, xi, lagrange, obj_factor):
        full = self._full(xi)
        H = self.k.Jx(full, self.p)[self.sl, self.sl]
        mu = np.asarray(lagrange)[self.M.shape[0]:]
        d2 = self.sm.second_derivatives(full, self.p)[self.rows.hess_at[self.h_keep]]
        return np.concatenate([obj_factor * (0.5 * (H + H.T))[self.tril],
                               mu[self.rows.hess_row[self.h_keep]] * d2])
