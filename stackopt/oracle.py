"""The equilibrium oracle: the followers' Nash equilibrium for a leader strategy.

Two engines share the KKT residual of :mod:`stackopt.kernel`:

* **Newton**: a semismooth Newton method on the joint KKT system written with
  the min / projection functions (a primal-dual active-set step: bounds and
  inequalities predicted active are held, the others' multipliers zeroed), with
  a backtracking line search on the residual norm. Warm-started from a nearby
  equilibrium it converges in one to three steps.
* **Relaxation** (the paper's oracle): damped simultaneous best response,
  ``x_i <- (1 - d) x_i + d BR_i(x_-i)``, each best response solved by Ipopt
  (cyipopt) with exact derivatives. Robust from cold starts; it hands over to
  Newton once steps are small.

A solve starts from a given equilibrium (warm: Newton along the tangent) or
from a seeded random feasible point (cold: projected gradient play where
projections are cheap, else relaxation; either dynamics selects among several
equilibria the way the followers' own adjustment would, handing over to
Newton once its steps are small; ``cold_start="auto"`` tries Newton first and
keeps its answer if every follower's reduced Hessian is positive semidefinite).
It returns an :class:`Equilibrium` whose ``status`` tells whether the residual met
the tolerance. It never loops forever: iteration and time budgets end it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.optimize as sopt

from .implicit import tangent
from .linalg import factor, kkt_matrix, solve
from .result import Status

try:  # Ipopt is bundled by cyipopt-wheels; the oracle still works without it (Newton only)
    import cyipopt
except ImportError:  # pragma: no cover - exercised only on broken installs
    cyipopt = None


@dataclass
class Equilibrium:
    """Primal and dual values of all followers at an equilibrium (or the best point found)."""

    x: np.ndarray
    nu: np.ndarray
    lam: np.ndarray
    w: np.ndarray
    p: np.ndarray
    residual: float
    status: Status
    newton_iterations: int = 0
    relaxation_iterations: int = 0  # damped best-response sweeps, or gradient-play steps
    message: str = ""
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED


class EquilibriumOracle:
    """Find the followers' equilibrium of a :class:`~stackopt.kernel.GameKernel`.

    ``tol`` bounds the infinity norm of the KKT residual. ``cold_start`` picks
    the first engine for cold starts (default: from the game's ``dynamics``):
    ``"gradient-play"`` (projected gradient play, where every follower's set is
    a box with at most one positive equality row, e.g. a simplex or a capacity;
    otherwise, or when it fails, relaxation), ``"relaxation"`` (the paper's
    damped best response) or ``"auto"`` (Newton first, kept if second-order
    conditions hold). The learning dynamics select among several equilibria.
    """

    def __init__(self, kernel, tol: float = 1e-6, max_newton: int = 50, damping: float = 0.5,
                 max_relaxation: int = 300, relaxation_tol: float = 1e-3,
                 cold_start: str | None = None, time_limit: float = 60.0, max_warm_newton: int = 10,
                 cold_restarts: int = 3):
        if not tol > 0:
            raise ValueError(f"oracle tolerance must be > 0, got {tol!r}")
        if not 0 < damping <= 1:
            raise ValueError(f"damping must be in (0, 1], got {damping!r}")
        if cold_start is None:  # the game's own dynamics
            cold_start = "relaxation" if kernel.dynamics == "best-response" else "gradient-play"
        if cold_start not in ("gradient-play", "relaxation", "auto"):
            raise ValueError(f"cold_start must be 'gradient-play', 'relaxation' or 'auto', got {cold_start!r}")
        self.k = kernel
        self.tol, self.max_newton, self.damping = tol, max_newton, damping
        self.max_relaxation, self.relaxation_tol = max_relaxation, relaxation_tol
        self.cold_start, self.time_limit = cold_start, time_limit
        self.max_warm_newton = max_warm_newton  # a warm start that needs more has lost its branch
        self.cold_restarts = cold_restarts  # further random starts for gradient play that does not settle
        k = kernel
        self.A, self.G = k.eq.M, k.ineq.M
        self.m_e, self.m_i = self.A.shape[0], self.G.shape[0]
        self._centers: dict = {}

    # ------------------------------------------------------------- residual
    def residual(self, x, nu, lam, w, p, F=None) -> np.ndarray:
        k = self.k
        if F is None:
            F = k.F(x, p)
        r = F + self.A.T @ nu + self.G.T @ lam + w
        req = self.A @ x - k.eq_rhs(p)
        rin = np.minimum(lam, k.ineq_rhs(p) - self.G @ x)
        rb = x - np.clip(x + w, k.x_lb, k.x_ub)
        return np.concatenate([r, req, rin, rb])

    # ---------------------------------------------------------------- solve
    def solve(self, p, start: "Equilibrium | np.ndarray | None" = None, rng=None,
              fallback: bool = True) -> Equilibrium:
        """Equilibrium for leader strategy ``p`` from ``start`` (warm) or a seeded random start.

        With ``fallback=False`` a warm start that Newton cannot finish returns
        unconverged at once instead of running the relaxation. A start given as
        follower values runs the cold dynamics from there; with ``rng`` as well,
        gradient play that does not settle restarts from random points.
        """
        p = np.asarray(p, dtype=float)
        deadline = time.perf_counter() + self.time_limit
        n_newton = n_relax = n_play = 0
        restarts = self.cold_restarts if start is None or rng is not None else 0
        if isinstance(start, Equilibrium):
            z = (start.x.copy(), start.nu.copy(), start.lam.copy(), start.w.copy())
            warm = True
            sens = start.cache.get("sensitivity")
            if sens is not None:  # predictor along the tangent, then a chord step with its J
                zp, ok, it, rn = self._newton(self._predict(start, z, p), p, deadline, sens.J,
                                              max_iter=self.max_warm_newton)
                n_newton += it
                if ok:
                    return self._result(zp, p, n_newton, n_relax, rn)
        else:
            rng = np.random.default_rng(rng)  # one stream for the start and any restarts
            x = self.random_start(p, rng) if start is None else self._feasible(np.asarray(start, float), p)
            z = self.estimate_duals(x, p)
            warm = False
        if not warm and self.cold_start == "gradient-play" and self._simple():
            # hand over to Newton once steps are small; where Newton cannot finish from
            # there, play on to smaller steps and try again. Play that does not settle
            # (it can cycle) starts again from further random points when there is
            # a random stream, and only then falls back to the slower best responses.
            for attempt in range(1 + restarts):
                xg = z[0] if attempt == 0 else self.random_start(p, rng)
                for handover in (1e-4, 1e-5, 1e-6, 1e-7):
                    xg, it, ok = self._gradient_play(xg, p, deadline, handover=handover)
                    n_play += it
                    if not ok:
                        break
                    zt, ok, itn, rn = self._newton(self.estimate_duals(xg, p), p, deadline, max_iter=20)
                    n_newton += itn
                    if ok and self.second_order_ok(zt[0], zt[2], zt[3], p):
                        return self._result(zt, p, n_newton, n_play, rn)
        if warm or self.cold_start == "auto":
            z0 = z
            z, ok, it, rn = self._newton(z, p, deadline, max_iter=self.max_warm_newton if warm else None)
            n_newton += it
            if ok and (warm or self.second_order_ok(z[0], z[2], z[3], p)):
                return self._result(z, p, n_newton, n_relax, rn)
            if warm and not fallback:
                return self._result(z, p, n_newton, n_relax, rn)
            if not warm:
                z = z0
        # relaxation (the followers' best-response dynamics select the equilibrium),
        # handing over to Newton once its steps are small
        x = z[0]
        best, best_rn = z, np.inf
        while time.perf_counter() < deadline and n_relax < self.max_relaxation:
            x, it, handover = self._relax(x, p, deadline, self.max_relaxation - n_relax)
            n_relax += it
            if not handover:
                break
            zt, ok, itn, rn = self._newton(self.estimate_duals(x, p), p, deadline, max_iter=20)
            n_newton += itn
            if ok and (warm or self.second_order_ok(zt[0], zt[2], zt[3], p)):
                return self._result(zt, p, n_newton, n_relax, rn)
            if rn < best_rn:
                best, best_rn = zt, rn
        if not np.isfinite(best_rn):
            best = self.estimate_duals(x, p)
        return self._result(best, p, n_newton, n_relax)

    # --------------------------------------------------------- gradient play
    def _simple(self) -> bool:
        """Every follower's set is a box with at most one equality row of positive
        coefficients (simplex, capacity): projections are a bisection."""
        if getattr(self, "_simple_cache", None) is None:
            k = self.k
            ok = self.m_i == 0
            for i, sl in enumerate(k.slices):
                rows = self.A[k.eq.owner == i][:, sl]
                if rows.shape[0] > 1 or (rows.shape[0] == 1 and np.any(rows[0] <= 0)):
                    ok = False
            self._simple_cache = ok
        return self._simple_cache

    def _project_simple(self, u, p):
        k = self.k
        x = np.clip(u, k.x_lb, k.x_ub)
        b_all = k.eq_rhs(p)
        for i, sl in enumerate(k.slices):
            rows = np.nonzero(k.eq.owner == i)[0]
            if not rows.size:
                continue
            x[sl] = _project_box_hyperplane(u[sl], self.A[rows[0], sl], b_all[rows[0]],
                                            k.x_lb[sl], k.x_ub[sl])
        return x

    def _gradient_play(self, x, p, deadline, budget=1000, handover=1e-4):
        """Projected gradient play ``x <- P(x - eta F(x))`` with an adaptive ``eta``.

        Returns ``(x, iterations, converged)``; ``converged`` when steps fell
        below ``handover``. Non-finite values end it unconverged.
        """
        eta, it, worse, prev = 0.5, 0, 0, np.inf
        for it in range(1, budget + 1):
            F = self.k.F(x, p)
            if not np.all(np.isfinite(F)):
                return x, it, False
            xn = self._project_simple(x - eta * F, p)
            size = float(np.max(np.abs(xn - x), initial=0.0))
            x = xn
            if size <= handover:
                return x, it, True
            worse = worse + 1 if size >= prev else 0
            prev = size
            if worse >= 10:  # oscillating: shorter steps
                eta, worse, prev = 0.5 * eta, 0, np.inf
            if time.perf_counter() > deadline:
                break
        return x, it, False

    def _result(self, z, p, n_newton, n_relax, rn=None) -> Equilibrium:
        x, nu, lam, w = z
        if rn is None:
            res = self.residual(x, nu, lam, w, p)
            rn = float(np.max(np.abs(res), initial=0.0)) if np.all(np.isfinite(res)) else float("inf")
        status = Status.CONVERGED if rn <= self.tol else Status.NOT_CONVERGED
        return Equilibrium(x=x, nu=nu, lam=lam, w=w, p=p.copy(), residual=rn, status=status,
                           newton_iterations=n_newton, relaxation_iterations=n_relax)

    def _predict(self, start, z, p):
        """Move a warm start along the equilibrium's tangent (first-order predictor)."""
        if start.p.shape != p.shape or not np.any(p != start.p):
            return z
        dx, dnu, dlam = tangent(self.k, start, p - start.p)
        x = np.clip(z[0] + dx, self.k.x_lb, self.k.x_ub)
        return (x, z[1] + dnu, np.maximum(z[2] + dlam, 0.0), z[3])

    # --------------------------------------------------------------- Newton
    def _newton(self, z, p, deadline, J=None, max_iter=None):
        """Semismooth Newton with backtracking; returns (z, converged, iterations, residual).

        ``J``, if given, is a game Jacobian from a nearby point used for the first
        step; a step it cannot make acceptable is retried with the exact one.
        """
        k = self.k
        x, nu, lam, w = z
        F = k.F(x, p)
        res = self.residual(x, nu, lam, w, p, F)
        rinf = float(np.max(np.abs(res), initial=0.0))
        if rinf <= self.tol:
            return z, True, 0, rinf
        norm = np.linalg.norm(res)
        if not np.isfinite(norm):
            return z, False, 0, float("inf")
        chord = J is not None
        if J is None:
            J = k.Jx(x, p)
        hx = k.ineq_rhs(p)
        max_iter = self.max_newton if max_iter is None else min(max_iter, self.max_newton)
        for it in range(1, max_iter + 1):
            if time.perf_counter() > deadline:
                break
            xn, nun, lamn, wn = self._newton_target(x, nu, lam, w, p, F, J, hx)
            dx, dnu, dlam, dw = xn - x, nun - nu, lamn - lam, wn - w
            t, accepted = 1.0, False
            while t >= 1e-4:
                xt, nut, lamt, wt = x + t * dx, nu + t * dnu, lam + t * dlam, w + t * dw
                Ft = k.F(xt, p)
                rt = self.residual(xt, nut, lamt, wt, p, Ft)
                nt = np.linalg.norm(rt)
                if np.isfinite(nt) and nt <= (1 - 1e-4 * t) * norm:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                if chord:
                    chord, J = False, k.Jx(x, p)
                    continue
                return (x, nu, lam, w), False, it, rinf
            chord = False
            x, nu, lam, w, res, norm = xt, nut, lamt, wt, rt, nt
            rinf = float(np.max(np.abs(res), initial=0.0))
            if rinf <= self.tol:
                return (x, nu, lam, w), True, it, rinf
            F, J = Ft, k.Jx(x, p)
        return (x, nu, lam, w), rinf <= self.tol, max_iter, rinf

    def _newton_target(self, x, nu, lam, w, p, F, J, hx):
        """Full semismooth Newton step (primal-dual active set), as the new point."""
        k = self.k
        v = x + w
        at_lb, at_ub = v < k.x_lb, v > k.x_ub
        fixed = at_lb | at_ub
        free = ~fixed
        xn = x.copy()
        xn[at_lb], xn[at_ub] = k.x_lb[at_lb], k.x_ub[at_ub]
        dxB = xn - x
        act = lam > hx - self.G @ x
        nf = int(free.sum())
        K = kkt_matrix(J, self.A, self.G, None if nf == k.n_x else free, act)
        rhs = np.concatenate([
            -F[free] - J[free] @ dxB,
            k.eq_rhs(p) - self.A @ xn,
            hx[act] - self.G[act] @ xn,
        ])
        sol = solve(factor(K, rtol=1e-14), rhs)
        xn[free] += sol[:nf]
        nun = sol[nf:nf + self.m_e]
        lamn = np.zeros(self.m_i)
        lamn[act] = sol[nf + self.m_e:]
        dx = xn - x
        wn = np.zeros(k.n_x)
        wn[fixed] = -(F[fixed] + J[fixed] @ dx + self.A[:, fixed].T @ nun + self.G[:, fixed].T @ lamn)
        return xn, nun, lamn, wn

    def second_order_ok(self, x, lam, w, p, tol: float = 1e-8) -> bool:
        """Every follower's Hessian is PSD on the null space of its active constraints."""
        k = self.k
        J = k.Jx(x, p)
        scale = 1e-9 * (1 + np.abs(x))
        fixed = ((x - k.x_lb <= scale) & (w <= 0)) | ((k.x_ub - x <= scale) & (w >= 0))
        slack = k.ineq_rhs(p) - self.G @ x
        act = (lam > 0) | (slack <= 1e-9 * (1 + np.abs(k.ineq.rhs)))
        for i, sl in enumerate(k.slices):
            free = ~fixed[sl]
            if not free.any():
                continue
            H = J[sl, sl][np.ix_(free, free)]
            H = 0.5 * (H + H.T)
            rows = np.vstack([self.A[k.eq.owner == i][:, sl][:, free],
                              self.G[act & (k.ineq.owner == i)][:, sl][:, free]])
            Z = sla.null_space(rows) if rows.shape[0] else np.eye(int(free.sum()))
            if Z.shape[1] == 0:
                continue
            ev = np.linalg.eigvalsh(Z.T @ H @ Z)
            if ev.min() < -tol * max(1.0, np.abs(ev).max()):
                return False
        return True

    # ------------------------------------------------------------ relaxation
    def _relax(self, x, p, deadline, budget):
        """Damped simultaneous best response for at most ``budget`` sweeps.

        Stops early, asking for a Newton hand-over, once steps are below
        ``relaxation_tol`` (handing over earlier could let Newton converge to an
        equilibrium the dynamics move away from); the hand-over point is the last
        best response, whose active bounds Newton then keeps.
        """
        d = self.damping
        it = 0
        for it in range(1, budget + 1):
            br = np.concatenate([self.best_response(i, x, p) for i in range(len(self.k.slices))])
            step = br - x
            x = x + d * step
            if float(np.max(np.abs(step), initial=0.0)) <= self.relaxation_tol:
                # hand over the best responses themselves: they carry the active bounds
                return br, it, True
            if time.perf_counter() > deadline:
                break
        return x, it, False

    def best_response(self, i: int, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Follower ``i``'s best response to ``x_-i`` and ``p`` (Ipopt, warm-started at ``x_i``)."""
        if cyipopt is None:
            raise RuntimeError("cyipopt is not installed; install stackopt's dependencies")
        k = self.k
        sl = k.slices[i]
        M, cl, cu = self.follower_rows(i, p)
        prob = _BestResponse(k, i, x, p, M)
        x0 = np.clip(x[sl], k.x_lb[sl], k.x_ub[sl])
        if M.shape[0] == 0:  # bounds only: L-BFGS-B, without Ipopt's set-up cost per solve
            bounds = sopt.Bounds(k.x_lb[sl], k.x_ub[sl])
            res = sopt.minimize(lambda v: (prob.objective(v), prob.gradient(v)), x0, jac=True,
                                method="L-BFGS-B", bounds=bounds,
                                options=dict(ftol=1e-15, gtol=1e-10, maxiter=500))
            if res.success and np.all(np.isfinite(res.x)):
                return np.clip(res.x, k.x_lb[sl], k.x_ub[sl])
        nlp = cyipopt.Problem(n=sl.stop - sl.start, m=M.shape[0], problem_obj=prob,
                              lb=k.x_lb[sl], ub=k.x_ub[sl], cl=cl, cu=cu)
        for key, val in (("print_level", 0), ("sb", "yes"), ("tol", 1e-10), ("max_iter", 500),
                         ("acceptable_tol", 1e-8), ("mu_strategy", "adaptive")):
            nlp.add_option(key, val)
        if self.k.n_x > 60:  # the exact Hessian block costs a whole game Jacobian here
            nlp.add_option("hessian_approximation", "limited-memory")
        xi, info = nlp.solve(x0)
        return np.asarray(xi)

    def follower_rows(self, i: int, p):
        """Follower ``i``'s linear rows over its own variables: ``cl <= M x_i <= cu``."""
        k = self.k
        sl = k.slices[i]
        eq_rows, in_rows = k.eq.owner == i, k.ineq.owner == i
        M = np.vstack([self.A[eq_rows][:, sl], self.G[in_rows][:, sl]])
        b = k.eq_rhs(p)[eq_rows]
        cl = np.concatenate([b, np.full(int(in_rows.sum()), -np.inf)])
        cu = np.concatenate([b, k.ineq_rhs(p)[in_rows]])
        return M, cl, cu

    # -------------------------------------------------------------- starts
    def random_start(self, p, rng) -> np.ndarray:
        """A seeded random feasible point, strictly inside where possible.

        ``u`` is uniform in the bounds (``[-1, 1]`` around a missing bound) and
        projected on each follower's set; the start is ``c + 0.9 (proj(u) - c)``
        with ``c`` the projection of the bounds' midpoint, so that functions such
        as ``log`` are defined at the start.
        """
        rng = np.random.default_rng(rng)
        k = self.k
        lo = np.where(np.isfinite(k.x_lb), k.x_lb, np.minimum(k.x_ub, 0.0) - 1.0)
        hi = np.where(np.isfinite(k.x_ub), k.x_ub, np.maximum(k.x_lb, 0.0) + 1.0)
        u = lo + (hi - lo) * rng.random(k.n_x)
        key = ("center", p.tobytes() if (k._p_in_eq or k._p_in_ineq) else b"")
        c = self._centers.get(key)
        if c is None:
            c = self._centers[key] = self._feasible(0.5 * (lo + hi), p)
        return c + 0.9 * (self._feasible(u, p) - c)

    def _feasible(self, u, p) -> np.ndarray:
        """Euclidean projection of ``u`` on every follower's feasible set."""
        k = self.k
        if u.shape != (k.n_x,):
            raise ValueError(f"follower start must have shape ({k.n_x},), got {u.shape}")
        x = np.clip(u, k.x_lb, k.x_ub)
        if self.m_e == 0 and self.m_i == 0:
            return x
        out = x.copy()
        for i, sl in enumerate(k.slices):
            if not (np.any(k.eq.owner == i) or np.any(k.ineq.owner == i)):
                continue
            out[sl] = _project(self, i, x, p)
        return out

    def estimate_duals(self, x, p, tol: float = 1e-6):
        """Multipliers for ``x`` by least squares on stationarity.

        Bounds and inequalities within ``tol`` of being active are candidates;
        those whose least-squares multiplier has the wrong sign are released and
        the others are snapped exactly onto their bound (solvers such as Ipopt
        stop a hair inside it).
        """
        k = self.k
        x = x.copy()
        F = k.F(x, p)
        near_lb = np.isfinite(k.x_lb) & (x - k.x_lb <= tol * (1 + np.abs(k.x_lb)))
        near_ub = np.isfinite(k.x_ub) & (k.x_ub - x <= tol * (1 + np.abs(k.x_ub)))
        hx = k.ineq_rhs(p)
        act = (hx - self.G @ x) <= tol * (1 + np.abs(hx))
        def fit():
            bnd = np.nonzero(near_lb | near_ub)[0]
            B = np.hstack([self.A.T, self.G[act].T, np.eye(k.n_x)[:, bnd]])
            sol = np.linalg.lstsq(B, -F, rcond=None)[0] if B.shape[1] else np.zeros(0)
            ma = int(act.sum())
            return bnd, sol, sol[self.m_e:self.m_e + ma], sol[self.m_e + ma:]

        for _ in range(3):
            bnd, sol, lam_a, wb = fit()
            wrong_b = np.where(near_lb[bnd], wb > 0, wb < 0)
            wrong_a = lam_a < 0
            if not wrong_b.any() and not wrong_a.any():
                break
            near_lb[bnd[wrong_b]] = False
            near_ub[bnd[wrong_b]] = False
            act[np.nonzero(act)[0][wrong_a]] = False
        else:  # signs still wrong after three rounds are clipped to zero below
            bnd, sol, lam_a, wb = fit()
        x[near_lb], x[near_ub] = k.x_lb[near_lb], k.x_ub[near_ub]
        nu = sol[: self.m_e]
        lam = np.zeros(self.m_i)
        lam[act] = np.maximum(lam_a, 0.0)
        w = np.zeros(k.n_x)
        w[bnd] = np.where(near_lb[bnd], np.minimum(wb, 0.0), np.maximum(wb, 0.0))
        return x, nu, lam, w


def _project_box_hyperplane(u, a, b, lo, hi):
    """Exact projection of ``u`` on ``{lo <= x <= hi, a^T x = b}`` for ``a > 0``.

    ``x(tau) = clip(u - tau a, lo, hi)``; ``a^T x(tau)`` decreases piecewise
    linearly in ``tau``, so the root lies between two breakpoints.
    """
    bp = np.concatenate([(u - lo) / a, (u - hi) / a])
    bp = np.unique(bp[np.isfinite(bp)])
    if bp.size == 0:
        return u - (a @ u - b) / (a @ a) * a
    vals = np.clip(u[None, :] - bp[:, None] * a[None, :], lo, hi) @ a - b  # non-increasing
    j = int(np.searchsorted(-vals, 0.0))  # first breakpoint with vals <= 0
    if j == 0:
        tau = bp[0]
    elif j == bp.size:
        tau = bp[-1]
    else:
        t0, t1, v0, v1 = bp[j - 1], bp[j], vals[j - 1], vals[j]
        tau = t1 if v0 == v1 else t0 + (t1 - t0) * v0 / (v0 - v1)
    return np.clip(u - tau * a, lo, hi)


class _BestResponse:
    """cyipopt callbacks for one follower's problem with the others held fixed."""

    def __init__(self, k, i, x, p, M):
        self.k, self.i, self.x, self.p, self.M = k, i, x.copy(), p, M
        self.sl = k.slices[i]
        n = self.sl.stop - self.sl.start
        self.tril = np.tril_indices(n)

    def _full(self, xi):
        x = self.x.copy()
        x[self.sl] = xi
        return x

    def objective(self, xi):
        return float(self.k.follower_objectives(self._full(xi), self.p)[self.i])

    def gradient(self, xi):
        return self.k.F(self._full(xi), self.p)[self.sl]

    def constraints(self, xi):
        return self.M @ xi

    def jacobianstructure(self):
        r, c = np.indices(self.M.shape)
        return r.ravel(), c.ravel()

    def jacobian(self, xi):
        return self.M.ravel()

    def hessianstructure(self):
        return self.tril

    def hessian(self, xi, lagrange, obj_factor):
        H = self.k.Jx(self._full(xi), self.p)[self.sl, self.sl]
        H = 0.5 * (H + H.T)
        return obj_factor * H[self.tril]


class _Projection(_BestResponse):
    def __init__(self, k, i, x, p, M, target):
        super().__init__(k, i, x, p, M)
        self.target = target

    def objective(self, xi):
        return 0.5 * float(np.sum((xi - self.target) ** 2))

    def gradient(self, xi):
        return xi - self.target

    def hessian(self, xi, lagrange, obj_factor):
        return obj_factor * np.eye(len(xi))[self.tril]


def _project(oracle, i, x, p):
    k = oracle.k
    sl = k.slices[i]
    M, cl, cu = oracle.follower_rows(i, p)
    prob = _Projection(k, i, x, p, M, x[sl].copy())
    nlp = cyipopt.Problem(n=sl.stop - sl.start, m=M.shape[0], problem_obj=prob,
                          lb=k.x_lb[sl], ub=k.x_ub[sl], cl=cl, cu=cu)
    for key, val in (("print_level", 0), ("sb", "yes"), ("tol", 1e-10)):
        nlp.add_option(key, val)
    xi, _ = nlp.solve(x[sl])
    return np.asarray(xi)
