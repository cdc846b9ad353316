"""The Newton engine: semismooth Newton (a primal-dual active-set step) on the KKT residual.

Each step takes the active set of :meth:`KKTResidual.classify` at the current
point, holds those bounds and rows as equalities (smooth rows linearised there),
zeroes the other multipliers and solves the reduced KKT system for the full step; a
backtracking line search on the residual's 2-norm (Armijo constant
``armijo``, shortest step ``min_step``) accepts it. Warm-started from a nearby
equilibrium it converges in one to three steps. Given the linearization of a
nearby equilibrium (``chord``), the first step reuses its game Jacobian, and
its factorization where the active set is the same; a step that cannot be
made acceptable that way is retried with the exact Jacobian.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .linalg import LinearSolver
from .residual import KKTResidual, Linearization


@dataclass
class NewtonResult:
    """End point ``z = (x, nu, lam, w)``, whether the residual met the tolerance, the
    iterations taken and the residual's infinity norm there."""

    z: tuple
    converged: bool
    iterations: int
    residual: float


class NewtonEngine:
    """Semismooth Newton with backtracking; see the module docstring."""

    def __init__(self, system: KKTResidual, solver: LinearSolver, tol: float,
                 armijo: float = 1e-4, min_step: float = 1e-4):
        self.system, self.solver = system, solver
        self.tol, self.armijo, self.min_step = tol, armijo, min_step

    def solve(self, z, p, deadline: float, max_iter: int,
              chord: Linearization | None = None) -> NewtonResult:
        """Newton from ``z`` for at most ``max_iter`` steps or until ``deadline``."""
        sysm, k = self.system, self.system.kernel
        x, nu, lam, w = z
        F = k.F(x, p)
        res = sysm.value(x, nu, lam, w, p, F)
        rinf = sysm.norm(res)
        if rinf <= self.tol:
            return NewtonResult(z, True, 0, rinf)
        if not np.isfinite(rinf):
            return NewtonResult(z, False, 0, rinf)
        norm = float(np.linalg.norm(res))
        J = chord.J if chord is not None else sysm.jacobian(x, p, self.solver.dense, nu, lam)
        lin = chord
        it = 0
        while it < max_iter:
            if time.perf_counter() > deadline:
                break
            it += 1
            target = self.target((x, nu, lam, w), p, F, J, lin)
            step = self._line_search((x, nu, lam, w), target, p, norm)
            if step is None:
                if lin is not None:  # the chord step failed: retry with the exact Jacobian
                    lin, J = None, sysm.jacobian(x, p, self.solver.dense, nu, lam)
                    continue
                return NewtonResult((x, nu, lam, w), False, it, rinf)
            lin = None
            (x, nu, lam, w), F, res, norm = step
            rinf = sysm.norm(res)
            if rinf <= self.tol:
                return NewtonResult((x, nu, lam, w), True, it, rinf)
            J = sysm.jacobian(x, p, self.solver.dense, nu, lam)
        return NewtonResult((x, nu, lam, w), rinf <= self.tol, it, rinf)

    def _line_search(self, z, target, p, norm):
        sysm = self.system
        x, nu, lam, w = z
        d = [b - a for a, b in zip(z, target)]
        t = 1.0
        while t >= self.min_step:
            zt = (x + t * d[0], nu + t * d[1], lam + t * d[2], w + t * d[3])
            Ft = sysm.kernel.F(zt[0], p)
            rt = sysm.value(*zt, p, Ft)
            nt = float(np.linalg.norm(rt))
            if np.isfinite(nt) and nt <= (1 - self.armijo * t) * norm:
                return zt, Ft, rt, nt
            t *= 0.5
        return None

    def target(self, z, p, F, J, lin: Linearization | None = None, prox: float = 0.0):
        """The full semismooth Newton step from ``z`` (the new point, not the increment).

        ``lin``'s factorization is used where its active set is the one at ``z``.
        ``prox > 0`` adds ``prox * (x_new - x)`` to the linearised stationarity: a
        linearly implicit Euler step of length ``1 / prox`` of projected gradient play.
        """
        sysm, k = self.system, self.system.kernel
        x, nu, lam, w = z
        if prox:
            J = J + prox * (sp.identity(k.n_x, format="csr") if sp.issparse(J) else np.eye(k.n_x))
            lin = None
        active = sysm.classify(x, lam, w, p)
        lo, hi, free, rows = active.lower, active.upper, active.free, active.rows
        xn = x.copy()
        xn[lo], xn[hi] = k.x_lb[lo], k.x_ub[hi]
        dxB = xn - x
        JdxB = J @ dxB
        b, h = sysm.rhs(p)
        rhs = [-F[free] - JdxB[free], b - sysm.A_op @ xn]
        sm = sysm.smooth
        if sm is not None:  # the slots' rows linearised at x: c + C (xn - x) (= or held) 0
            c = sm.slot_values(x, p) + sm.C_dot(x, p, dxB)
            rhs.append(-c[:sm.n_eq])
            rhs.append(np.concatenate([h - sysm.G_op @ xn, -c[sm.n_eq:]])[rows])
        elif sysm.m_i:
            rhs.append((h - sysm.G_op @ xn)[rows])
        rhs = np.concatenate(rhs)
        if lin is not None and lin.active == active:
            fac = lin.factor
        else:
            fac = self.solver.factor(sysm.matrix(J, active, x, p))
        dx, nun, lamn = sysm.split(fac.solve(rhs), active)
        xn[free] += dx[free]
        step = xn - x
        wn = np.zeros(k.n_x)
        fixed = ~free
        if fixed.any():
            g = F + J @ step
            if sysm.me_lin:
                g = g + sysm.AT @ nun[:sysm.me_lin]
            if sysm.mi_lin:
                g = g + sysm.GT @ lamn[:sysm.mi_lin]
            if sm is not None:
                g = g + sm.stationarity(x, p, sysm.sigma(nun, lamn))
            wn[fixed] = -g[fixed]
        return xn, nun, lamn, wn
