"""A compiled loop (Numba) for polynomial batches at one point (or a few), for the large programs.

:class:`~stackopt.expr.program.PolyBatch` evaluates its terms with NumPy: a
gather and a product per factor and degree over the whole batch, then
``np.bincount``. For a batch of tens of thousands of terms (a security game's
compiled Jacobian: 140 000 terms of degree up to 6) those passes over memory
are most of the cost, and for a program of many small levels the NumPy calls
are; one loop over the terms does the same work in one pass and one call. A
program's levels run as one such loop per run of levels without functions,
writing into the atom vector in place (:func:`levels_loop`). A
program uses them once its owner asks (:meth:`Program.use_loops`: the game kernel
does for games whose compiled programs hold :data:`LOOP_MIN_TERMS` terms or
more, where importing Numba and loading the compiled loop pay off). The loop
performs the same floating-point operations in the same order as the NumPy
path: each term ``coef * v[a0] * v[a1] * ...`` left to right, then added to its
output in term order starting from zero (what ``np.bincount`` does), without
fused multiply-adds (no ``fastmath``), so both give the same values to the
last bit. The levels' loop at four points at once (:func:`points_loop`: a step's
several equilibria) reads each term once for the four. Where Numba is not
installed, :func:`polynomial_loop` is ``None`` and the NumPy path serves. The
loops are compiled on first use and kept in Numba's on-disk cache where the
package's folder (or the user's cache folder) is writable.
"""
from __future__ import annotations

import functools

import numpy as np

LOOP_MIN_TERMS = 50_000  # terms of a game's compiled programs from which the kernel uses the loop


def _evaluate(v, coef, atoms, degree, rows, n_out):  # pragma: no cover - run compiled
    out = np.zeros(n_out)
    at = 0
    for i in range(coef.size):
        t = coef[i] * v[atoms[at]]
        for k in range(1, degree[i]):
            t *= v[atoms[at + k]]
        at += degree[i]
        out[rows[i]] += t
    return out


def _evaluate_levels(v, coef, atoms, degree, slot, level_terms, slots, level_slots, const,
                     level_const):  # pragma: no cover - run compiled
    at = 0
    for lv in range(level_terms.size - 1):
        for s in range(level_slots[lv], level_slots[lv + 1]):
            v[slots[s]] = 0.0
        for i in range(level_terms[lv], level_terms[lv + 1]):
            t = coef[i] * v[atoms[at]]
            for k in range(1, degree[i]):
                t *= v[atoms[at + k]]
            at += degree[i]
            v[slot[i]] += t
        if level_const[lv]:
            for s in range(level_slots[lv], level_slots[lv + 1]):
                v[slots[s]] += const[s]


def _evaluate_levels_4(V, coef, atoms, degree, slot, level_terms, slots, level_slots, const,
                       level_const):  # pragma: no cover - run compiled
    at = 0
    for lv in range(level_terms.size - 1):
        for s in range(level_slots[lv], level_slots[lv + 1]):
            for j in range(4):
                V[slots[s], j] = 0.0
        for i in range(level_terms[lv], level_terms[lv + 1]):
            d, c, r = degree[i], coef[i], slot[i]
            a = atoms[at]
            t0, t1, t2, t3 = c * V[a, 0], c * V[a, 1], c * V[a, 2], c * V[a, 3]
            for k in range(1, d):
                a = atoms[at + k]
                t0 *= V[a, 0]
                t1 *= V[a, 1]
                t2 *= V[a, 2]
                t3 *= V[a, 3]
            V[r, 0] += t0
            V[r, 1] += t1
            V[r, 2] += t2
            V[r, 3] += t3
            at += d
        if level_const[lv]:
            for s in range(level_slots[lv], level_slots[lv + 1]):
                for j in range(4):
                    V[slots[s], j] += const[s]


def _evaluate_grouped(v, coef, atoms, terms, cols, flat, n):  # pragma: no cover - run compiled
    out = np.zeros(n)
    for j in range(terms.size):
        i, c = terms[j], cols[j]
        t = coef[i] * v[atoms[i, 0], c]
        for k in range(1, atoms.shape[1]):
            t *= v[atoms[i, k], c]
        out[flat[j]] += t
    return out


def _evaluate_grouped_levels(v, coef, atoms, terms, cols, slot, level_terms, zero, level_zero,
                             const_at, const, level_const):  # pragma: no cover - run compiled
    for lv in range(level_terms.size - 1):
        for s in range(level_zero[lv], level_zero[lv + 1]):
            for c in range(v.shape[1]):
                v[zero[s], c] = 0.0
        for j in range(level_terms[lv], level_terms[lv + 1]):
            i, c = terms[j], cols[j]
            t = coef[i] * v[atoms[i, 0], c]
            for k in range(1, atoms.shape[1]):
                t *= v[atoms[i, k], c]
            v[slot[j], c] += t
        for s in range(level_const[lv], level_const[lv + 1]):
            for c in range(v.shape[1]):
                v[const_at[s], c] += const[s]


@functools.cache
def _compiled(name: str):
    try:
        import numba
    except ImportError:
        return None
    fn = {"polynomial": _evaluate, "levels": _evaluate_levels, "grouped": _evaluate_grouped,
          "levels-4": _evaluate_levels_4, "grouped-levels": _evaluate_grouped_levels}[name]
    try:
        return interruptible(numba.njit(cache=True)(fn))
    except RuntimeError:  # no writable cache location: compile in each process
        return interruptible(numba.njit(fn))


def interruptible(loop):
    """``loop`` (a Numba-compiled function) whose Ctrl-C raises ``KeyboardInterrupt``.

    Compiled code does not run Python's signal handler; where the interrupt is taken as it
    returns an array, Numba's dispatcher raises ``SystemError: ... returned a result with an
    exception set`` from it instead (from another such error, where the interrupt came inside
    a call Numba makes back into Python). Caught as a failure (a solver's error, a failed
    draw) that let a Ctrl-C pass unseen and the command run to its end, or ended it with a
    traceback; the interrupt itself is raised again here."""
    @functools.wraps(loop)
    def call(*args):
        try:
            return loop(*args)
        except SystemError as exc:
            cause = exc.__cause__
            while isinstance(cause, SystemError):  # one per compiled call it passed through
                cause = cause.__cause__
            if isinstance(cause, KeyboardInterrupt):
                raise cause from None
            raise

    return call


def polynomial_loop():
    """``loop(v, coef, atoms, degree, rows, n_out) -> out`` compiled by Numba (the terms as
    :func:`flat_terms` gives them), or ``None`` where Numba is not installed."""
    return _compiled("polynomial")


def levels_loop():
    """The loop of consecutive levels of a :class:`~stackopt.expr.program.Program` at one
    point, written into the atom vector in place: ``loop(v, coef, atoms, degree, slot,
    level_terms, slots, level_slots, const, level_const)``. Level ``l`` zeroes its atoms
    ``slots[level_slots[l]:level_slots[l + 1]]``, adds its terms
    ``level_terms[l]:level_terms[l + 1]`` (term ``i`` into atom ``slot[i]``) in order, then
    its constants where ``level_const[l]``: what :class:`~stackopt.expr.program.PolyBatch`'s
    loop does into a new array, which the program then copies into the atoms. ``None``
    where Numba is not installed."""
    return _compiled("levels")


POINTS = 4  # the points the loop of points_loop() evaluates at once


def points_loop():
    """:func:`levels_loop` at ``POINTS`` points at once, or ``None`` where Numba is not
    installed: the atoms ``V`` hold a column per point (``(atoms, POINTS)``, C order). Each
    term is read once for the four points and their four products run side by side (in the
    lanes of one vector register where the compiler packs them), each lane the one-point
    loop's operations in the same order: every column holds the one-point values to the
    last bit. A program's outputs are one more level of it there
    (:meth:`~stackopt.expr.program.Program.at_points`)."""
    return _compiled("levels-4")


def warm() -> None:
    """Compile every loop of this module now, or load it from Numba's cache: a fresh install
    compiles each on its first call (about a second each on a shared core), and a call
    inside a solve cannot be cut by the solve's time limit. The game kernel calls this where
    it turns its programs into loops, when the game is prepared; the call costs a few
    milliseconds where the loops are compiled or cached already."""
    poly, levels, points, grouped = polynomial_loop(), levels_loop(), points_loop(), grouped_loop()
    grouped_levels = grouped_levels_loop()
    if poly is None or levels is None or points is None or grouped is None or grouped_levels is None:
        return
    f, i32, u8, b = np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.uint8), np.zeros(0, np.bool_)
    ip, none = np.zeros(1, np.intp), np.zeros(0, np.intp)
    poly(np.zeros(1), f, i32, u8, i32, 0)  # the argument types of the programs' own calls
    levels(np.zeros(1), f, i32, u8, i32, ip, i32, ip, f, b)
    points(np.zeros((1, POINTS)), f, i32, u8, i32, ip, i32, ip, f, b)
    grouped(np.zeros((1, 1)), f, np.zeros((0, 1), np.intp), none, none, none, 0)
    grouped_levels(np.zeros((1, 1)), f, np.zeros((0, 1), np.intp), none, none, none, ip, none, ip,
                   none, f, ip)


def grouped_levels_loop():
    """Consecutive layers of a :class:`~stackopt.expr.grouped.GroupedProgram` in place in its
    atoms ``v`` (``(atoms, points)``): ``loop(v, coef, atoms, terms, cols, slot,
    level_terms, zero, level_zero, const_at, const, level_const)``. Layer ``l`` zeroes
    the atoms ``zero[level_zero[l]:level_zero[l + 1]]`` at every point, adds its terms
    ``level_terms[l]:level_terms[l + 1]`` (term ``j``: ``coef[terms[j]]`` times its atoms at
    point ``cols[j]``, added to atom ``slot[j]`` there) in order, then its constants to
    the atoms ``const_at``: what :func:`grouped_loop` computes into a new array, which the
    program then copies into the atoms, in the same order. ``None`` where Numba is not
    installed."""
    return _compiled("grouped-levels")


def grouped_loop():
    """The loop of one layer of :class:`~stackopt.expr.grouped.GroupedProgram`:
    ``loop(v, coef, atoms, terms, cols, flat, n) -> out``, term ``j`` being
    ``coef[terms[j]] * prod_k v[atoms[terms[j], k], cols[j]]`` (``atoms`` padded with an atom
    holding 1, multiplied like the NumPy path does) added to ``out[flat[j]]`` in order;
    ``None`` where Numba is not installed."""
    return _compiled("grouped")


def flat_terms(groups, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(coef, atoms, degree, rows)`` of the terms of a batch's degree groups (``rows``
    each term's output), in the batch's term order: ``atoms`` holds each term's atoms one
    after the other (``degree[i]`` of them) as 32-bit indices (a loop over 140 000 terms
    reads its index arrays from memory at every call: compact ones are most of its speed).
    The terms stay in the batch's order, by degree: sorted by output, consecutive terms
    would add into the same output one after the other and wait for each other."""
    coef = np.concatenate([c for c, _ in groups])
    degree = np.concatenate([np.full(c.size, len(cols), dtype=np.uint8) for c, cols in groups])
    atoms = np.concatenate([np.column_stack(cols).ravel() for _, cols in groups])
    if atoms.size and atoms.max() >= 2**31:  # pragma: no cover - two billion atoms
        raise ValueError("a compiled loop indexes at most 2**31 atoms")
    return coef, atoms.astype(np.int32), degree, np.asarray(rows).astype(np.int32)
