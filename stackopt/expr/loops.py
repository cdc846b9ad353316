"""A compiled loop (Numba) for polynomial batches at one point, for the large programs.

:class:`~stackopt.expr.program.PolyBatch` evaluates its terms with NumPy: a
gather and a product per factor and degree over the whole batch, then
``np.bincount``. For a batch of tens of thousands of terms (a security game's
compiled Jacobian: 140 000 terms of degree up to 6) those passes over memory
are most of the cost, and for a program of many small levels the NumPy calls
are; one loop over the terms does the same work in one pass and one call. A
program uses it once its owner asks (:meth:`Program.use_loops`: the game kernel
does for games whose compiled programs hold :data:`LOOP_MIN_TERMS` terms or
more, where importing Numba and loading the compiled loop pay off). The loop
performs the same floating-point operations in the same order as the NumPy
path: each term ``coef * v[a0] * v[a1] * ...`` left to right, then added to its
output in term order starting from zero (what ``np.bincount`` does), without
fused multiply-adds (no ``fastmath``), so both give the same values to the
last bit. Where Numba is not installed, :func:`polynomial_loop` is ``None`` and
the NumPy path serves. The loop is compiled on first use and kept in Numba's
on-disk cache where the package's folder (or the user's cache folder) is
writable.
"""
from __future__ import annotations

import functools

import numpy as np

LOOP_MIN_TERMS = 50_000  # terms of a game's compiled programs from which the kernel uses the loop


def _evaluate(v, coef, atoms, degree, rows, n_out):  # pragma: no cover - run compiled
    out = np.zeros(n_out)
    for i in range(coef.size):
        t = coef[i] * v[atoms[i, 0]]
        for k in range(1, degree[i]):
            t *= v[atoms[i, k]]
        out[rows[i]] += t
    return out


def _evaluate_grouped(v, coef, atoms, terms, cols, flat, n):  # pragma: no cover - run compiled
    out = np.zeros(n)
    for j in range(terms.size):
        i, c = terms[j], cols[j]
        t = coef[i] * v[atoms[i, 0], c]
        for k in range(1, atoms.shape[1]):
            t *= v[atoms[i, k], c]
        out[flat[j]] += t
    return out


@functools.cache
def _compiled(name: str):
    try:
        import numba
    except ImportError:
        return None
    fn = {"polynomial": _evaluate, "grouped": _evaluate_grouped}[name]
    try:
        return numba.njit(cache=True)(fn)
    except RuntimeError:  # no writable cache location: compile in each process
        return numba.njit(fn)


def polynomial_loop():
    """``loop(v, coef, atoms, degree, rows, n_out) -> out`` compiled by Numba, or ``None``
    where Numba is not installed."""
    return _compiled("polynomial")


def grouped_loop():
    """The loop of one layer of :class:`~stackopt.expr.grouped.GroupedProgram`:
    ``loop(v, coef, atoms, terms, cols, flat, n) -> out``, term ``j`` being
    ``coef[terms[j]] * prod_k v[atoms[terms[j], k], cols[j]]`` (``atoms`` padded with an atom
    holding 1, multiplied like the NumPy path does) added to ``out[flat[j]]`` in order;
    ``None`` where Numba is not installed."""
    return _compiled("grouped")


def flat_terms(groups, n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(coef, atoms, degree)`` of the terms of a batch's degree groups, in the batch's
    term order; ``atoms`` padded to the largest degree."""
    width = max(len(cols) for _, cols in groups)
    coef = np.concatenate([c for c, _ in groups])
    degree = np.concatenate([np.full(c.size, len(cols), dtype=np.intp) for c, cols in groups])
    atoms = np.zeros((n_terms, width), dtype=np.intp)
    at = 0
    for c, cols in groups:
        for k, col in enumerate(cols):
            atoms[at:at + c.size, k] = col
        at += c.size
    return coef, atoms, degree
