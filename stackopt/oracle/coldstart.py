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
to ``min_damping``; where the best responses settle again, within ``tol``, at a
point from which Newton could not finish, the relaxation stops: it would repeat
itself up to ``max_relaxation`` sweeps). An answer is kept where it
passes the second-order (local Nash) test and no follower gains by a
unilateral deviation (:mod:`stackopt.oracle.deviation`); from a profitable deviation
the dynamics go on, up to ``deviation_rounds`` times. A follower without a
feasible point is named at once, one whose values run away as possibly
unbounded. Options are the oracle's (:attr:`EquilibriumOracle.CONFIG`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from stackopt.core import Status

from .equilibrium import Equilibrium, OracleCounters
from .newton import NewtonResult
from .residual import second_order_ok

DIVERGED = 1e8  # follower values beyond this in magnitude: the dynamics ran away


@dataclass
class _Outcome:
    """What one run of the dynamics found: the point ``z``, the KKT residual's norm there,
    the work done, a message and a status that overrides the residual's verdict (a
    follower without a feasible point)."""

    z: tuple
    residual: float
    work: OracleCounters
    message: str = ""
    status: Status | None = None


def _newton_work(res: NewtonResult) -> OracleCounters:
    return OracleCounters(newton_iterations=res.iterations)


def _dynamics_work(h) -> OracleCounters:
    return OracleCounters(dynamics_steps=h.steps, best_responses=h.responses,
                          best_response_failures=h.response_failures)


class ColdStart:
    """Cold starts of an :class:`~stackopt.oracle.EquilibriumOracle` (its parts and options)."""

    def __init__(self, oracle):
        self.o = oracle

    def run(self, start, p, deadline, rng, restarts, checked, work: OracleCounters) -> Equilibrium:
        """The dynamics from ``start``; where they reach a local Nash equilibrium from which
        a follower gains by deviating (``checked`` solves only), the dynamics again from
        the deviation, up to ``deviation_rounds`` times. ``work``: what the solve did
        before (a warm start that fell back); the equilibrium carries the sum."""
        o = self.o
        rounds = o.config.deviation_rounds if checked else 0
        out = self._dynamics(start, p, deadline, rng, restarts, checked)
        work = work + out.work
        for _ in range(rounds):
            if not self._converged(out):
                break
            dev, found = o.deviations.find(out.z[0], p, rng, deadline)
            work = work + found
            if dev is None:
                break
            work = work + OracleCounters(deviations=1)
            out = self._dynamics(dev, p, deadline, rng, 0, checked)
            work = work + out.work
        else:
            if rounds and self._converged(out):
                dev, found = o.deviations.find(out.z[0], p, rng, deadline)
                work = work + found
                if dev is not None:
                    out.status = Status.NOT_CONVERGED
                    out.message = f"a follower still gains by deviating after {rounds} rounds of adjustment"
        return o.finish(out.z, p, work, out.residual, out.message, out.status)

    def _converged(self, out: _Outcome) -> bool:
        return out.status is None and out.residual <= self.o.config.tol

    def _outcome(self, z, p, work, message="", status=None, residual=None) -> _Outcome:
        """An outcome at ``z``; its residual evaluated where Newton did not report it."""
        if residual is None:
            residual = self.o.system.norm(self.o.system.value(*z, p))
        return _Outcome(z, float(residual), work, message, status)

    def _dynamics(self, start, p, deadline, rng, restarts, checked) -> _Outcome:
        o = self.o
        cfg, sets, k, newton = o.config, o.sets, o.kernel, o.newton
        zeros = (np.zeros(o.system.m_e), np.zeros(o.system.m_i), np.zeros(k.n_x))
        empty = sets.infeasible(p)
        if empty:  # no dynamics can help: say so at once
            x = np.clip(k.x0 if start is None else start, k.x_lb, k.x_ub)
            return self._outcome((x,) + zeros, p, OracleCounters(), (
                f"follower {', '.join(map(repr, empty))} has no feasible point at this leader strategy "
                "(its linear constraints and bounds contradict each other)"), Status.INFEASIBLE)
        x = sets.random_start(p, rng).x if start is None else sets.feasible(start, p)
        work = OracleCounters()
        if cfg.cold_start == "gradient-play" and sets.simple:
            far = None  # the first local Nash point Newton reached far from where the play stopped
            for attempt in range(1 + restarts):
                res, note, found, done = self._play(x if attempt == 0 else sets.random_start(p, rng).x,
                                                    p, deadline)
                work = work + done
                far = far or found
                if res is not None:
                    return self._outcome(res.z, p, work, note, residual=res.residual)
            if far is not None:  # the play crawled; Newton from where it stopped found one
                return self._outcome(far.z, p, work, (
                    "gradient play did not converge (its steps shrank far from an equilibrium); "
                    "Newton from its last point"), residual=far.residual)
        if cfg.cold_start == "auto":
            res = newton.solve((x,) + zeros, p, deadline, cfg.max_newton)
            work = work + _newton_work(res)
            if res.converged and self._local_nash(res.z, p):
                return self._outcome(res.z, p, work, residual=res.residual)
        if cfg.cold_start in ("auto", "gradient-play") and o.joint_play is not None:
            # the projection method of the normalized equilibria's variational inequality
            res, note, _, done = self._play(x, p, deadline, o.joint_play)
            work = work + done
            if res is not None:
                return self._outcome(res.z, p, work, note, residual=res.residual)
        out = self._relaxation(x, p, deadline, checked)
        out.work = work + out.work
        return out

    def _relaxation(self, x, p, deadline, checked) -> _Outcome:
        """Damped best responses with Newton taking over (the relaxation ladder); where the
        damped map does not contract, ``d`` halved down to ``min_damping``."""
        o = self.o
        cfg, newton = o.config, o.newton
        zeros = (np.zeros(o.system.m_e), np.zeros(o.system.m_i), np.zeros(o.kernel.n_x))
        best = NewtonResult((x,) + zeros, False, 0, np.inf)
        rungs, sweeps, d = list(cfg.relaxation_ladder), 0, cfg.damping
        rung, work = None, OracleCounters()
        failed = None  # the last settled hand-over point from which Newton did not finish
        while time.perf_counter() < deadline and sweeps < cfg.max_relaxation:
            rung = (rungs.pop(0) if rungs else cfg.relaxation_tol) if rung is None else rung
            h = o.relax.run(x, p, deadline, cfg.max_relaxation - sweeps, rung, cfg.relaxation_tol, damping=d)
            work = work + _dynamics_work(h)
            sweeps += h.steps
            x = h.z[0]
            if np.max(np.abs(x), initial=0.0) > DIVERGED:
                break
            if not h.settled:  # the best responses do not settle: Newton from their last point
                res = newton.solve(h.z, p, deadline, cfg.max_newton)
                work = work + _newton_work(res)
                if res.converged and self._local_nash(res.z, p):
                    return self._outcome(res.z, p, work, "best responses did not settle; Newton from "
                                         "their last point", residual=res.residual)
                if 0.5 * d < cfg.min_damping:
                    break
                d *= 0.5  # the damped map does not contract: damp more, from where it stopped
                continue
            rung = None
            if failed is not None and np.max(np.abs(h.z[0] - failed), initial=0.0) <= cfg.tol * (
                    1.0 + np.max(np.abs(failed), initial=0.0)):
                break  # the best responses settle where Newton could not finish before: it would not now
            res = newton.solve(h.z, p, deadline, cfg.handover_newton)
            work = work + _newton_work(res)
            early = h.distance > cfg.relaxation_tol  # handed over on the predicted distance
            near = not early or (np.max(np.abs(res.z[0] - x), initial=0.0) <= 2 * h.distance
                                 and o.relax.contracts(o.system, res.z, p, damping=d))
            if res.converged and near and (not checked or self._local_nash(res.z, p)):
                return self._outcome(res.z, p, work, residual=res.residual)
            if res.residual < best.residual:
                best = res
            failed = h.z[0]
        if not np.isfinite(best.residual):
            best = NewtonResult((x,) + zeros, False, 0, np.inf)
        return self._outcome(best.z, p, work, self._divergence(best.z[0]))

    def _divergence(self, x) -> str:
        """A message naming the followers whose values ran away (an objective unbounded
        below on an unbounded set), or nothing."""
        k = self.o.kernel
        far = [k.follower_names[i] for i, sl in enumerate(k.slices)
               if np.max(np.abs(x[sl]), initial=0.0) > DIVERGED]
        return (f"follower {', '.join(map(repr, far))} moved beyond {DIVERGED:g}: its problem may be "
                "unbounded at this leader strategy") if far else ""

    def _play(self, x, p, deadline, play=None):
        """Gradient play (``play``, by default the oracle's) handing over to Newton at each
        step size of the ladder in turn, playing on from the hand-over point where Newton
        cannot finish. Where the explicit step leaves the objectives' domain, the implicit
        integrator takes over (the followers' own sets only).

        Returns ``(result or None, note, far, work)``: Newton's answer where the play
        led to one (``note`` says how, where not as planned), the first local Nash point
        Newton reached far from where the play was heading (or None), the work done."""
        cfg = self.o.config
        play, z, eta = (self.o.play if play is None else play), None, None
        far, work = None, OracleCounters()
        for handover in cfg.handover_ladder:
            h = play.run(x, p, deadline, cfg.play_budget, handover, eta=eta) if z is None else \
                play.run(x, p, deadline, cfg.play_budget, handover, z=z)
            eta = h.eta or None  # play on with the step it had reached
            work = work + _dynamics_work(h)
            if h.stiff and play is self.o.play:  # not the joint play: its projections are Ipopt's
                play = self.o.implicit_play
                h = play.run(x, p, deadline, cfg.play_budget, handover)
                work = work + _dynamics_work(h)
            if not h.settled:  # the play circles (no potential): Newton from its last point
                res = self.o.newton.solve(h.z, p, deadline, cfg.handover_newton)
                work = work + _newton_work(res)
                if h.stiff or not (res.converged and self._local_nash(res.z, p)):
                    return None, "", far, work
                return res, "gradient play did not settle; Newton from its last point", far, work
            res = self.o.newton.solve(h.z, p, deadline, cfg.handover_newton)
            work = work + _newton_work(res)
            # Newton's answer must lie where the play was heading: within the predicted distance
            near = np.max(np.abs(res.z[0] - h.z[0]), initial=0.0) <= max(2 * h.distance, 10 * handover)
            if res.converged and self._local_nash(res.z, p):
                if near:
                    return res, "", far, work
                far = far or res  # the first local Nash point Newton reached
            x = h.z[0]
            z = h.z if play is self.o.implicit_play else None
        return None, "", far, work

    def _local_nash(self, z, p) -> bool:
        o = self.o
        return second_order_ok(o.system, z[0], z[2], z[3], p, tol=o.config.second_order_tol, nu=z[1])
