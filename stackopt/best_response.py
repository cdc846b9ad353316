"""Each follower's best response to the others and the leader, with its multipliers.

``BR_i(x_-i, p) = argmin f_i(x_i, x_-i, p)`` over follower ``i``'s set, solved
from the follower's current values (a local solver: the followers' own
adjustment). Followers with a box only are solved by a projected Newton
method on their block of the game Jacobian (no solver set-up per call);
followers with rows, and any projected Newton run that does not finish, by
Ipopt through :func:`stackopt.nlp.ipopt_solve` with exact derivatives, its
return status checked: a failure is counted and the result flagged, never
taken silently.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nlp import LinearRowCallbacks, ipopt_solve


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


class BestResponses:
    """Best-response solvers for every follower (see the module docstring)."""

    def __init__(self, kernel, sets, config, counters):
        self.k, self.sets, self.counters = kernel, sets, counters
        # plain attributes: read in every best response
        keys = ("br_tol", "br_acceptable_tol", "br_max_iter", "br_newton_iter", "br_exact_hessian_max",
                "armijo", "min_step")
        self.config = type("BestResponseOptions", (), {key: config[key] for key in keys})()

    def solve(self, i: int, x: np.ndarray, p: np.ndarray, purpose: str = "best_responses") -> BestResponse:
        """Follower ``i``'s response from ``x``, counted in the counter ``purpose``."""
        k = self.k
        sl = k.slices[i]
        setattr(self.counters, purpose, getattr(self.counters, purpose) + 1)
        has_rows = bool(np.any(k.eq.owner == i) or np.any(k.ineq.owner == i))
        if not has_rows:
            br = self._box_newton(i, x, p)
            if br.ok:
                return br
        br = self._ipopt(i, x, p)
        if not br.ok:
            self.counters.best_response_failures += 1
        if not np.all(np.isfinite(br.x)):
            br.x = np.clip(x[sl], k.x_lb[sl], k.x_ub[sl])
        return br

    # ------------------------------------------------------------ box only
    def _box_newton(self, i, x, p) -> BestResponse:
        """Projected Newton on ``f_i`` over the follower's box (Bertsekas' two-metric
        projection: Newton on the free variables, gradient on those held at a bound); a
        follower with one variable takes secant steps after the first, without the Jacobian."""
        k, cfg = self.k, self.config
        sl = k.slices[i]
        lo, hi = k.x_lb[sl], k.x_ub[sl]
        full = x.copy()
        y = np.clip(x[sl], lo, hi)
        full[sl] = y
        f = k.follower_objectives(full, p)[i]
        g_prev = y_prev = None
        for it in range(cfg.br_newton_iter):
            g = k.F(full, p)[sl]
            held = ((y <= lo) & (g > 0)) | ((y >= hi) & (g < 0))
            pg = np.where(held, 0.0, g)
            if not np.all(np.isfinite(pg)) or not np.isfinite(f):
                break
            if np.max(np.abs(pg), initial=0.0) <= cfg.br_tol:
                return BestResponse(y, np.zeros(0), np.zeros(0), np.where(held, -g, 0.0), True)
            d = -pg
            free = ~held
            if y.size == 1 and g_prev is not None and y[0] != y_prev[0] and g[0] != g_prev[0]:
                H = np.array([[(g[0] - g_prev[0]) / (y[0] - y_prev[0])]])  # secant: no Jacobian
            else:
                H = k.Jx(full, p)[sl, sl][np.ix_(free, free)]
            g_prev, y_prev = g, y
            try:
                L = np.linalg.cholesky(0.5 * (H + H.T))
                d[free] = -np.linalg.solve(L.T, np.linalg.solve(L, g[free]))
            except np.linalg.LinAlgError:  # not convex here: a gradient step
                pass
            t, accepted = 1.0, False
            while t >= cfg.min_step:
                yt = np.clip(y + t * d, lo, hi)
                full[sl] = yt
                ft = k.follower_objectives(full, p)[i]
                # sufficient decrease, up to rounding in f (near the optimum it is all rounding)
                if np.isfinite(ft) and ft <= f + cfg.armijo * (g @ (yt - y)) + 1e-14 * abs(f):
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                full[sl] = y
                break
            y, f = yt, ft
        return BestResponse(y, np.zeros(0), np.zeros(0), np.zeros(y.size), False)

    # ----------------------------------------------------------------- Ipopt
    def _ipopt(self, i, x, p) -> BestResponse:
        k, cfg = self.k, self.config
        sl = k.slices[i]
        M, cl, cu = self.sets.follower_rows(i, p)
        opts = {"tol": cfg.br_tol, "max_iter": cfg.br_max_iter, "acceptable_tol": cfg.br_acceptable_tol,
                "mu_strategy": "adaptive"}
        if k.n_x > cfg.br_exact_hessian_max:  # the exact Hessian block costs a whole game Jacobian
            opts["hessian_approximation"] = "limited-memory"
        x0 = np.clip(x[sl], k.x_lb[sl], k.x_ub[sl])
        run = ipopt_solve(_Callbacks(k, i, x, p, M), x0, k.x_lb[sl], k.x_ub[sl], cl, cu, options=opts)
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
