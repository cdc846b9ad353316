"""Best responses of followers whose set is a box and one linear row, by spectral projected gradient.

The follower's set ``lo <= y <= hi, a^T y = b`` (or ``<= b``) has an exact
projection (:func:`stackopt.oracle.boxrow.project_rows`), so its best response,
the others held, is found without a solver set-up: spectral projected gradient
(Birgin, Martinez, Raydan 2000) with Barzilai-Borwein lengths and a
non-monotone Armijo search (the largest of the last ``MEMORY`` values), from
the follower's current values, until the projected gradient
``|P(y - g) - y|`` is below ``tol`` (a caller may ask for a looser one), or
below ``sqrt(tol)`` (or the looser one, if larger) where rounding leaves no
descent direction: the projected step no longer lowers ``f`` in floating point.
The row's and the bounds' multipliers then follow from the projection of
``y - g``, which returns ``y`` at a stationary point: ``-g = a tau + w`` with
``w`` nonzero only on coordinates held at a bound. A run that does not finish within
``max_iter`` steps returns None: the caller falls back on Ipopt.
"""
from __future__ import annotations

import numpy as np

from ..boxrow import project_rows

MEMORY = 10  # non-monotone search: values the Armijo test compares against
ARMIJO = 1e-4
ALPHA_MIN, ALPHA_MAX = 1e-12, 1e12  # Barzilai-Borwein safeguards
MIN_STEP = 1e-14  # relative step below which the search has failed


class RowResponses:
    """Spectral projected gradient best responses (see the module docstring), every
    requested response at once: one batched evaluation of the objectives and gradients
    and one padded projection (:func:`stackopt.oracle.boxrow.project_rows`) per step of all runs."""

    def __init__(self, kernel, sets, tol: float, max_iter: int):
        self.k, self.sets, self.tol, self.max_iter = kernel, sets, tol, max_iter

    def applies(self, i: int) -> bool:
        """Follower ``i``'s set is a box and exactly one row."""
        return self.sets.simple and self.sets.rows[i] is not None

    def solve(self, i: int, x: np.ndarray, p: np.ndarray):
        """``(y, tau, w)`` for follower ``i`` from ``x``: its response, the row's multiplier
        and the bounds'; None where the method did not finish."""
        return self.batch(np.array([i]), np.asarray(x, dtype=float)[None, :], p)[0]

    def batch(self, owners: np.ndarray, X: np.ndarray, p: np.ndarray, tol: float | None = None) -> list:
        """:meth:`solve` for follower ``owners[b]`` from ``X[b]``, every row at once, to the
        projected-gradient tolerance ``tol`` (by default the solver's)."""
        k, B = self.k, len(owners)
        tol = self.tol if tol is None else tol
        idx, valid, eq, _, A, of = self.sets.blocks
        q = of[owners]
        idx, valid, eq, A, b = idx[q], valid[q], eq[q], A[q], self.sets.row_rhs(p)[q]
        LO, HI = np.where(valid, k.x_lb[idx], 0.0), np.where(valid, k.x_ub[idx], 0.0)

        def project(U, at=slice(None)):  # rows ``at`` of the batch
            return project_rows(np.where(valid[at], U, 0.0), eq[at], A[at], b[at], LO[at], HI[at],
                                compiled=k.uses_loops)

        rows = np.arange(B)
        full = np.array(X, dtype=float)
        Y, tau, _ = project(full[rows[:, None], idx])
        out: list = [None] * B
        live = np.isfinite(tau)
        put = valid & live[:, None]
        full[np.broadcast_to(rows[:, None], idx.shape)[put], idx[put]] = Y[put]
        f = np.full(B, np.nan)
        G = np.zeros_like(Y)
        f[live], G[live] = self._values(full[live], owners[live], idx[live], valid[live], p)
        refs = np.full((B, MEMORY), -np.inf)
        refs[:, 0] = f
        alpha = np.full(B, np.nan)
        for it in range(self.max_iter):
            live &= np.isfinite(f) & np.all(np.isfinite(G), axis=1)
            L = np.flatnonzero(live)
            if not L.size:
                break
            Q, tq, _ = project(Y[L] - G[L], L)
            pg = np.max(np.abs(Q - Y[L]), axis=1, initial=0.0)
            fine = np.isfinite(tq)
            done = fine & (pg <= tol)
            first = np.isnan(alpha[L])
            alpha[L[first]] = 1.0 / np.maximum(pg[first], 1e-300) * np.minimum(1.0, pg[first])
            D, td, _ = project(Y[L] - alpha[L, None] * G[L], L)
            D = D - Y[L]
            gd = np.sum(G[L] * D, axis=1)
            flat = fine & ~done & np.isfinite(td) & ~(gd < 0)  # no descent left in floating point
            done |= flat & (pg <= max(tol, np.sqrt(self.tol)))
            for j in np.flatnonzero(done):
                out[L[j]] = self._answer(L[j], Y, G, tq[j], idx, valid, A)
            go = fine & ~done & ~flat & np.isfinite(td)
            live[L[~go]] = False
            L, D, gd = L[go], D[go], gd[go]
            if not L.size:
                break
            t, ok, fs = self._search(L, full, Y, f, D, gd, refs.max(axis=1)[L], owners, idx, valid, p)
            L, t, D, ft = L[ok], t[ok], D[ok], fs[ok]
            live[:] = False
            live[L] = True  # the rows whose search found a step
            if not L.size:
                break
            Gt = self._gradients(full[L], owners[L], idx[L], valid[L], p)
            S = t[:, None] * D
            alpha[L] = _spectral(S, Gt - G[L])
            Y[L], f[L], G[L] = Y[L] + S, ft, Gt
            refs[L, (it + 1) % MEMORY] = ft
        return out

    def _values(self, full, owners, idx, valid, p):
        """Each row's own objective and own gradient (padded, 0 off its block)."""
        return (self.k.follower_objective_own(full, p, owners),
                self._gradients(full, owners, idx, valid, p))

    def _gradients(self, full, owners, idx, valid, p):
        """Each row's own gradient (padded, 0 off its block)."""
        return np.where(valid, np.take_along_axis(self.k.F_own(full, p, owners), idx, axis=1), 0.0)

    def _search(self, L, full, Y, f, D, gd, ref, owners, idx, valid, p):
        """Non-monotone Armijo search of rows ``L`` along ``D``; ``full`` holds each accepted
        point. Returns the steps, which rows found one and their objectives there."""
        t = np.ones(L.size)
        ok = np.zeros(L.size, dtype=bool)
        f_new = np.full(L.size, np.nan)
        pend = np.arange(L.size)
        scale = MIN_STEP * (1.0 + np.max(np.abs(Y[L]), axis=1, initial=0.0))
        big = np.max(np.abs(D), axis=1, initial=0.0)
        while pend.size:
            rows = L[pend]
            P = full[rows]
            Yt = Y[rows] + t[pend, None] * D[pend]
            cols = np.broadcast_to(np.arange(rows.size)[:, None], idx[rows].shape)
            P[cols[valid[rows]], idx[rows][valid[rows]]] = Yt[valid[rows]]
            ft = self.k.follower_objective_own(P, p, owners[rows])
            good = np.isfinite(ft) & (ft <= ref[pend] + ARMIJO * t[pend] * gd[pend])
            full[rows[good]] = P[good]
            ok[pend[good]] = True
            f_new[pend[good]] = ft[good]
            pend = pend[~good]
            t[pend] *= 0.5
            pend = pend[t[pend] * big[pend] > scale[pend]]
        return t, ok, f_new

    def _answer(self, b, Y, G, tau, idx, valid, A):
        """``(y, tau, w)`` at a stationary point of row ``b``: ``-g = a tau + w``, ``w``
        nonzero only on coordinates held at a bound."""
        k, v = self.k, valid[b]
        y, g, a = Y[b, v], G[b, v], A[b, v]
        lo, hi = k.x_lb[idx[b, v]], k.x_ub[idx[b, v]]
        w = -g - tau * a
        w[(y > lo) & (y < hi)] = 0.0
        return y.copy(), float(tau), w


def _spectral(S, V) -> np.ndarray:
    """Barzilai-Borwein lengths ``s^T s / s^T v`` per row, safeguarded (``ALPHA_MAX`` where
    ``s^T v <= 0``: no curvature seen)."""
    sv = np.sum(S * V, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sv > 0, np.clip(np.sum(S * S, axis=1) / sv, ALPHA_MIN, ALPHA_MAX), ALPHA_MAX)
