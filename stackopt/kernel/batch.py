"""A game kernel's evaluators at several follower points at once (one leader strategy).

Row ``b`` of ``X`` is one full vector of the followers' values; every compiled
program runs once for all rows (:meth:`stackopt.expr.program.Program.batch`).
A sweep of best responses (each follower's response from its own point, the
others held) needs at row ``b`` only follower ``owner[b]``'s own entries: the
``*_own`` evaluators, which the batched responses use, compute just those
(:class:`~stackopt.expr.grouped.GroupedProgram`: the work of one full evaluation
for a sweep of every follower, not one per follower), to the same bits.
"""
from __future__ import annotations

import numpy as np

from stackopt.expr import GroupedProgram


class BatchEvaluators:
    """Batched ``F``, objectives and ``dF/dx`` of a :class:`~stackopt.kernel.GameKernel`, from its
    compiled programs (``F``: the stacked gradients, ``fobj``: the objectives, ``Jxp``: the
    sparse ``dF/dx``), the signs that put them in minimisation form, and each follower's slice
    of ``x`` with the follower owning each entry."""

    def __init__(self, F, fobj, Jxp, sense, x_sense, Jx_sign, slices, x_owner):
        self._F, self._fobj, self._Jxp = F, fobj, Jxp
        self.sense, self.x_sense, self._Jx_sign = sense, x_sense, Jx_sign
        self.slices, self.x_owner = slices, x_owner
        self._grouped_programs: dict[str, GroupedProgram] = {}  # built at first use
        rows, cols = self.Jx_rows, self.Jx_cols
        own = self.x_owner[rows] == self.x_owner[cols]
        #: per follower, the positions among ``(Jx_rows, Jx_cols)`` of its own block of ``dF/dx``
        self.Jx_own_entries = [np.flatnonzero(own & (self.x_owner[rows] == i)) for i in range(len(slices))]

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

    # ------------------------------------------------ each row its owner's entries only
    def _grouped(self, name: str) -> GroupedProgram:
        """The grouped program ``name`` (built at first use)."""
        cache = self._grouped_programs
        if name not in cache:
            n = len(self.slices)
            if name == "F":
                cache[name] = GroupedProgram(self._F, [np.arange(sl.start, sl.stop) for sl in self.slices])
            elif name == "fobj":
                cache[name] = GroupedProgram(self._fobj, [np.array([i]) for i in range(n)])
            else:
                cache[name] = GroupedProgram(self._Jxp.program, self.Jx_own_entries)
        return cache[name]

    def F_own(self, X, p, owner) -> np.ndarray:
        """:meth:`F_batch` where row ``b`` needs follower ``owner[b]``'s block only (``nan`` elsewhere)."""
        return self.x_sense * self._grouped("F")(self._rows(X, p), owner)

    def follower_objective_own(self, X, p, owner) -> np.ndarray:
        """Follower ``owner[b]``'s objective at row ``b`` of ``X``: shape ``(rows,)``."""
        owner = np.asarray(owner, dtype=np.intp)
        vals = self._grouped("fobj")(self._rows(X, p), owner)[np.arange(owner.size), owner]
        return self.sense[owner] * vals

    def Jx_own(self, X, p, owner) -> np.ndarray:
        """:meth:`Jx_batch` where row ``b`` needs follower ``owner[b]``'s own block only."""
        return self._Jx_sign * self._grouped("Jx")(self._rows(X, p), owner)
