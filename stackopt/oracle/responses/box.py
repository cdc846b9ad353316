"""Best responses of followers with a box only, several at once.

Each row ``b`` of a batch is one follower ``owner[b]`` responding from its own
full point ``X[b]`` (the others' values held there, its own the start):
Bertsekas' two-metric projected Newton on ``f_i`` over the follower's box
(Newton on the free variables, gradient on those held at a bound; a follower
with one variable takes secant steps after the first), with an Armijo search
per row. All rows are evaluated together, each for its own follower's entries
only (:meth:`GameKernel.F_own`: a few NumPy calls per level of the compiled
programs for every row), so a sweep of
every follower's best response costs a few batched evaluations instead of a
solve per follower.
"""
from __future__ import annotations

import numpy as np


class BoxNewtonBatch:
    """The batched projected Newton of the module docstring, for a kernel's box-only followers."""

    def __init__(self, kernel, tol: float, max_iter: int, armijo: float, min_step: float):
        k = self.k = kernel
        self.tol, self.max_iter, self.armijo, self.min_step = tol, max_iter, armijo, min_step
        sizes = np.array([sl.stop - sl.start for sl in k.slices], dtype=np.intp)
        self.sizes = sizes
        # each follower's block of the Jacobian's nonzeros: (positions, local rows, local cols)
        rows, cols = k.Jx_rows, k.Jx_cols
        self.blocks = [(at, rows[at] - sl.start, cols[at] - sl.start)
                       for at, sl in zip(k.Jx_own_entries, k.slices)]

    def solve(self, owner: np.ndarray, X: np.ndarray, p: np.ndarray, tol: float | None = None):
        """Responses of rows ``(owner[b], X[b])``: ``(X, w, ok)`` with each row's own block
        replaced by its response, the bound multipliers ``w`` (flat, rows' blocks in
        order) and which rows met ``tol`` (by default the solver's)."""
        k, B = self.k, len(owner)
        tol = self.tol if tol is None else tol
        m = self.sizes[owner]
        start = np.concatenate([[0], np.cumsum(m)[:-1]])
        vr = np.repeat(np.arange(B), m)  # flat entry -> row
        vc = np.concatenate([np.arange(k.slices[i].start, k.slices[i].stop) for i in owner])
        lo, hi = k.x_lb[vc], k.x_ub[vc]
        X = np.array(X, dtype=float)
        y = np.clip(X[vr, vc], lo, hi)
        X[vr, vc] = y
        f = k.follower_objective_own(X, p, owner)
        w, ok = np.zeros(y.size), np.zeros(B, dtype=bool)
        active = np.isfinite(f)
        g_prev, y_prev, has_prev = np.zeros(y.size), np.zeros(y.size), np.zeros(B, dtype=bool)
        G = np.zeros((B, k.n_x))
        for _ in range(self.max_iter):
            A = np.flatnonzero(active)
            if not A.size:
                break
            G[A] = k.F_own(X[A], p, owner[A])
            fa = active[vr]
            g = np.where(fa, G[vr, vc], 0.0)
            held = ((y <= lo) & (g > 0)) | ((y >= hi) & (g < 0))
            pg = np.where(held, 0.0, g)
            bad = np.logical_or.reduceat(~np.isfinite(pg), start) | ~np.isfinite(f)
            pgmax = np.maximum.reduceat(np.abs(np.where(np.isfinite(pg), pg, 0.0)), start)
            done = active & ~bad & (pgmax <= tol)
            ok |= done
            w[done[vr]] = np.where(held, -g, 0.0)[done[vr]]
            active &= ~bad & ~done
            A = np.flatnonzero(active)
            if not A.size:
                break
            d = self._directions(A, owner, X, p, y, g, pg, held, g_prev, y_prev, has_prev, m, start)
            has_prev[A] = True
            fa = active[vr]
            g_prev[fa], y_prev[fa] = g[fa], y[fa]
            self._search(A, X, p, owner, y, f, g, d, lo, hi, start, vr, vc, active)
        return X, w, ok

    def _directions(self, A, owner, X, p, y, g, pg, held, g_prev, y_prev, has_prev, m, start):
        """Newton directions of the active rows (secant for one-variable rows after the first)."""
        d = -pg
        k = self.k
        scalar = A[(m[A] == 1)]
        ia = start[scalar]
        secant = scalar[has_prev[scalar] & (y[ia] != y_prev[ia]) & (g[ia] != g_prev[ia])]
        is_secant = np.zeros(len(m), dtype=bool)
        is_secant[secant] = True
        need = A[~is_secant[A]]  # A without the secant rows, in order
        H_scalar = np.zeros(len(m))
        if secant.size:
            j = start[secant]
            H_scalar[secant] = (g[j] - g_prev[j]) / (y[j] - y_prev[j])
        J = k.Jx_own(X[need], p, owner[need]) if need.size else None
        for r, b in enumerate(need):
            at, lr, lc = self.blocks[owner[b]]
            H = np.zeros((m[b], m[b]))
            np.add.at(H, (lr, lc), J[r, at])
            sl = slice(start[b], start[b] + m[b])
            free = ~held[sl]
            if m[b] == 1:
                H_scalar[b] = H[0, 0] if free[0] else 0.0
                continue
            Hf = H[np.ix_(free, free)]
            try:
                L = np.linalg.cholesky(0.5 * (Hf + Hf.T))
                d[sl][free] = -np.linalg.solve(L.T, np.linalg.solve(L, g[sl][free]))
            except np.linalg.LinAlgError:  # not convex here: a gradient step
                pass
        j = start[scalar]
        conv = (H_scalar[scalar] > 0) & ~held[j]
        root = np.sqrt(H_scalar[scalar][conv])  # as the Cholesky solve of the 1 x 1 block rounds
        d[j[conv]] = -((g[j[conv]] / root) / root)
        return d

    def _search(self, A, X, p, owner, y, f, g, d, lo, hi, start, vr, vc, active):
        """Armijo search per active row; a row without an acceptable step stops (not met)."""
        k = self.k
        t = np.ones(len(owner))
        pend = A

        def among(sel):  # which rows are in ``sel``
            mask = np.zeros(len(owner), dtype=bool)
            mask[sel] = True
            return mask

        while pend.size:
            fe = among(pend)[vr]  # the entries of the pending rows
            yt = np.clip(y[fe] + t[vr[fe]] * d[fe], lo[fe], hi[fe])
            Xt = X[pend].copy()
            pos = np.searchsorted(pend, vr[fe])
            Xt[pos, vc[fe]] = yt
            ft = k.follower_objective_own(Xt, p, owner[pend])
            dec = np.zeros(len(owner))
            np.add.at(dec, vr[fe], g[fe] * (yt - y[fe]))
            good = np.isfinite(ft) & (ft <= f[pend] + self.armijo * dec[pend] + 1e-14 * np.abs(f[pend]))
            acc = pend[good]
            if acc.size:
                accepted = among(acc)
                fa, take = accepted[vr], accepted[vr[fe]]  # the accepted rows' entries, among all and the pending
                y[fa] = yt[take]
                X[vr[fa], vc[fa]] = y[fa]
                f[acc] = ft[good]
            t[pend[~good]] *= 0.5
            pend = pend[~good]
            fail = pend[t[pend] < self.min_step]
            active[fail] = False
            pend = pend[t[pend] >= self.min_step]
