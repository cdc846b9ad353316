"""The box-and-row projection of :mod:`stackopt.oracle.boxrow` as one compiled loop (Numba).

For games whose programs are compiled loops already
(:attr:`stackopt.kernel.GameKernel.uses_loops`): there a projection of a few
blocks, some sixty NumPy calls on small arrays, is most of a cold start's
gradient play and of a deviation search's best responses. Block by block, the
loop performs the NumPy path's operations in the same order: NumPy's pairwise
summation of a row (:func:`_pairwise`), a stable sort of the breakpoints,
``np.clip``'s and ``np.minimum``'s comparisons, no fused multiply-adds
(``fastmath`` off), so both give the same values to the last bit. Imported only
where that path is asked for (:func:`stackopt.oracle.boxrow.compiled_projection`),
it compiles on first use and is kept in Numba's on-disk cache where a cache
folder is writable.
"""
from __future__ import annotations

import numba
import numpy as np


def _jit(fn):
    try:
        return numba.njit(cache=True, error_model="numpy")(fn)
    except RuntimeError:  # no writable cache location: compile in each process
        return numba.njit(error_model="numpy")(fn)


@_jit
def _block(a, lo, n):
    """``a[lo:lo + n].sum()`` for ``n <= 128``, as NumPy sums it: in order below 8,
    else in eight interleaved partial sums joined pairwise, then the rest in order."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@_jit
def _pairwise(a, lo, n):
    """``a[lo:lo + n].sum()`` as NumPy sums a contiguous row: above 128 values, the sum of
    the halves (the first a multiple of 8 long), recursively; an explicit stack (Numba's
    on-disk cache does not keep recursive functions)."""
    if n <= 128:
        return _block(a, lo, n)
    los, ns, stage = np.empty(64, np.intp), np.empty(64, np.intp), np.empty(64, np.intp)
    sums = np.empty(64)
    top, held = 0, 0
    los[0], ns[0], stage[0] = lo, n, 0
    while top >= 0:
        lo_, n_ = los[top], ns[top]
        if n_ <= 128:
            sums[held] = _block(a, lo_, n_)
            held += 1
            top -= 1
            continue
        half = n_ // 2
        half -= half % 8
        if stage[top] == 0:
            stage[top] = 1
            top += 1
            los[top], ns[top], stage[top] = lo_, half, 0
        elif stage[top] == 1:
            stage[top] = 2
            top += 1
            los[top], ns[top], stage[top] = lo_ + half, n_ - half, 0
        else:
            held -= 1
            sums[held - 1] = sums[held - 1] + sums[held]
            top -= 1
    return sums[0]


@_jit
def _row_sum(a):
    return 0.0 + _pairwise(a, 0, a.size)


@_jit
def _clip(x, lo, hi):
    """``np.clip(x, lo, hi)`` of one value (NaN kept, NumPy's comparisons)."""
    if np.isnan(x) or np.isnan(lo) or np.isnan(hi):
        return np.nan
    x = lo if lo > x else x
    return hi if hi < x else x


@_jit
def _multiplier(u, a, b, lo, hi, s2v, tmp, times, slopes, after, vals):
    """One block's :func:`row_multipliers` (``tmp`` etc. scratch rows)."""
    m = u.size
    inf = np.inf
    for j in range(m):  # base: minus the sum of S2 where nz and not f1
        s2v[j] = a[j] * a[j]
    count = 0
    for j in range(m):
        nz = a[j] != 0
        t_lo, t_hi = (u[j] - lo[j]) / a[j], (u[j] - hi[j]) / a[j]
        if np.isnan(t_lo) or np.isnan(t_hi):
            t1 = t2 = np.nan
        else:
            t1 = t_lo if t_lo < t_hi else t_hi
            t2 = t_lo if t_lo > t_hi else t_hi
        f1, f2 = nz and np.isfinite(t1), nz and np.isfinite(t2)
        count += (1 if f1 else 0) + (1 if f2 else 0)
        times[j], times[m + j] = (t1 if f1 else inf), (t2 if f2 else inf)
        slopes[j], slopes[m + j] = (-s2v[j] if f1 else 0.0), (s2v[j] if f2 else 0.0)
        tmp[j] = s2v[j] if nz and not f1 else 0.0
    base = -_row_sum(tmp[:m])
    order = np.argsort(times, kind="mergesort")
    st = times[order]
    c = 0.0
    for k in range(2 * m):
        c = slopes[order[k]] if k == 0 else c + slopes[order[k]]
        after[k] = base + c
    for j in range(m):
        tmp[j] = s2v[j] if a[j] != 0 else 0.0
    s2 = _row_sum(tmp[:m])
    if count == 0:  # every coordinate free for all tau: the row is linear in tau
        for j in range(m):
            tmp[j] = a[j] * u[j] if a[j] != 0 else 0.0
        if s2 > 0:
            return (_row_sum(tmp[:m]) - b) / s2
        return 0.0 if b == 0 else np.nan
    t0 = st[0]
    for j in range(m):
        tmp[j] = a[j] * _clip(u[j] - t0 * a[j], lo[j], hi[j]) if a[j] != 0 else 0.0
    f0 = _row_sum(tmp[:m])
    for j in range(m):
        tmp[j] = np.abs(a[j]) * np.abs(_clip(u[j] - t0 * a[j], lo[j], hi[j])) if a[j] != 0 else 0.0
    tol = 1e-12 * (1.0 + np.abs(b) + _row_sum(tmp[:m]))
    vals[0] = f0 + 0.0
    c = 0.0
    for k in range(2 * m - 1):
        step = st[k + 1] - st[k]
        term = after[k] * step if np.isfinite(step) else 0.0
        c = term if k == 0 else c + term
        vals[k + 1] = f0 + c
    if f0 < b - tol:  # b below the row's range at the first breakpoint
        return t0 + (b - f0) / base if base < 0 else np.nan
    j = -1
    for k in range(count):
        if vals[k] <= b + tol:
            j = k
            break
    if j < 0:  # b beyond the last breakpoint
        for q in range(m):
            nz = a[q] != 0
            t_lo, t_hi = (u[q] - lo[q]) / a[q], (u[q] - hi[q]) / a[q]
            t2 = np.nan if np.isnan(t_lo) or np.isnan(t_hi) else (t_lo if t_lo > t_hi else t_hi)
            tmp[q] = s2v[q] if nz and not np.isfinite(t2) else 0.0
        s = -_row_sum(tmp[:m])
        last = max(count - 1, 0)
        return st[last] + (b - vals[last]) / s if s < 0 else np.nan
    if j == 0:
        return st[0]
    s = after[j - 1]
    return st[j - 1] + (b - vals[j - 1]) / s if s < 0 else st[j - 1]


@_jit
def project_rows(U, eq, A, b, LO, HI):
    """:func:`stackopt.oracle.boxrow.project_rows`, compiled: ``(X, tau, W)``, the same values."""
    R, m = U.shape
    X, W, tau = np.empty((R, m)), np.empty((R, m)), np.zeros(R)
    tmp, s2v = np.empty(m), np.empty(m)
    times, slopes, after, vals = np.empty(2 * m), np.empty(2 * m), np.empty(2 * m), np.empty(2 * m)
    for r in range(R):
        for j in range(m):
            tmp[j] = A[r, j] * _clip(U[r, j], LO[r, j], HI[r, j])
        if eq[r] or _row_sum(tmp) > b[r]:
            tau[r] = _multiplier(U[r], A[r], b[r], LO[r], HI[r], s2v, tmp, times, slopes, after, vals)
        t = tau[r] if np.isfinite(tau[r]) else 0.0
        for j in range(m):
            v = U[r, j] - t * A[r, j]
            X[r, j] = _clip(v, LO[r, j], HI[r, j])
            W[r, j] = v - X[r, j]
    return X, tau, W
