"""The leader's objective and constraints as black-box functions of its strategy ``p``.

:class:`LeaderBlackBox` evaluates them at ``p`` through the equilibrium oracle
(``x*(p)``, warm-started from the nearest cached equilibrium, one fresh retry
where it fails), caches equilibria by strategy, keeps the best point evaluated
so far (feasible first, then lowest objective) and takes finite-difference
derivatives from shared oracle calls. It is what the scipy optimisers of
:mod:`stackopt.methods.blackbox.method` see; past its deadline a new oracle call raises
``_TimeUp``.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from stackopt.kernel import kernel_of
from stackopt.oracle import EquilibriumOracle


class _TimeUp(Exception):
    """Raised inside scipy's callbacks when the time limit is reached."""


@dataclass
class _Point:
    p: np.ndarray
    f: float  # leader objective in minimisation form
    cons: np.ndarray  # leader constraint bodies, <= 0 feasible
    x: np.ndarray  # followers' equilibrium
    converged: bool

    @property
    def violation(self) -> float:
        return float(np.max(self.cons, initial=0.0))


class LeaderBlackBox:
    """The leader's objective and constraints as functions of ``p`` only.

    ``value(p)`` (minimisation form), ``constraints(p)`` (``<= 0`` feasible) and
    their finite-difference derivatives ``gradient(p)``, ``constraint_jacobian(p)``;
    repeated calls at the same ``p`` cost nothing. ``deadline`` is a
    ``time.perf_counter()`` value after which any new oracle call raises.
    """

    def __init__(self, game, config, seed: int = 0, deadline: float = float("inf")):
        self.kernel = k = kernel_of(game)
        self.config = config
        self.sign = 1.0 if k.leader_sense == 1 else -1.0  # pyo.minimize == 1
        self.deadline = deadline
        self.rng = np.random.default_rng(seed)
        self.oracle = EquilibriumOracle(k, tol=config.oracle_tol,
                                        time_limit=float(config.oracle_time_limit))
        self._cache: OrderedDict[bytes, tuple] = OrderedDict()  # p bytes -> (point, equilibrium)
        self._grad_key: bytes | None = None
        self._grad: tuple | None = None
        self.n_oracle = 0
        self.n_failed = 0
        self.best: _Point | None = None
        self.on_best = None  # called with the new best point (throttled), if set
        self._last_report = -np.inf

    # ------------------------------------------------------------ evaluation
    def evaluate(self, p) -> _Point:
        # every call checks the deadline, a cached point's too: an optimiser calls back at
        # points it has evaluated (the objective, then its gradient) without a new oracle call
        if time.perf_counter() >= self.deadline:
            raise _TimeUp()
        p = np.clip(np.array(p, dtype=float), self.kernel.p_lb, self.kernel.p_ub)
        key = p.tobytes()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][0]
        self._budget()
        eq = self.oracle.solve(p, warm=self._nearest(p), rng=self.rng)
        self.n_oracle += 1
        if not eq.converged and time.perf_counter() < self.deadline:  # one more try, fresh seeded start
            self._budget()
            retry = self.oracle.solve(p, rng=self.rng)
            self.n_oracle += 1
            if retry.residual < eq.residual:
                eq = retry
        if not eq.converged:
            self.n_failed += 1
        obj, cons = self.kernel.leader(eq.x, p)
        pt = _Point(p=p, f=self.sign * obj, cons=np.asarray(cons, dtype=float), x=eq.x.copy(),
                    converged=eq.converged)
        self._cache[key] = (pt, eq if eq.converged else None)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
        self._consider(pt)
        return pt

    def _budget(self) -> None:
        """The next oracle call's time: its own limit, within what is left before the deadline."""
        left = max(self.deadline - time.perf_counter(), 1e-3)
        self.oracle.config.time_limit = float(min(self.config.oracle_time_limit, left))

    def _nearest(self, p):
        """Of the last few cached converged equilibria, the one whose strategy is nearest ``p``."""
        best, dist, seen = None, np.inf, 0
        for pt, eq in reversed(self._cache.values()):
            if eq is None:
                continue
            seen += 1
            if seen > 8:
                break
            d = float(np.max(np.abs(pt.p - p), initial=0.0))
            if d < dist:
                best, dist = eq, d
        return best

    def _consider(self, pt: _Point) -> None:
        if not np.isfinite(pt.f):
            return
        if self.best is None or self._better(pt, self.best):
            self.best = pt
            now = time.perf_counter()
            if self.on_best is not None and now - self._last_report >= 0.1:
                self._last_report = now
                self.on_best(pt)

    def _better(self, a: _Point, b: _Point) -> bool:
        tol = self.config.feasibility_tol
        fa, fb = a.violation <= tol, b.violation <= tol
        if fa != fb:
            return fa
        if fa:
            return a.f < b.f
        return a.violation < b.violation

    # --------------------------------------------------------- scipy callbacks
    def value(self, p) -> float:
        return self.evaluate(p).f

    def constraints(self, p) -> np.ndarray:
        return self.evaluate(p).cons

    def gradient(self, p) -> np.ndarray:
        return self._derivatives(p)[0]

    def constraint_jacobian(self, p) -> np.ndarray:
        return self._derivatives(p)[1]

    def _derivatives(self, p):
        """Finite differences of the objective and the constraints, sharing oracle calls."""
        p = np.clip(np.array(p, dtype=float), self.kernel.p_lb, self.kernel.p_ub)
        key = p.tobytes()
        if key == self._grad_key:
            return self._grad
        k = self.kernel
        base = self.evaluate(p)
        g = np.zeros(k.n_p)
        J = np.zeros((base.cons.size, k.n_p))
        central = self.config.fd_scheme == "central"
        for j in range(k.n_p):
            h = self.config.fd_step * max(1.0, abs(p[j]))
            up_ok = p[j] + h <= k.p_ub[j]
            down_ok = p[j] - h >= k.p_lb[j]
            if central and up_ok and down_ok:
                hi, lo = self._shifted(p, j, h), self._shifted(p, j, -h)
                g[j] = (hi.f - lo.f) / (2 * h)
                J[:, j] = (hi.cons - lo.cons) / (2 * h)
                continue
            step = h if up_ok or not down_ok else -h
            other = self._shifted(p, j, step)
            g[j] = (other.f - base.f) / step
            J[:, j] = (other.cons - base.cons) / step
        self._grad_key, self._grad = key, (g, J)
        return g, J

    def _shifted(self, p, j, h) -> _Point:
        q = p.copy()
        q[j] += h
        return self.evaluate(q)
