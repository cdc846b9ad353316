"""The part of the leader's feasible set that needs no equilibrium: bounds and linear constraints.

A leader constraint whose body uses only the leader's variables and is linear
in them (``x1 + x2 <= 1.5``) is often the region where the followers'
problems are feasible at all. Methods keep such constraints exactly: the
gradient method projects onto ``{lb <= p <= ub, A p <= b}``, the Ipopt method
gives them to Ipopt as linear constraints. Only the other leader constraints
(those that depend on the equilibrium, or are nonlinear) are penalised.

The projection is a convex QP solved by HiGHS (``highspy``); with no linear
rows it is a clip onto the bounds.
"""
from __future__ import annotations

import functools
import os

import numpy as np


class LeaderSet:
    """Bounds and linear leader-only constraints ``A p <= b`` of a kernel's leader.

    ``rows`` are the indices (into the kernel's leader constraints) of the rows
    kept here; ``coupled`` those that remain for the method to handle.
    """

    def __init__(self, kernel):
        self.lb, self.ub = kernel.p_lb, kernel.p_ub
        # which rows are linear in the leader alone is found once, when the game is prepared
        self.rows, self.A, self.b = kernel.leader_linear_rows()
        self.coupled = np.setdiff1d(np.arange(kernel.n_c), self.rows)
        self.names = [kernel.constraint_names[i] for i in self.rows]

    @property
    def linear(self) -> bool:
        """Whether there are linear rows beyond the bounds."""
        return self.A.shape[0] > 0

    def violation(self, p: np.ndarray) -> float:
        box = max(float(np.max(self.lb - p, initial=0.0)), float(np.max(p - self.ub, initial=0.0)))
        rows = float(np.max(self.A @ p - self.b, initial=0.0)) if self.linear else 0.0
        return max(box, rows, 0.0)

    def project(self, y: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        """The point of the set nearest ``y`` in the norm ``||(p - y) / scale||``.

        Raises ``ValueError`` when the set is empty (the linear rows contradict
        the bounds), naming the rows.
        """
        y = np.asarray(y, dtype=float)
        x = y.clip(self.lb, self.ub)
        if not self.linear or np.all(self.A @ x <= self.b + 1e-12 * (1 + np.abs(self.b))):
            return x
        s = np.ones_like(y) if scale is None else np.asarray(scale, dtype=float)
        return _qp_projection(y, s, self.lb, self.ub, self.A, self.b, self.names)


def _qp_projection(y, s, lb, ub, A, b, names):
    """``min sum ((p - y)/s)^2 / 2  s.t.  lb <= p <= ub, A p <= b`` by HiGHS."""
    import highspy

    n, m = y.size, A.shape[0]
    w = 1.0 / (s * s)
    h = _highs()
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, m
    lp.col_cost_ = -w * y
    lp.col_lower_ = np.where(np.isfinite(lb), lb, -inf)
    lp.col_upper_ = np.where(np.isfinite(ub), ub, inf)
    lp.row_lower_ = np.full(m, -inf)
    lp.row_upper_ = b
    cols = A.T.copy()
    nz = cols != 0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int32)
    lp.a_matrix_.index_ = np.nonzero(nz)[1].astype(np.int32)
    lp.a_matrix_.value_ = cols[nz]
    hess = highspy.HighsHessian()
    hess.dim_ = n
    hess.format_ = highspy.HessianFormat.kTriangular
    hess.start_ = np.arange(n + 1, dtype=np.int32)
    hess.index_ = np.arange(n, dtype=np.int32)
    hess.value_ = w
    h.passModel(lp)
    h.passHessian(hess)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        if status == highspy.HighsModelStatus.kInfeasible:
            raise ValueError(f"the leader's bounds and its linear constraints {names} have no common point")
        raise RuntimeError(f"projection onto the leader's linear constraints failed: {h.modelStatusToString(status)}")
    x = np.clip(np.asarray(h.getSolution().col_value, dtype=float), lb, ub)
    return x


def _highs():
    """A HiGHS instance with its output off (:func:`_banner_shown`: the banner HiGHS prints
    on the first instance of a process cannot reach a JSON stdout)."""
    import highspy

    _banner_shown()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


@functools.cache
def _banner_shown() -> None:
    """Make the process's first HiGHS instance, which prints HiGHS's banner, with the
    process's stdout sent to /dev/null; later instances print none."""
    import highspy

    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        highspy.Highs()
        _flush_c_stdout()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _flush_c_stdout() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no C library to flush
        pass


def spread_starts(p0: np.ndarray, lb: np.ndarray, ub: np.ndarray, count: int, rng) -> list:
    """``count`` leader strategies spread over the box by a seeded Latin hypercube.

    Each coordinate takes one value in each of ``count`` equal slices of its
    range; a side without a finite bound is replaced by ``p0 -/+ max(1, |p0|)``.
    """
    p0 = np.asarray(p0, dtype=float)
    if count <= 0:
        return []
    width = np.maximum(1.0, np.abs(p0))
    lo = np.where(np.isfinite(lb), lb, p0 - width)
    hi = np.where(np.isfinite(ub), ub, p0 + width)
    slots = np.array([rng.permutation(count) for _ in range(p0.size)]).T  # (count, n)
    frac = (slots + rng.uniform(size=slots.shape)) / count
    return [lo + f * (hi - lo) for f in frac]
