"""The oracle's cold starts: the followers' own dynamics from a start, until a Nash equilibrium.

From ``start`` (or a seeded random feasible point), gradient play where every
follower's set is simple, handing over to Newton once its steps are small
(the hand-over ladder of step sizes; where the play circles without settling,
Newton from its last point; where its steps shrink far from an equilibrium
from every start, the first local Nash point Newton reached from where it
stopped); in a generalized Nash game under a normalized concept, Newton from
the start, then the same play on the joint set where its fixed points are the
normalized equilibria; otherwise, or where a game declares
``dynamics="best-response"``, the damped best responses with Newton taking over
(the relaxation ladder of predicted distances; where the damped map does not
contract and Newton cannot finish from its last point, the damping halved, down
to ``min_damping``). An answer is kept where it
passes the second-order (local Nash) test and no follower gains by a
unilateral deviation (:mod:`stackopt.oracle.deviation`); from a profitable deviation
the dynamics go on, up to ``deviation_rounds`` times. A follower without a
feasible point is named at once, one whose values run away as possibly
unbounded. Options are the oracle's (:attr:`EquilibriumOracle.CONFIG`).
"""
from __future__ import annotations

import time

import numpy as np

from stackopt.core import Status

from .equilibrium import Equilibrium
from .newton import NewtonResult
from .residual import second_order_ok

DIVERGED = 1e8  # follower values beyond this in magnitude: the dynamics ran away


class ColdStart:
    """Cold starts of an :class:`~stackopt.oracle.EquilibriumOracle` (its parts and options)."""

    def __init__(self, oracle):
        self.o = oracle
        self._far = None  # a local Nash point Newton reached far from where gradient play stopped
        self._note = ""  # how the last gradient play ended, where not as planned

    def run(self, start, p, deadline, rng, restarts, tally, checked) -> Equilibrium:
        """The dynamics from ``start``; where they reach a local Nash equilibrium from which
        a follower gains by deviating (``checked`` solves only), the dynamics again from
        the deviation, up to ``deviation_rounds`` times."""
        o = self.o
        rounds = o.config.deviation_rounds if checked else 0
        eq = self._dynamics(start, p, deadline, rng, restarts, tally, checked)
        for _ in range(rounds):
            if not eq.converged:
                return eq
            dev = o.deviations.find(eq.x, p, rng, deadline)
            if dev is None:
                return eq
            o.counters.deviations += 1
            eq = self._dynamics(dev, p, deadline, rng, 0, tally, checked)
        if rounds and eq.converged and o.deviations.find(eq.x, p, rng, deadline) is not None:
            eq.status = Status.NOT_CONVERGED
            o.counters.failures += 1
            eq.message = f"a follower still gains by deviating after {rounds} rounds of adjustment"
        return eq

    def _dynamics(self, start, p, deadline, rng, restarts, tally, checked) -> Equilibrium:
        o = self.o
        cfg, sets, k, newton = o.config, o.sets, o.kernel, o.newton
        zeros = (np.zeros(o.system.m_e), np.zeros(o.system.m_i), np.zeros(k.n_x))
        empty = sets.infeasible(p)
        if empty:  # no dynamics can help: say so at once
            x = np.clip(k.x0 if start is None else start, k.x_lb, k.x_ub)
            eq = o.finish((x,) + zeros, p, tally, message=(
                f"follower {', '.join(map(repr, empty))} has no feasible point at this leader strategy "
                "(its linear constraints and bounds contradict each other)"))
            eq.status = Status.INFEASIBLE
            return eq
        x = sets.random_start(p, rng).x if start is None else sets.feasible(start, p)
        if cfg.cold_start == "gradient-play" and sets.simple:
            self._far = None
            for attempt in range(1 + restarts):
                self._note = ""
                res = self._play(x if attempt == 0 else sets.random_start(p, rng).x, p, deadline, tally)
                if res is not None:
                    return o.finish(res.z, p, tally, res.residual, message=self._note)
            if self._far is not None:  # the play crawled; Newton from where it stopped found one
                return o.finish(self._far.z, p, tally, self._far.residual, message=(
                    "gradient play did not converge (its steps shrank far from an equilibrium); "
                    "Newton from its last point"))
        if cfg.cold_start == "auto":
            res = newton.solve((x,) + zeros, p, deadline, cfg.max_newton)
            tally[0] += res.iterations
            if res.converged and self._local_nash(res.z, p):
                return o.finish(res.z, p, tally, res.residual)
        if cfg.cold_start in ("auto", "gradient-play") and o.joint_play is not None:
            self._note = ""  # the projection method of the normalized equilibria' inequality
            res = self._play(x, p, deadline, tally, o.joint_play)
            if res is not None:
                return o.finish(res.z, p, tally, res.residual, message=self._note)
        return self._relaxation(x, p, deadline, tally, checked)

    def _relaxation(self, x, p, deadline, tally, checked) -> Equilibrium:
        """Damped best responses with Newton taking over (the relaxation ladder); where the
        damped map does not contract, ``d`` halved down to ``min_damping``."""
        o = self.o
        cfg, newton = o.config, o.newton
        zeros = (np.zeros(o.system.m_e), np.zeros(o.system.m_i), np.zeros(o.kernel.n_x))
        best = NewtonResult((x,) + zeros, False, 0, np.inf)
        rungs, sweeps, d = list(cfg.relaxation_ladder), 0, cfg.damping
        rung = None
        while time.perf_counter() < deadline and sweeps < cfg.max_relaxation:
            rung = (rungs.pop(0) if rungs else cfg.relaxation_tol) if rung is None else rung
            h = o.relax.run(x, p, deadline, cfg.max_relaxation - sweeps, rung, cfg.relaxation_tol, damping=d)
            tally[1] += h.steps
            sweeps += h.steps
            x = h.z[0]
            if np.max(np.abs(x), initial=0.0) > DIVERGED:
                break
            if not h.settled:  # the best responses do not settle: Newton from their last point
                res = newton.solve(h.z, p, deadline, cfg.max_newton)
                tally[0] += res.iterations
                if res.converged and self._local_nash(res.z, p):
                    return o.finish(res.z, p, tally, res.residual,
                                     message="best responses did not settle; Newton from their last point")
                if 0.5 * d < cfg.min_damping:
                    break
                d *= 0.5  # the damped map does not contract: damp more, from where it stopped
                continue
            rung = None
            res = newton.solve(h.z, p, deadline, cfg.handover_newton)
            tally[0] += res.iterations
            early = h.distance > cfg.relaxation_tol  # handed over on the predicted distance
            near = not early or (np.max(np.abs(res.z[0] - x), initial=0.0) <= 2 * h.distance
                                 and o.relax.contracts(o.system, res.z, p, damping=d))
            if res.converged and near and (not checked or self._local_nash(res.z, p)):
                return o.finish(res.z, p, tally, res.residual)
            if res.residual < best.residual:
                best = res
        if not np.isfinite(best.residual):
            best = NewtonResult((x,) + zeros, False, 0, np.inf)
        return o.finish(best.z, p, tally, message=self._divergence(best.z[0]))

    def _divergence(self, x) -> str:
        """A message naming the followers whose values ran away (an objective unbounded
        below on an unbounded set), or nothing."""
        k = self.o.kernel
        far = [k.follower_names[i] for i, sl in enumerate(k.slices)
               if np.max(np.abs(x[sl]), initial=0.0) > DIVERGED]
        return (f"follower {', '.join(map(repr, far))} moved beyond {DIVERGED:g}: its problem may be "
                "unbounded at this leader strategy") if far else ""

    def _play(self, x, p, deadline, tally, play=None) -> NewtonResult | None:
        """Gradient play (``play``, by default the oracle's) handing over to Newton at each
        step size of the ladder in turn, playing on from the hand-over point where Newton
        cannot finish. Where the explicit step leaves the objectives' domain, the implicit
        integrator takes over (the followers' own sets only)."""
        cfg = self.o.config
        play, z, eta = (self.o.play if play is None else play), None, None
        for handover in cfg.handover_ladder:
            h = play.run(x, p, deadline, cfg.play_budget, handover, eta=eta) if z is None else \
                play.run(x, p, deadline, cfg.play_budget, handover, z=z)
            eta = h.eta or None  # play on with the step it had reached
            tally[1] += h.steps
            if h.stiff and play is self.o.play:  # not the joint play: its projections are Ipopt's
                play = self.o.implicit_play
                h = play.run(x, p, deadline, cfg.play_budget, handover)
                tally[1] += h.steps
            if not h.settled:  # the play circles (no potential): Newton from its last point
                res = self.o.newton.solve(h.z, p, deadline, cfg.handover_newton)
                tally[0] += res.iterations
                if h.stiff or not (res.converged and self._local_nash(res.z, p)):
                    return None
                self._note = "gradient play did not settle; Newton from its last point"
                return res
            res = self.o.newton.solve(h.z, p, deadline, cfg.handover_newton)
            tally[0] += res.iterations
            # Newton's answer must lie where the play was heading: within the predicted distance
            near = np.max(np.abs(res.z[0] - h.z[0]), initial=0.0) <= max(2 * h.distance, 10 * handover)
            if res.converged and self._local_nash(res.z, p):
                if near:
                    return res
                self._far = self._far or res  # the first local Nash point Newton reached
            x = h.z[0]
            z = h.z if play is self.o.implicit_play else None
        return None

    def _local_nash(self, z, p) -> bool:
        o = self.o
        return second_order_ok(o.system, z[0], z[2], z[3], p, tol=o.config.second_order_tol, nu=z[1])
