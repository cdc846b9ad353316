"""Unilateral deviations: is a local Nash equilibrium a Nash equilibrium?

Newton, the dynamics and the second-order test certify a *local* Nash
equilibrium: no follower gains by a small change of its own values. Where a
follower's objective is not convex in its own variables (a breach
probability through a sigmoid, a quantal response), a far-away response may
still be better, and a leader strategy built on such a point is one the
followers would leave. :class:`Deviations` looks for a better response of
each follower in turn, the others held: its best response (the local solver
of :mod:`stackopt.oracle.responses.best`) from the lower and the upper corner of its
set and from ``deviation_starts`` seeded random points of it. A response
whose objective is lower by more than ``deviation_tol`` (relative, at least
absolute) is a profitable deviation; the oracle then lets the followers
adjust from there. The batched responses stop at ``br_tol``, as every best
response does. A looser ``sqrt(br_tol)`` made the searches about a third
cheaper, but where a response lies near ``deviation_tol`` its last digits decide
whether a deviation is found, and the run's path with it: on the paper's cyber
insurance (10 customers, risk aversion 0.5, seed 21) the answer fell from 109.2 to
17.8. Followers whose objective is provably convex in their own
variables, and whose set is (every constraint binding them, :mod:`stackopt.game.convexity`;
linear rows always are), are not searched: their KKT points are best responses.
The others are *searched*: :attr:`Deviations.searched` names them and why (a
non-convex objective, or a constraint such as a nonlinear equality that makes
the set non-convex). The proofs are made once, when the game is prepared
(:meth:`~stackopt.kernel.GameKernel.nonconvex_followers`).
"""
from __future__ import annotations

import time

import numpy as np

from .equilibrium import OracleCounters


class Deviations:
    """Search for profitable unilateral deviations (see the module docstring)."""

    def __init__(self, kernel, sets, responses, starts: int, tol: float):
        self.k, self.sets, self.responses = kernel, sets, responses
        self.starts, self.tol = int(starts), float(tol)
        self.response_tol = float(responses.config.br_tol)
        # followers whose objective and set are provably convex in their own variables need no search
        self.searched: dict[str, str] = kernel.nonconvex_followers()
        self.convex = [f.name not in self.searched for f in kernel.structure.followers]

    def _starts(self, x, p, rng) -> list[np.ndarray]:
        k = self.k
        corners = [np.where(np.isfinite(b), b, x) for b in (k.x_lb, k.x_ub)]
        points = [self.sets.feasible(c, p) for c in corners]
        return points + [self.sets.random_start(p, rng).x for _ in range(self.starts)]

    def find(self, x: np.ndarray, p: np.ndarray, rng, deadline: float = np.inf):
        """``(y, work)``: follower values ``y`` after one follower's profitable deviation
        from ``x`` (None where none was found), and the best responses the search solved
        (``deviation_responses``, ``best_response_failures``)."""
        return self.find_all([x], p, rng, deadline)[0]

    def find_all(self, xs, p: np.ndarray, rng, deadline: float = np.inf) -> list:
        """:meth:`find` from each point of ``xs`` in turn (one leader strategy ``p``), its
        starts drawn as :meth:`find` draws them, and the best responses of all the searches
        solved in one batch: each response is the one a search alone would get, whatever
        else the batch holds. Returns a ``(y, work)`` per point."""
        none = (None, OracleCounters())
        if all(self.convex):
            return [none] * len(xs)
        searches = [self._rows(x, p, rng) for x in xs]
        owners = [i for _, o, _ in searches for i in o]
        if not owners or time.perf_counter() > deadline:
            return [none] * len(xs)
        # every response at once; in each search the first profitable one in follower
        # order, then start order
        rows = np.array([y for _, _, r in searches for y in r])
        brs = self.responses.batch(np.array(owners), rows, p, deadline=deadline, tol=self.response_tol)
        out, at = [], 0
        for f, own, found in searches:
            mine, at = brs[at:at + len(own)], at + len(own)
            if not own:
                out.append(none)
                continue
            work = OracleCounters(deviation_responses=len(mine),
                                  best_response_failures=sum(not br.ok for br in mine))
            out.append((self._profitable(f, own, found, mine, p), work))
        return out

    def _rows(self, x, p, rng):
        """``(f, owners, rows)`` of a search from ``x``: the followers' objectives there, and
        each searched follower's distinct starts (its values replaced in a copy of ``x``)."""
        k = self.k
        f = k.follower_objectives(x, p)
        starts = self._starts(x, p, rng)
        owners, rows = [], []
        for i, sl in enumerate(k.slices):
            if self.convex[i]:
                continue
            tried: list[np.ndarray] = []
            for s in starts:
                if _close(s[sl], x[sl]) or any(_close(s[sl], t) for t in tried):
                    continue
                tried.append(s[sl])
                y = x.copy()
                y[sl] = s[sl]
                owners.append(i)
                rows.append(y)
        return f, owners, rows

    def _profitable(self, f, owners, rows, brs, p):
        """The first row whose follower's response lowers its objective by more than
        ``deviation_tol`` (its values replaced by the response), or None."""
        k = self.k
        for i, y, br in zip(owners, rows, brs):
            if not br.ok:
                continue
            y[k.slices[i]] = br.x
            if k.follower_objectives(y, p)[i] < f[i] - self.tol * max(1.0, abs(f[i])):
                return y
        return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.allclose(a, b)`` for finite values (a start that repeats a point already tried),
    without its checks for infinities."""
    return bool(np.all(np.abs(a - b) <= 1e-8 + 1e-5 * np.abs(b)))
