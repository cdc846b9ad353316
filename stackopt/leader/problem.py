"""The leader's problem through the followers' equilibria: ``p -> x*(p) -> l(x*, p), g(x*, p)``.

:class:`LeaderProblem` is the one form of it every method of the leader's variables works
on (``gradient``, ``implicit-ipopt``, ``slsqp``, ``trust-region``): the leader's objective
and constraints at the followers' equilibrium as functions of its own variables, at a
:class:`Point`; their total derivatives by the implicit function theorem
(:mod:`stackopt.oracle.implicit`: one factorisation of the KKT matrix per equilibrium, one
adjoint solve per right-hand side), or by finite differences of evaluations where a method
treats the equilibrium as a black box; and one cache of evaluated points whose nearest
converged one warm-starts the equilibrium at a new strategy (Newton along its tangent).

Equilibria are *tracked*: a point's equilibria are warm-started from a nearby
point's (Newton along the tangent). Where the followers' equilibrium is one of
several, ``samples`` equilibria are tracked at once and the leader's
objective and constraints aggregate over them (``"mean"``: in expectation, the
sample average of paper Definition 2, eq. 6; ``"worst"``: the worst sampled
equilibrium's objective, constraints met at every sampled equilibrium). Fresh
draws (:meth:`LeaderProblem.draw`) start the followers' own dynamics from seeded
random points, exactly as scoring does; where they reach other equilibria than
the tracked ones, the tracked branches are not what the followers would play,
and a method re-anchors on the fresh draws.

**Fixed draws** (``fixed_seed`` given): draw ``s`` starts from the random point
seeded by ``(fixed_seed, s)`` at every strategy, as scoring's draw ``s`` does
(:mod:`stackopt.scoring`): common random numbers across the leader's iterates, so
that the sample average the method optimises is a deterministic function of the
leader's variables (the sample-average approximation of the expectation) rather
than a new noisy estimate at every checkpoint, and strategies evaluated on fresh
draws are compared on common draws. Without ``fixed_seed`` every draw comes from
``rng`` (a new sample each time).

The objective is handled in minimisation form: ``f = sense * l`` with the
leader's Pyomo sense (``minimize = 1``, ``maximize = -1``). Deadlines are
values given to the problem; the oracle's work is summed in :attr:`LeaderProblem.work`.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from stackopt.oracle import OracleCounters, game_jacobians, leader_gradients, sensitivity

from .leaderset import LeaderSet


@dataclass
class Point:
    """The leader's problem at one leader strategy ``p``, on the equilibria ``equilibria``."""

    p: np.ndarray
    equilibria: list
    values: list  # kernel.leader_all(x, p) per equilibrium
    f: float  # objective in minimisation form, aggregated over the equilibria (mean or worst)
    objective: float  # the same in the leader's own sense
    cons: np.ndarray  # coupled constraints (<= 0 feasible), aggregated over the equilibria
    bodies: np.ndarray  # every leader constraint's body (<= 0 feasible), mean over the equilibria
    share: np.ndarray  # (samples, n_coupled): each equilibrium's weight in each constraint's gradient
    fresh: bool  # the equilibria are fresh draws (what scoring would reach)
    converged: bool
    cache: dict = field(default_factory=dict, repr=False)
    # (samples,): each equilibrium's weight in the objective's gradient (None: all 1, the mean)
    objective_share: np.ndarray | None = field(default=None, repr=False)
    # the factorised KKT systems of the equilibria, once LeaderProblem.linearize made them
    linearizations: list | None = field(default=None, repr=False)

    @property
    def violation(self) -> float:
        """The largest violation of the coupled constraints."""
        return float(self.cons.max(initial=0.0))

    @property
    def x(self) -> np.ndarray:
        """The followers' values at the first equilibrium."""
        return self.equilibria[0].x

    @property
    def found(self) -> bool:
        """Whether the oracle converged at every equilibrium (the values may still be NaN)."""
        return all(e.converged for e in self.equilibria)


class TimeUp(Exception):
    """Raised by :meth:`LeaderProblem.evaluate` called past the problem's deadline."""


class LeaderProblem:
    """``f(p)`` and ``g(p)`` of the leader through the followers' equilibrium.

    ``oracle`` is an :class:`~stackopt.oracle.EquilibriumOracle`; ``rng`` seeds
    the fresh draws, or ``fixed_seed`` (see the module docstring) the same draws at every
    strategy. ``objective`` and ``aggregate`` (the constraints) are ``"mean"`` or
    ``"worst"`` over the sampled equilibria. ``deadline`` (a ``time.perf_counter()`` value) bounds every
    oracle call. Linear constraints in the leader's variables only live in
    ``leader_set`` and are not part of ``cons`` (they are in ``bodies``). :attr:`work`
    sums the counters of the oracle's solves (:class:`~stackopt.oracle.OracleCounters`).

    Points are kept, by strategy, in one cache of at most ``cache`` points
    (:meth:`cached`, :meth:`remember`, :meth:`forget`); :meth:`nearest` is the cached
    point, of the last ``NEAREST`` whose equilibria were found, whose strategy is nearest
    a new one: :meth:`track` follows its equilibria (a method that stays on the branches
    it tracks), :meth:`evaluate` takes any equilibrium the oracle finds from it (a
    black-box method); :meth:`fd_derivatives` differentiates :meth:`evaluate`.
    """

    NEAREST = 8  # of the cached points, the most recent this many are searched for the nearest

    def __init__(self, kernel, oracle, rng, *, samples: int = 1, aggregate: str = "mean",
                 objective: str = "mean", fixed_seed: int | None = None,
                 deadline: float = float("inf"), cache: int = 32):
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate (the constraints over the sampled equilibria) must be "
                             f"'mean' or 'worst', got {aggregate!r}")
        if objective not in AGGREGATES:
            raise ValueError(f"objective (over the sampled equilibria) must be 'mean' or 'worst', "
                             f"got {objective!r}")
        self.k = kernel
        self.oracle = oracle
        self.rng = rng
        self.samples = int(samples)
        self.aggregate = aggregate
        self.objective = objective
        self.fixed_seed = None if fixed_seed is None else int(fixed_seed)
        self.deadline = deadline
        self.leader_set = LeaderSet(kernel)
        self.coupled = self.leader_set.coupled
        self.n_c = int(self.coupled.size)
        self.sense = float(kernel.leader_sense)
        self.work = OracleCounters()
        self.cache_size = int(cache)
        self._cache: OrderedDict[bytes, Point] = OrderedDict()
        self.calls = 0  # oracle calls made by evaluate
        self.failed = 0  # of which the oracle did not converge
        self._fd: tuple | None = None  # (strategy's bytes, derivatives) of the last fd_derivatives

    @property
    def cold_starts(self) -> int:
        return self.work.cold_starts

    # ------------------------------------------------------------ equilibria
    def _call_deadline(self, cap: float | None = None) -> float:
        """The deadline of one oracle call: the run's, or ``cap`` seconds from now if
        sooner; at least a millisecond from now."""
        now = time.perf_counter()
        end = self.deadline if cap is None else min(self.deadline, now + cap)
        return max(end, now + 1e-3)

    def _counted(self, eq):
        self.work = self.work + eq.counters
        return eq

    def _warm(self, p, eq, lin=None):
        return self._counted(self.oracle.solve(p, warm=eq, fallback=False, linearization=lin,
                                               deadline=self._call_deadline()))

    def _cold(self, p, x=None, cap: float | None = None, rng=None):
        return self._counted(self.oracle.solve(p, x0=x, rng=self.rng if rng is None else rng,
                                               deadline=self._call_deadline(cap)))

    def draw(self, p) -> Point:
        """Fresh draws at ``p``: the followers' dynamics from seeded random starts (with
        ``fixed_seed``, draw ``s`` from the start seeded by ``(fixed_seed, s)``: the same
        starts at every strategy, a deterministic function of ``p``)."""
        p = np.asarray(p, dtype=float)
        if self.fixed_seed is None:
            return self.point(p, [self._cold(p) for _ in range(self.samples)], fresh=True)
        return self.point(p, [self._cold(p, rng=np.random.default_rng([self.fixed_seed, s]))
                              for s in range(self.samples)], fresh=True)

    def follow(self, base: Point, p) -> Point:
        """The equilibria of ``base`` followed to ``p`` by warm starts (not converged
        where a branch cannot be followed: a fold, or an active-set change too
        large for Newton)."""
        p = np.asarray(p, dtype=float)
        lins = self.linearize(base)
        return self.point(p, [self._warm(p, e, lin) for e, lin in zip(base.equilibria, lins)], fresh=False)

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
        for dev, found in self.oracle.deviations.find_all([e.x for e in pt.equilibria], pt.p, self.rng,
                                                          self.deadline):
            self.work = self.work + found
            devs.append(dev)
        if all(d is None for d in devs):
            return pt
        eqs = [e if d is None else self._cold(pt.p, d) for e, d in zip(pt.equilibria, devs)]
        return self.point(pt.p, eqs, fresh=False)

    def point(self, p, equilibria, fresh: bool) -> Point:
        k = self.k
        values = [k.leader_all(e.x, p) for e in equilibria]
        objs = np.array([v[0] for v in values], dtype=float)
        if len(values) == 1:  # one equilibrium: the aggregates of one row, without reductions
            agg, share, bodies = _single(values[0][1], self.coupled, self.aggregate)
            if self.objective == "worst":
                obj, oshare = float(objs[0]), np.ones(1)
            else:
                obj, oshare = float(objs[0] + 0.0), None  # a mean of one: -0.0 becomes 0.0
        else:
            cons = np.array([v[1][self.coupled] for v in values]).reshape(len(values), self.n_c)
            agg, share = aggregate(cons, self.aggregate)
            bodies = np.mean([v[1] for v in values], axis=0).reshape(self.k.n_c)
            if self.objective == "worst":  # in minimisation form: the leader's worst is the largest
                worst, oshare = aggregate(self.sense * objs[:, None], "worst")
                obj, oshare = self.sense * float(worst[0]), oshare[:, 0]
            else:
                obj, oshare = float(np.mean(objs)), None
        ok = (all(e.converged for e in equilibria) and bool(np.isfinite(objs).all())
              and bool(np.isfinite(agg).all()))
        return Point(p=p.copy(), equilibria=list(equilibria), values=values, f=self.sense * obj,
                     objective=obj, cons=agg, bodies=bodies, share=share, fresh=fresh,
                     converged=bool(ok), objective_share=oshare)

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


    # ------------------------------------------------- cached points, warm starts
    def _clip(self, p) -> np.ndarray:
        # an optimiser may step a hair outside the bounds; the followers may have no
        # feasible point there
        return np.clip(np.array(p, dtype=float), self.k.p_lb, self.k.p_ub)

    def cached(self, p) -> Point | None:
        """The cached point at strategy ``p`` (made the most recent), or None."""
        key = np.asarray(p, dtype=float).tobytes()
        pt = self._cache.get(key)
        if pt is not None:
            self._cache.move_to_end(key)
        return pt

    def remember(self, pt: Point) -> None:
        """Keep ``pt`` as the most recent cached point (the oldest leave past ``cache``)."""
        self._cache[pt.p.tobytes()] = pt
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self, keep: Point | None = None) -> None:
        """Empty the cache (``keep``: then cache that point)."""
        self._cache.clear()
        if keep is not None:
            self.remember(keep)

    def nearest(self, p, scale=None) -> Point | None:
        """Of the last ``NEAREST`` cached points whose equilibria were found, the one whose
        strategy is nearest ``p`` (largest difference, each variable divided by ``scale``
        if given); None where there is none."""
        best, dist, seen = None, np.inf, 0
        for pt in reversed(self._cache.values()):
            if not pt.found:
                continue
            seen += 1
            if seen > self.NEAREST:
                break
            d = pt.p - p if scale is None else (pt.p - p) / scale
            d = float(np.max(np.abs(d), initial=0.0))
            if d < dist:
                best, dist = pt, d
        return best

    def track(self, p, anchor: Point, scale=None) -> Point:
        """The point at ``p`` on the branches of the cached point nearest it (``anchor`` where
        none is): its equilibria followed to ``p`` by warm starts, and where a branch ends
        the followers re-adjust by their dynamics (within the oracle's step and sweep
        budgets). Cached where every equilibrium was found."""
        p = self._clip(p)
        pt = self.cached(p)
        if pt is not None:
            return pt
        base = self.nearest(p, scale) or anchor
        pt = self.follow(base, p)
        if not pt.converged:
            pt = self.readjust(base, p, pt)
        if pt.converged:
            self.remember(pt)
        return pt

    def evaluate(self, p) -> Point:
        """The point at ``p`` on one equilibrium, whichever the oracle finds: warm-started from
        the cached point nearest ``p``, where Newton cannot finish the followers' dynamics
        from there, and one more try from a fresh seeded start where that fails. Every point
        is cached, found or not; called past the deadline (a cached point too: an optimiser
        calls back at points it has evaluated) it raises :class:`TimeUp`."""
        if time.perf_counter() >= self.deadline:
            raise TimeUp()
        p = self._clip(p)
        pt = self.cached(p)
        if pt is not None:
            return pt
        base = self.nearest(p)
        warm, lin = (None, None) if base is None else (base.equilibria[0], self.linearize(base)[0])
        eq = self._evaluated(self.oracle.solve(p, warm=warm, linearization=lin, rng=self.rng,
                                               deadline=self._call_deadline()))
        if not eq.converged and time.perf_counter() < self.deadline:  # one more try, fresh seeded start
            retry = self._evaluated(self.oracle.solve(p, rng=self.rng, deadline=self._call_deadline()))
            if retry.residual < eq.residual:
                eq = retry
        self.failed += not eq.converged
        pt = self.point(p, [eq], fresh=False)
        self.remember(pt)
        return pt

    def _evaluated(self, eq):
        self.calls += 1
        return self._counted(eq)

    def fd_derivatives(self, p, step: float, scheme: str = "forward", evaluate=None):
        """``(grad f, d bodies / dp)`` at ``p`` by finite differences of :meth:`evaluate`
        (``h_j = step * max(1, |p_j|)``; ``scheme`` ``"forward"`` or ``"central"``, one-sided
        at a bound), the oracle calls shared by the objective and the constraints; the last
        strategy's are kept. ``evaluate``: what evaluates a strategy, where a method watches
        every point (it returns :meth:`evaluate`'s point)."""
        p = self._clip(p)
        if self._fd is not None and self._fd[0] == p.tobytes():
            return self._fd[1]
        k = self.k
        evaluate = self.evaluate if evaluate is None else evaluate
        base = evaluate(p)
        g = np.zeros(k.n_p)
        J = np.zeros((base.bodies.size, k.n_p))
        for j in range(k.n_p):
            h = step * max(1.0, abs(p[j]))
            up_ok = p[j] + h <= k.p_ub[j]
            down_ok = p[j] - h >= k.p_lb[j]
            if scheme == "central" and up_ok and down_ok:
                hi, lo = _shifted(evaluate, p, j, h), _shifted(evaluate, p, j, -h)
                g[j] = (hi.f - lo.f) / (2 * h)
                J[:, j] = (hi.bodies - lo.bodies) / (2 * h)
                continue
            h = h if up_ok or not down_ok else -h
            other = _shifted(evaluate, p, j, h)
            g[j] = (other.f - base.f) / h
            J[:, j] = (other.bodies - base.bodies) / h
        self._fd = (p.tobytes(), (g, J))
        return g, J

    # ----------------------------------------------------------- derivatives
    def linearize(self, pt: Point, reuse: list | None = None) -> list:
        """The factorised KKT systems of ``pt``'s equilibria (:func:`stackopt.oracle.sensitivity`),
        made on the first call and kept on the point for its derivatives and the warm
        starts from it; ``reuse`` (a nearby point's, same active sets) on that first call
        keeps their game Jacobians and factorisations."""
        if pt.linearizations is None:
            reuse = reuse if reuse is not None and len(reuse) == len(pt.equilibria) else None
            # without reuse, the equilibria's game Jacobians at once where that is cheaper
            Js = game_jacobians(pt.equilibria) if reuse is None else None
            pt.linearizations = [sensitivity(self.k, e, None if reuse is None else reuse[j],
                                             None if Js is None else Js[j])
                                 for j, e in enumerate(pt.equilibria)]
        return pt.linearizations

    def gradient(self, pt: Point, weights: np.ndarray) -> np.ndarray:
        """Gradient in ``p`` of ``f + weights @ cons`` (one adjoint solve per equilibrium)."""
        k = self.k
        n_s = len(pt.equilibria)
        full = np.zeros(1 + k.n_c)
        oshare = _objective_share(pt)
        grad = None
        for j, (e, v, lin) in enumerate(zip(pt.equilibria, pt.values, self.linearize(pt))):
            full[:] = 0.0
            full[0] = self.sense * oshare[j]
            full[1 + self.coupled] = weights * pt.share[j]
            g = leader_gradients(k, e, full, v, lin)[2]
            if grad is None:  # the sum starts from zero: the first term added to 0.0 (-0.0 becomes 0.0)
                grad = g + 0.0
            else:
                grad += g
        if grad is None:
            grad = np.zeros(k.n_p)
        return grad if n_s == 1 else grad / n_s  # (division by one is exact)

    def jacobian(self, pt: Point, per_sample: bool = False):
        """``(grad f, d cons / dp)``; with ``per_sample`` the constraint rows of every
        equilibrium separately (``samples * n_coupled`` rows), else aggregated."""
        n_s = len(pt.equilibria)
        gf = np.zeros(self.k.n_p)
        rows = []
        oshare = _objective_share(pt)
        for j, (e, v, lin) in enumerate(zip(pt.equilibria, pt.values, self.linearize(pt))):
            _, _, go, gc = leader_gradients(self.k, e, None, v, lin)
            gf += self.sense * go * oshare[j] / n_s
            gc = gc[self.coupled]
            rows.append(gc if per_sample else gc * pt.share[j][:, None] / n_s)
        if per_sample:
            return gf, np.vstack(rows) if rows else np.zeros((0, self.k.n_p))
        return gf, np.sum(rows, axis=0) if rows else np.zeros((self.n_c, self.k.n_p))

    def singular(self, pt: Point) -> bool:
        return any(lin.singular for lin in self.linearize(pt))

    def per_sample_cons(self, pt: Point) -> np.ndarray:
        return np.concatenate([v[1][self.coupled] for v in pt.values])

    def distance(self, a: Point, b: Point) -> float:
        """Largest difference between the followers' values of two points' equilibria."""
        return float(max((np.max(np.abs(x.x - y.x), initial=0.0)
                          for x, y in zip(a.equilibria, b.equilibria)), default=0.0))


def _single(bodies: np.ndarray, coupled: np.ndarray, how: str):
    """:func:`aggregate` (``how``) of one equilibrium's coupled constraints, each weighing one
    in its gradient, and the mean of its constraint ``bodies``: the values of the reductions
    over one row to the last bit (a mean of one adds it to zero, so -0.0 becomes 0.0; the
    worst of one is the value itself)."""
    cons = np.asarray(bodies[coupled], dtype=float)
    agg = cons + 0.0 if how == "mean" else cons.copy()
    return agg, np.ones((1, agg.size)), np.asarray(bodies, dtype=float) + 0.0


def _shifted(evaluate, p, j, h) -> Point:
    q = p.copy()
    q[j] += h
    return evaluate(q)


def _objective_share(pt: Point) -> np.ndarray:
    """Each equilibrium's weight in the gradient of ``pt.f`` (divided by the count)."""
    n_s = len(pt.equilibria)
    return np.ones(n_s) if pt.objective_share is None else pt.objective_share


AGGREGATES = ("mean", "worst")  # how values over the sampled equilibria become one
RARE = 0.1  # an equilibrium the followers reach one draw in ten ...
MISSED = 0.05  # ... is missed by every one of SEEN_EQUILIBRIA draws with at most this probability:
SEEN_EQUILIBRIA = math.ceil(math.log(MISSED) / math.log(1.0 - RARE))  # 29
DRAWS = ("fresh", "fixed")  # where a method's draws of the equilibria start


def declare_sampling(config) -> None:
    """Declare, on a method's ``ConfigDict``, the options of the methods that sample
    equilibria (``gradient``, ``implicit-ipopt``): ``objective`` over the sampled
    equilibria and ``draws`` (:func:`fixed_seed`).

    ``draws="fresh"`` is the default: on the reference security game (reference seed 36,
    budget 1, four sampled equilibria, constraints at the worst of them) fixed draws gave
    a strategy that meets the budget at its four draws and overspends it at five of
    scoring's ten (mean violation 0.097; fresh draws: 0), since four fixed equilibria are
    too few to stand for the others; with new draws at every evaluation the strategy
    must hold on every equilibrium a run meets."""
    from pyomo.common.config import ConfigValue, In

    config.declare("objective", ConfigValue(
        "mean", In(list(AGGREGATES)), "the leader's objective over the sampled equilibria: their mean "
        "(the sample average of the expectation, paper Definition 2) or the worst of them"))
    config.declare("draws", ConfigValue(
        "fresh", In(list(DRAWS)), "where the draws of the equilibria start: 'fresh', new random "
        "starts at every evaluation on fresh draws; 'fixed', the same seeded starts at every "
        "strategy, those of scoring (common random numbers: the sample average optimised is a "
        "deterministic function of the leader's variables, strategies are compared on the same "
        "draws; with few draws it can fit them, a budget met at the draws only)"))


def fixed_seed(draws: str, seed: int) -> int | None:
    """The ``fixed_seed`` of a :class:`LeaderProblem` for a method's ``draws`` option (see
    :func:`declare_sampling`) and its ``seed``: ``seed`` for fixed draws, None for fresh ones."""
    if draws not in DRAWS:
        raise ValueError(f"draws must be one of {DRAWS}, got {draws!r}")
    return int(seed) if draws == "fixed" else None


def aggregate(cons: np.ndarray, how: str):
    """Constraint values over the sampled equilibria (rows) as one vector, and each
    sample's share of each constraint's gradient (gradients are divided by the count)."""
    n_s, n_c = cons.shape
    if how == "worst":
        pick = np.argmax(cons, axis=0)  # the sample where each constraint is worst
        return cons[pick, np.arange(n_c)], n_s * (np.arange(n_s)[:, None] == pick[None, :])
    return cons.mean(axis=0), np.ones((n_s, n_c))
