"""Best responses of followers whose set is a box and one linear row, by spectral projected gradient.

The follower's set ``lo <= y <= hi, a^T y = b`` (or ``<= b``) has an exact
projection (:func:`stackopt.sets.project_box_row`), so its best response,
the others held, is found without a solver set-up: spectral projected gradient
(Birgin, Martinez, Raydan 2000) with Barzilai-Borwein lengths and a
non-monotone Armijo search (the largest of the last ``MEMORY`` values), from
the follower's current values, until the projected gradient
``|P(y - g) - y|`` is below ``tol`` (or below ``sqrt(tol)`` where rounding
leaves no descent direction: the projected step no longer lowers ``f`` in
floating point). The row's and the bounds' multipliers then follow from the
projection of ``y - g``, which returns ``y`` at a stationary point:
``-g = a tau + w`` with ``w`` nonzero only on coordinates held at a bound. A run that does not finish within
``max_iter`` steps returns None: the caller falls back on Ipopt.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .sets import project_box_row

MEMORY = 10  # non-monotone search: values the Armijo test compares against
ARMIJO = 1e-4
ALPHA_MIN, ALPHA_MAX = 1e-12, 1e12  # Barzilai-Borwein safeguards
MIN_STEP = 1e-14  # relative step below which the search has failed


class RowResponses:
    """Spectral projected gradient best responses (see the module docstring)."""

    def __init__(self, kernel, sets, tol: float, max_iter: int):
        self.k, self.sets, self.tol, self.max_iter = kernel, sets, tol, max_iter

    def applies(self, i: int) -> bool:
        """Follower ``i``'s set is a box and exactly one row."""
        return self.sets.simple and self.sets.rows[i] is not None

    def solve(self, i: int, x: np.ndarray, p: np.ndarray):
        """``(y, tau, w)`` for follower ``i`` from ``x``: its response, the row's multiplier
        and the bounds'; None where the method did not finish."""
        k = self.k
        sl = k.slices[i]
        kind, r, a = self.sets.rows[i]
        b = float((k.eq_rhs(p) if kind == "eq" else k.ineq_rhs(p))[r])
        lo, hi = k.x_lb[sl], k.x_ub[sl]
        full = np.array(x, dtype=float)
        y, _, _ = project_box_row(full[sl], kind, a, b, lo, hi)
        if y is None:
            return None
        full[sl] = y
        f, g = k.follower_objectives(full, p)[i], k.F(full, p)[sl]
        refs, alpha = deque([f], maxlen=MEMORY), None
        for _ in range(self.max_iter):
            if not (np.isfinite(f) and np.all(np.isfinite(g))):
                return None
            q, _, _ = project_box_row(y - g, kind, a, b, lo, hi)
            if q is None:
                return None
            pg = float(np.max(np.abs(q - y), initial=0.0))
            if pg <= self.tol:
                return (y,) + self._duals(y, g, kind, a, b, lo, hi)
            if alpha is None:
                alpha = 1.0 / max(pg, 1e-300) * min(1.0, pg)
            q, _, _ = project_box_row(y - alpha * g, kind, a, b, lo, hi)
            d = q - y
            gd = float(g @ d)
            if not gd < 0:  # no descent left in floating point: stationary if nearly so
                return (y,) + self._duals(y, g, kind, a, b, lo, hi) if pg <= np.sqrt(self.tol) else None
            t, ref = 1.0, max(refs)
            while True:
                full[sl] = y + t * d
                ft = k.follower_objectives(full, p)[i]
                if np.isfinite(ft) and ft <= ref + ARMIJO * t * gd:
                    break
                t *= 0.5
                if t * float(np.max(np.abs(d))) <= MIN_STEP * (1.0 + float(np.max(np.abs(y)))):
                    return None
            yt = y + t * d
            gt = k.F(full, p)[sl]
            s, v = yt - y, gt - g
            sv = float(s @ v)
            alpha = float(np.clip((s @ s) / sv, ALPHA_MIN, ALPHA_MAX)) if sv > 0 else ALPHA_MAX
            y, f, g = yt, ft, gt
            refs.append(f)
        return None

    def _duals(self, y, g, kind, a, b, lo, hi):
        """``(tau, w)`` from the projection of ``y - g`` (which returns ``y`` at a stationary
        point): ``-g = a tau + w``, ``w`` nonzero only on coordinates held at a bound."""
        q, tau, _ = project_box_row(y - g, kind, a, b, lo, hi)
        w = -g - tau * a
        w[(y > lo) & (y < hi)] = 0.0
        return float(tau), w
