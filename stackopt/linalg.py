"""The KKT matrix shared by the oracle's Newton step and the implicit gradient, and its LU.

Both assemble ``[[J_FF, A_F^T, G_AF^T], [A_F, 0, 0], [G_AF, 0, 0]]`` for the
free variables ``F`` and active inequality rows; LAPACK's ``getrf``/``getrs``
are called directly (small dense systems: call overhead matters), and a
singular matrix falls back to least squares.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack


def kkt_matrix(J: np.ndarray, A: np.ndarray, G: np.ndarray, free: np.ndarray | None,
               act: np.ndarray) -> np.ndarray:
    """KKT matrix over free variables (``free=None``: all), equalities and active rows ``act``."""
    if free is None:
        Jf, Af, Gf = J, A, G[act]
    else:
        Jf = J[free][:, free]
        Af, Gf = A[:, free], G[act][:, free]
    nf, me, ma = Jf.shape[0], Af.shape[0], Gf.shape[0]
    K = np.zeros((nf + me + ma, nf + me + ma))
    K[:nf, :nf] = Jf
    if me:
        K[:nf, nf:nf + me] = Af.T
        K[nf:nf + me, :nf] = Af
    if ma:
        K[:nf, nf + me:] = Gf.T
        K[nf + me:, :nf] = Gf
    return K


@dataclass
class Factor:
    K: np.ndarray
    lu: np.ndarray | None
    piv: np.ndarray | None

    @property
    def singular(self) -> bool:
        return self.lu is None


def factor(K: np.ndarray, rtol: float = 1e-12) -> Factor:
    """LU factors of ``K``; ``lu`` is None when a pivot is below ``rtol`` times the largest."""
    if K.size == 0:
        return Factor(K, K.copy(), np.zeros(0, dtype=np.int32))
    lu, piv, info = lapack.dgetrf(K)
    if info < 0 or not np.all(np.isfinite(lu)):
        return Factor(K, None, None)
    d = np.abs(np.diag(lu))
    if info > 0 or d.min() <= rtol * max(d.max(), 1.0):
        return Factor(K, None, None)
    return Factor(K, lu, piv)


def solve(f: Factor, rhs: np.ndarray, trans: bool = False) -> np.ndarray:
    """Solve ``K z = rhs`` (``K^T z = rhs`` with ``trans``); least squares when singular."""
    if f.K.size == 0:
        return np.zeros_like(rhs)
    if f.lu is not None:
        z, info = lapack.dgetrs(f.lu, f.piv, rhs, trans=1 if trans else 0)
        if info == 0:
            return z
    M = f.K.T if trans else f.K
    return np.linalg.lstsq(M, rhs, rcond=None)[0]
