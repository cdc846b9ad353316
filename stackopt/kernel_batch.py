"""A game kernel's evaluators at several follower points at once (one leader strategy).

Row ``b`` of ``X`` is one full vector of the followers' values; every compiled
program runs once for all rows (:meth:`stackopt.expr_program.Program.batch`),
which is what a sweep of best responses needs: each follower's response from
its own point, the others held.
"""
from __future__ import annotations

import numpy as np


class BatchEvaluators:
    """Mixin of :class:`~stackopt.kernel.GameKernel`: batched ``F``, objectives and ``dF/dx``."""

    def _rows(self, X, p) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return np.concatenate([X, np.broadcast_to(p, (X.shape[0], p.size))], axis=1)

    def F_batch(self, X, p) -> np.ndarray:
        """:meth:`F` at every row of ``X``: shape ``(rows, n_x)``."""
        return self.x_sense * self._F.batch(self._rows(X, p))

    def follower_objectives_batch(self, X, p) -> np.ndarray:
        """:meth:`follower_objectives` at every row of ``X``: shape ``(rows, followers)``."""
        return self.sense * self._fobj.batch(self._rows(X, p))

    def Jx_batch(self, X, p) -> np.ndarray:
        """The nonzeros of :meth:`Jx` (at ``(Jx_rows, Jx_cols)``) at every row of ``X``."""
        return self._Jx_sign * self._Jxp.program.batch(self._rows(X, p))

    @property
    def Jx_rows(self) -> np.ndarray:
        return self._Jxp.rows

    @property
    def Jx_cols(self) -> np.ndarray:
        return self._Jxp.cols
