"""The leader's reduced problem: its objective and constraints as functions of its own variables.

``p -> x*(p)`` (the followers' equilibria) ``-> l(x*, p), g(x*, p)``, with total
derivatives by the implicit function theorem (:mod:`stackopt.oracle.implicit`: one
factorisation of the KKT matrix per equilibrium, one adjoint solve per
right-hand side). The gradient method and the Ipopt method both work on it.

Equilibria are *tracked*: a point's equilibria are warm-started from a nearby
point's (Newton along the tangent). Where the followers' equilibrium is one of
several, ``samples`` equilibria are tracked at once and the leader's
constraints aggregate over them (``"mean"``: in expectation, paper Definition
2; ``"worst"``: met at every sampled equilibrium). Fresh draws
(:meth:`ReducedProblem.draw`) start the followers' own dynamics from seeded
random points, exactly as scoring does; where they reach other equilibria
than the tracked ones, the tracked branches are not what the followers would
play, and a method re-anchors on the fresh draws.

The objective is handled in minimisation form: ``f = sense * l`` with the
leader's Pyomo sense (``minimize = 1``, ``maximize = -1``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from stackopt.oracle import leader_gradients, sensitivity

from .leaderset import LeaderSet


@dataclass
class Point:
    """The reduced problem at one leader strategy ``p``, on the equilibria ``equilibria``."""

    p: np.ndarray
    equilibria: list
    values: list  # kernel.leader_all(x, p) per equilibrium
    f: float  # objective in minimisation form, mean over the equilibria
    objective: float  # the same in the leader's own sense
    cons: np.ndarray  # coupled constraints (<= 0 feasible), aggregated over the equilibria
    share: np.ndarray  # (samples, n_coupled): each equilibrium's weight in each constraint's gradient
    fresh: bool  # the equilibria are fresh draws (what scoring would reach)
    converged: bool
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def violation(self) -> float:
        return float(np.max(self.cons, initial=0.0))


class ReducedProblem:
    """``f(p)`` and ``g(p)`` of the leader through the followers' equilibrium.

    ``oracle`` is an :class:`~stackopt.oracle.EquilibriumOracle`; ``rng`` seeds
    the fresh draws. ``deadline`` (a ``time.perf_counter()`` value) bounds every
    oracle call. Linear constraints in the leader's variables only live in
    ``leader_set`` and are not part of ``cons``.
    """

    def __init__(self, kernel, oracle, rng, *, samples: int = 1, aggregate: str = "mean",
                 deadline: float = float("inf"), oracle_time_limit: float = 60.0):
        if aggregate not in ("mean", "worst"):
            raise ValueError(f"aggregate must be 'mean' or 'worst', got {aggregate!r}")
        self.k = kernel
        self.oracle = oracle
        self.rng = rng
        self.samples = int(samples)
        self.aggregate = aggregate
        self.deadline = deadline
        self.oracle_time_limit = float(oracle_time_limit)
        self.leader_set = LeaderSet(kernel)
        self.coupled = self.leader_set.coupled
        self.n_c = int(self.coupled.size)
        self.sense = float(kernel.leader_sense)
        self.oracle_calls = 0
        self.cold_starts = 0

    # ------------------------------------------------------------ equilibria
    def _budget(self, cap: float | None = None) -> None:
        left = self.deadline - time.perf_counter()
        limit = self.oracle_time_limit if cap is None else min(cap, self.oracle_time_limit)
        self.oracle.config.time_limit = float(max(min(limit, left), 1e-3))

    def _warm(self, p, eq):
        self._budget()
        self.oracle_calls += 1
        return self.oracle.solve(p, warm=eq, fallback=False)

    def _cold(self, p, x=None, cap: float | None = None):
        self._budget(cap)
        self.oracle_calls += 1
        self.cold_starts += 1
        return self.oracle.solve(p, x0=x, rng=self.rng)

    def draw(self, p) -> Point:
        """Fresh draws at ``p``: the followers' dynamics from seeded random starts."""
        p = np.asarray(p, dtype=float)
        return self.point(p, [self._cold(p) for _ in range(self.samples)], fresh=True)

    def follow(self, base: Point, p) -> Point:
        """The equilibria of ``base`` followed to ``p`` by warm starts (not converged
        where a branch cannot be followed: a fold, or an active-set change too
        large for Newton)."""
        p = np.asarray(p, dtype=float)
        return self.point(p, [self._warm(p, e) for e in base.equilibria], fresh=False)

    def readjust(self, base: Point, p, lost: Point | None = None, time_limit: float | None = None) -> Point:
        """Equilibria at ``p`` where the branches of ``base`` end: converged branches of
        ``lost`` (an attempt to follow) stay, the others re-adjust by the followers'
        dynamics from their last position, as the followers would once theirs is gone
        (each oracle call at most ``time_limit`` seconds, if given)."""
        p = np.asarray(p, dtype=float)
        eqs = []
        for j, old in enumerate(base.equilibria):
            e = lost.equilibria[j] if lost is not None else None
            eqs.append(e if e is not None and e.converged else self._cold(p, old.x, time_limit))
        return self.point(p, eqs, fresh=False)

    def settle(self, pt: Point) -> Point:
        """``pt`` itself where no follower gains by deviating from its equilibria (see
        :mod:`stackopt.oracle.deviation`); else a point whose equilibria the followers reached by
        their dynamics from the deviation (tracked branches that stopped being Nash
        equilibria: a follower's far-away response became better)."""
        if not self.oracle.config.deviation_rounds:
            return pt
        devs = []
        for e in pt.equilibria:
            self._budget()
            devs.append(self.oracle.deviations.find(e.x, pt.p, self.rng, self.deadline))
        if all(d is None for d in devs):
            return pt
        eqs = [e if d is None else self._cold(pt.p, d) for e, d in zip(pt.equilibria, devs)]
        return self.point(pt.p, eqs, fresh=False)

    def point(self, p, equilibria, fresh: bool) -> Point:
        k = self.k
        values = [k.leader_all(e.x, p) for e in equilibria]
        objs = np.array([v[0] for v in values])
        cons = np.array([v[1][self.coupled] for v in values]).reshape(len(values), self.n_c)
        agg, share = aggregate(cons, self.aggregate)
        obj = float(np.mean(objs))
        ok = all(e.converged for e in equilibria) and np.all(np.isfinite(objs)) and np.all(np.isfinite(agg))
        return Point(p=p.copy(), equilibria=list(equilibria), values=values, f=self.sense * obj,
                     objective=obj, cons=agg, share=share, fresh=fresh, converged=bool(ok))

    def failure(self, pt: Point) -> str:
        """Why ``pt`` is not usable (``pt.converged`` is False), as a clause: what the oracle
        said where an equilibrium was not found, else which of the leader's values is not a
        finite number at the equilibria found (a ``sqrt`` or ``log`` of a negative quantity)."""
        if not all(e.converged for e in pt.equilibria):
            said = "; ".join(dict.fromkeys(e.message for e in pt.equilibria if e.message))
            return "the equilibrium oracle did not converge" + (f": {said}" if said else "")
        why = next(filter(None, (self.k.undefined(v[0], v[1]) for v in pt.values)),
                   "the leader's values cannot be evaluated there")
        return f"the followers' equilibrium was found, but {why}"

    # ----------------------------------------------------------- derivatives
    def gradient(self, pt: Point, weights: np.ndarray) -> np.ndarray:
        """Gradient in ``p`` of ``f + weights @ cons`` (one adjoint solve per equilibrium)."""
        k = self.k
        n_s = len(pt.equilibria)
        grad = np.zeros(k.n_p)
        full = np.zeros(1 + k.n_c)
        for j, (e, v) in enumerate(zip(pt.equilibria, pt.values)):
            full[:] = 0.0
            full[0] = self.sense
            full[1 + self.coupled] = weights * pt.share[j]
            grad += leader_gradients(k, e, full, v)[2]
        return grad / n_s

    def jacobian(self, pt: Point, per_sample: bool = False):
        """``(grad f, d cons / dp)``; with ``per_sample`` the constraint rows of every
        equilibrium separately (``samples * n_coupled`` rows), else aggregated."""
        n_s = len(pt.equilibria)
        gf = np.zeros(self.k.n_p)
        rows = []
        for j, (e, v) in enumerate(zip(pt.equilibria, pt.values)):
            _, _, go, gc = leader_gradients(self.k, e, None, v)
            gf += self.sense * go / n_s
            gc = gc[self.coupled]
            rows.append(gc if per_sample else gc * pt.share[j][:, None] / n_s)
        if per_sample:
            return gf, np.vstack(rows) if rows else np.zeros((0, self.k.n_p))
        return gf, np.sum(rows, axis=0) if rows else np.zeros((self.n_c, self.k.n_p))

    def singular(self, pt: Point) -> bool:
        return any(sensitivity(self.k, e).singular for e in pt.equilibria)

    def per_sample_cons(self, pt: Point) -> np.ndarray:
        return np.concatenate([v[1][self.coupled] for v in pt.values])

    def distance(self, a: Point, b: Point) -> float:
        """Largest difference between the followers' values of two points' equilibria."""
        return float(max((np.max(np.abs(x.x - y.x), initial=0.0)
                          for x, y in zip(a.equilibria, b.equilibria)), default=0.0))


def aggregate(cons: np.ndarray, how: str):
    """Constraint values over the sampled equilibria (rows) as one vector, and each
    sample's share of each constraint's gradient (gradients are divided by the count)."""
    n_s, n_c = cons.shape
    if how == "worst":
        pick = np.argmax(cons, axis=0)  # the sample where each constraint is worst
        return cons[pick, np.arange(n_c)], n_s * (np.arange(n_s)[:, None] == pick[None, :])
    return cons.mean(axis=0), np.ones((n_s, n_c))
