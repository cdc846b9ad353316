"""The exact Euclidean projection on a box and one linear row, for many blocks at once.

Block ``r`` is ``{lo_r <= x_r <= hi_r, a_r^T x_r = b_r}`` (or ``<= b_r``). Its
projection is ``x(tau) = clip(u - tau a, lo, hi)`` with ``a^T x(tau)`` piecewise
linear and non-increasing in ``tau``: coordinate ``j`` (``a_j != 0``) moves
between its bounds while ``tau`` is between its two breakpoints, adding
``-a_j^2`` to the slope there, so the row's multiplier ``tau`` follows from the
sorted breakpoints and cumulative sums. Blocks of different lengths share one
padded array (row ``r`` of ``U``, ``A``, ``LO``, ``HI``; a padding entry has
``a = 0`` and ``u = lo = hi = 0``, so it neither moves nor meets the row), and a
projection of every follower's block is a few NumPy calls, not a loop over
followers. Where a game is large enough for compiled loops
(:attr:`stackopt.kernel.GameKernel.uses_loops`), :func:`project_rows` with
``compiled=True`` runs as one compiled loop (:mod:`stackopt.oracle.boxrow_loop`)
with the same values to the last bit.
"""
from __future__ import annotations

import functools

import numpy as np

from stackopt.expr.loops import interruptible


def row_multipliers(U, A, b, LO, HI) -> np.ndarray:
    """``tau_r`` with ``a_r^T clip(u_r - tau_r a_r, lo_r, hi_r) = b_r`` for every block
    (``nan`` where no ``tau`` reaches ``b_r``); entries with ``a = 0`` (and padding) do
    not move the row."""
    nz = A != 0
    S2 = A * A
    with np.errstate(invalid="ignore", divide="ignore"):
        t_lo, t_hi = (U - LO) / A, (U - HI) / A
    t1, t2 = np.minimum(t_lo, t_hi), np.maximum(t_lo, t_hi)
    f1, f2 = nz & np.isfinite(t1), nz & np.isfinite(t2)
    base = -np.where(nz & ~f1, S2, 0.0).sum(axis=1)  # slope as tau -> -inf
    times = np.concatenate([np.where(f1, t1, np.inf), np.where(f2, t2, np.inf)], axis=1)
    slopes = np.concatenate([np.where(f1, -S2, 0.0), np.where(f2, S2, 0.0)], axis=1)
    order = np.argsort(times, axis=1, kind="stable")
    times = np.take_along_axis(times, order, axis=1)
    after = base[:, None] + np.cumsum(np.take_along_axis(slopes, order, axis=1), axis=1)
    count = f1.sum(axis=1) + f2.sum(axis=1)  # finite breakpoints per block
    rows = np.arange(U.shape[0])
    tau = np.full(U.shape[0], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        none = count == 0  # every coordinate free for all tau: the row is linear in tau
        s2 = np.where(nz, S2, 0.0).sum(axis=1)
        tau[none] = np.where(s2[none] > 0, (np.where(nz, A * U, 0.0).sum(axis=1)[none] - b[none]) / s2[none],
                             np.where(b[none] == 0, 0.0, np.nan))  # no coordinate moves the row
        t0 = np.where(none, 0.0, times[:, 0])
        x0 = np.clip(U - t0[:, None] * A, LO, HI)
        f0 = np.where(nz, A * x0, 0.0).sum(axis=1)
        steps = np.diff(times, axis=1)
        vals = f0[:, None] + np.concatenate(
            [np.zeros((U.shape[0], 1)), np.cumsum(np.where(np.isfinite(steps), after[:, :-1] * steps, 0.0),
                                                  axis=1)], axis=1)
        inside = np.arange(times.shape[1])[None, :] < count[:, None]
        tol = 1e-12 * (1.0 + np.abs(b) + np.where(nz, np.abs(A) * np.abs(x0), 0.0).sum(axis=1))
        low = ~none & (f0 < b - tol)  # b below the row's range at the first breakpoint
        tau[low] = np.where(base[low] < 0, t0[low] + (b[low] - f0[low]) / base[low], np.nan)
        below = inside & (vals <= (b + tol)[:, None])
        rest = ~none & ~low
        past = rest & ~below.any(axis=1)  # b beyond the last breakpoint
        last = np.maximum(count - 1, 0)
        s = -np.where(nz & ~f2, S2, 0.0).sum(axis=1)  # slope past the last breakpoint: exactly 0 if none is free
        tau[past] = np.where(s[past] < 0, times[rows, last][past] + (b[past] - vals[rows, last][past]) / s[past],
                             np.nan)
        at = rest & ~past
        j = np.argmax(below, axis=1)
        first = at & (j == 0)
        tau[first] = times[first, 0]
        mid = at & (j > 0)
        jm = np.maximum(j - 1, 0)
        s = after[rows, jm]
        tj = times[rows, jm]
        tau[mid] = np.where(s[mid] < 0, tj[mid] + (b[mid] - vals[rows, jm][mid]) / s[mid], tj[mid])
    return tau


@functools.cache
def compiled_projection():
    """The compiled :func:`project_rows` (:mod:`stackopt.oracle.boxrow_loop`), or ``None``
    where Numba is not installed."""
    try:
        from . import boxrow_loop
    except ImportError:
        return None
    return interruptible(boxrow_loop.project_rows)


def warm_projection() -> None:
    """Compile the projection's loop now, or load it from Numba's cache (as
    :func:`stackopt.expr.loops.warm` does for the programs' loops): where the followers' sets
    are first read, not inside a solve's first cold start."""
    if compiled_projection() is not None:
        one = np.ones((1, 1))
        project_rows(one, np.ones(1, dtype=bool), one, np.ones(1), np.zeros((1, 1)), one, compiled=True)


def project_rows(U, eq, A, b, LO, HI, compiled: bool = False):
    """``(X, tau, W)``: every block's projection on its box and its row (``eq[r]``: an
    equality, else ``<=``; ``tau = 0`` where the inequality is slack at the box's
    projection) and the bounds' part ``W = U - tau a - X`` of the normal cone;
    ``tau`` is ``nan`` where no point of the box meets the row. ``compiled``: as one
    compiled loop where Numba is installed (the same values)."""
    loop = compiled_projection() if compiled else None
    if loop is not None:
        as_float = functools.partial(np.ascontiguousarray, dtype=float)
        return loop(as_float(U), np.ascontiguousarray(eq, dtype=np.bool_), as_float(A),
                    as_float(b), as_float(LO), as_float(HI))
    X = np.clip(U, LO, HI)
    tau = np.zeros(U.shape[0])
    need = eq | ((A * X).sum(axis=1) > b)
    if need.any():
        tau[need] = row_multipliers(U[need], A[need], b[need], LO[need], HI[need])
    V = U - np.where(np.isfinite(tau), tau, 0.0)[:, None] * A
    X = np.clip(V, LO, HI)
    return X, tau, V - X


def project_box_row(u, kind: str, a, b: float, lo, hi):
    """One block's :func:`project_rows` (``kind``: ``"eq"`` or ``"ineq"``):
    ``(P(u), tau, w)``, or ``(None, nan, None)`` where no point of the box meets the row."""
    X, tau, W = project_rows(u[None], np.array([kind == "eq"]), a[None], np.array([b], dtype=float),
                             lo[None], hi[None])
    if not np.isfinite(tau[0]):
        return None, float("nan"), None
    return X[0], float(tau[0]), W[0]
