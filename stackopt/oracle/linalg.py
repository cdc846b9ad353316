"""Linear solves for the followers' KKT matrix, as one argument of Newton, tangent and adjoint.

A :class:`LinearSolver` turns a square matrix into a :class:`Factorization`
whose ``solve(rhs, trans=False)`` solves ``K z = rhs`` (``K^T z = rhs`` with
``trans``; the adjoint needs the transpose, the game Jacobian of several
followers is not symmetric). Three solvers share the interface:

* :class:`DenseLU` -- LAPACK ``getrf``/``getrs`` called directly (small
  systems: call overhead matters);
* :class:`SparseLU` -- SuperLU through ``scipy.sparse.linalg.splu``;
* :class:`IterativeSolver` -- restarted GMRES preconditioned by an incomplete
  LU (``spilu``), for systems too large to factor.

Every factorization flags a singular (or numerically singular: a pivot below
``rtol`` times the largest) matrix and then answers by least squares, so a
degenerate equilibrium gives a finite gradient and a flag, never a crash.
:func:`make_solver` picks one by name; ``"auto"`` chooses dense LU for small or
dense matrices and sparse LU otherwise.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import lapack

SOLVERS = ("auto", "dense", "sparse", "iterative")


class Factorization:
    """A factorised square matrix ``K`` (dense ndarray or scipy sparse)."""

    def __init__(self, K, singular: bool):
        self.K = K
        self.n = K.shape[0]  # the order of K
        self.singular = bool(singular)

    def solve(self, rhs: np.ndarray, trans: bool = False) -> np.ndarray:
        """``K z = rhs`` (``K^T z = rhs`` with ``trans``); least squares when singular."""
        rhs = np.asarray(rhs, dtype=float)
        if self.n == 0:
            return np.zeros_like(rhs)
        if not self.singular:
            z = self._solve(rhs, trans)
            if z is not None and np.isfinite(z).all():
                return z
        return self._lstsq(rhs, trans)

    def _solve(self, rhs, trans):  # pragma: no cover - every solver defines it
        raise NotImplementedError

    def _lstsq(self, rhs, trans):
        K = self.K.toarray() if sp.issparse(self.K) else self.K
        if not (np.all(np.isfinite(K)) and np.all(np.isfinite(rhs))):
            return np.full(rhs.shape, np.nan)  # non-finite data (a point outside the model's domain)
        try:
            return np.linalg.lstsq(K.T if trans else K, rhs, rcond=None)[0]
        except np.linalg.LinAlgError:  # LAPACK's SVD did not converge
            return np.full(rhs.shape, np.nan)


class _DenseFactorization(Factorization):
    def __init__(self, K, rtol):
        lu = piv = None
        singular = True
        if K.shape[0] == 0:
            singular = False
        else:
            lu, piv, info = lapack.dgetrf(K)
            if info >= 0 and np.isfinite(lu).all():
                d = np.abs(lu.diagonal())
                singular = info > 0 or d.min() <= rtol * max(d.max(), 1.0)
        super().__init__(K, singular)
        self.lu, self.piv = (None, None) if singular else (lu, piv)

    def _solve(self, rhs, trans):
        z, info = lapack.dgetrs(self.lu, self.piv, rhs, trans=1 if trans else 0)
        return z if info == 0 else None


class _SparseFactorization(Factorization):
    def __init__(self, K, rtol):
        K = sp.csc_matrix(K)
        self.lu = None
        singular = True
        if K.shape[0] == 0:
            singular = False
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", spla.MatrixRankWarning)
                    lu = spla.splu(K)
                d = np.abs(lu.U.diagonal())
                singular = not np.all(np.isfinite(d)) or d.min() <= rtol * max(d.max(), 1.0)
                self.lu = None if singular else lu
            except RuntimeError:  # SuperLU: "Factor is exactly singular"
                pass
        super().__init__(K, singular)

    def _solve(self, rhs, trans):
        return self.lu.solve(rhs, trans="T" if trans else "N")


class _IterativeFactorization(Factorization):
    def __init__(self, K, rtol, tol, restart, maxiter, fill_factor):
        K = sp.csc_matrix(K)
        self.tol, self.restart, self.maxiter = tol, restart, maxiter
        self.ilu = None
        if K.shape[0]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.ilu = spla.spilu(K, fill_factor=fill_factor, drop_tol=1e-6)
            except RuntimeError:  # singular pivot in the incomplete factors: GMRES unpreconditioned
                self.ilu = None
        super().__init__(K, singular=False)

    def _solve(self, rhs, trans):
        A = self.K.T if trans else self.K
        M = None
        if self.ilu is not None:
            mode = "T" if trans else "N"
            M = spla.LinearOperator(A.shape, matvec=lambda v: self.ilu.solve(v, trans=mode))
        cols = rhs.reshape(rhs.shape[0], -1)
        out = np.empty_like(cols)
        for j in range(cols.shape[1]):
            z, info = spla.gmres(A, cols[:, j], M=M, rtol=self.tol, atol=0.0,
                                 restart=self.restart, maxiter=self.maxiter)
            if info != 0:
                self.singular = True  # not solved to the tolerance: flagged, answered by least squares
                return None
            out[:, j] = z
        return out.reshape(rhs.shape)


class LinearSolver:
    """Makes factorizations of one kind; ``dense`` says which matrix format it wants."""

    dense = True
    name = "abstract"

    def __init__(self, rtol: float = 1e-12):
        if not rtol > 0:
            raise ValueError(f"rtol must be > 0, got {rtol!r}")
        self.rtol = rtol

    def factor(self, K) -> Factorization:  # pragma: no cover - every solver defines it
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rtol={self.rtol:g})"


class DenseLU(LinearSolver):
    """LAPACK LU with partial pivoting of a dense matrix."""

    name = "dense"

    def factor(self, K) -> Factorization:
        K = K.toarray() if sp.issparse(K) else np.asarray(K, dtype=float)
        return _DenseFactorization(K, self.rtol)


class SparseLU(LinearSolver):
    """SuperLU of a scipy sparse matrix."""

    name = "sparse"
    dense = False

    def factor(self, K) -> Factorization:
        return _SparseFactorization(K, self.rtol)


class IterativeSolver(LinearSolver):
    """Restarted GMRES to relative residual ``tol``, preconditioned by an incomplete LU."""

    name = "iterative"
    dense = False

    def __init__(self, rtol: float = 1e-12, tol: float = 1e-12, restart: int = 50,
                 maxiter: int = 50, fill_factor: float = 10.0):
        super().__init__(rtol)
        if not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol!r}")
        self.tol, self.restart, self.maxiter, self.fill_factor = tol, restart, maxiter, fill_factor

    def factor(self, K) -> Factorization:
        return _IterativeFactorization(K, self.rtol, self.tol, self.restart, self.maxiter,
                                       self.fill_factor)


def make_solver(kind: str, n: int = 0, nnz: int = 0, dense_max: int = 400,
                dense_density: float = 0.05, rtol: float = 1e-12) -> LinearSolver:
    """A solver by name; ``"auto"``: dense LU when ``n <= dense_max`` or the density
    ``nnz / n**2`` is at least ``dense_density``, else sparse LU."""
    if kind not in SOLVERS:
        raise ValueError(f"linear solver must be one of {SOLVERS}, got {kind!r}")
    if kind == "auto":
        kind = "dense" if n <= dense_max or nnz >= dense_density * n * n else "sparse"
    return {"dense": DenseLU, "sparse": SparseLU, "iterative": IterativeSolver}[kind](rtol=rtol)
