"""Which strategy a gradient run returns: strategies evaluated on fresh draws, and their checks.

The gradient method tracks equilibria by warm starts; the followers' own
dynamics from fresh random starts (what scoring does) may reach other ones.
:class:`Answers` keeps the strategies evaluated on fresh draws (checkpoints)
as the candidates for the answer, re-anchors the run where fresh draws reach
other equilibria than the tracked ones, keeps the best feasible tracked
iterates to be evaluated on fresh draws at the end, and confirms the final
choice on further fresh draws.
"""
from __future__ import annotations

import time

import numpy as np

from stackopt.core import Status

from .problem import SEEN_EQUILIBRIA

SAME_OBJECTIVE = 1e-6  # relative difference of objectives within the stopping rule's precision
CONFIRM_TRIES = 5  # best feasible candidates evaluated on further fresh draws
CONFIRM_EQUILIBRIA = 5  # further equilibria drawn per candidate (in draws of samples_per_step)
TRACKED = 3  # best feasible tracked iterates evaluated on fresh draws at the end
STOCHASTIC_PATIENCE = 5  # checkpoints without a better answer on fresh draws end a sampled run
IMPROVEMENT = 1e-4  # relative improvement of the best answer on fresh draws that counts


class Answers:
    """Candidates for a gradient run's answer (points of :mod:`stackopt.leader.problem`).

    ``scales`` (:class:`~stackopt.merit.Scales`) are the problem's own: a candidate is
    feasible where each constraint's violation in its scale is at most
    ``feasibility_tol``, and objectives are compared relative to their magnitude."""

    def __init__(self, prob, deadline: float, scales, *, feasibility_tol: float,
                 select: str = "best-feasible"):
        self.prob, self.deadline, self.scales = prob, deadline, scales
        self.feasibility_tol, self.select_rule = feasibility_tol, select
        self.candidates: list = []  # points evaluated on fresh draws
        self.start = None  # the first of them, at the run's start (checkpoint(first=True))
        self.tracked: list = []  # the best feasible tracked iterates
        self.reanchors = self.failed_draws = 0
        self.failure = ""  # why the last fresh draws failed (LeaderProblem.failure)
        self.next_check, self.interval = 1, 1  # the schedule of fresh draws, in outer iterations
        self.best, self.no_gain = np.inf, 0  # the best answer on fresh draws, checks since it improved

    def checkpoint(self, pt, first: bool = False):
        """Evaluate ``pt.p`` on fresh draws; they become a candidate for the answer.

        Returns the point to continue from: ``pt`` itself where the fresh draws
        reach the tracked equilibria, the fresh point where they reach others
        (re-anchoring), None where no fresh draw converged (then ``pt`` stays)."""
        fresh = pt if pt.fresh else self.prob.draw(pt.p)
        if not fresh.converged:
            self.failed_draws += 1
            self.failure = self.prob.failure(fresh)
            return None if first else pt
        self.candidates.append(fresh)
        if first:
            self.start = fresh
            self.best = self.best_fresh()
        if first or fresh is pt:
            return fresh
        if self.prob.distance(fresh, pt) <= _same(pt):
            return pt
        self.reanchors += 1
        return fresh

    def scheduled(self, pt, status, outer: int, step, kkt):
        """Fresh draws after outer iteration ``outer``: at every one while they move the
        equilibria, then at ever longer intervals while they agree with the tracked ones,
        and at the end (``status`` set). Returns the point to go on from (re-anchored
        where the followers play other equilibria; ``step`` is reset then), the status
        (a convergence at a re-anchored point is re-checked by ``kkt``) and a note where
        the run ends here."""
        if (status is None and outer < self.next_check) or self.checked(pt):
            return pt, status, ""
        anchored = self.checkpoint(pt)
        if anchored is not None and anchored is not pt:
            pt = anchored
            step.reset()
            self.interval = 1
            if status is Status.CONVERGED and not kkt(pt):
                status = None
        else:
            self.interval *= 2
        self.next_check = outer + self.interval
        # with several equilibria per step no KKT point is ever certified: stop once
        # STOCHASTIC_PATIENCE checkpoints in a row did not improve on fresh draws
        now = self.best_fresh()
        improved = self.best - now > IMPROVEMENT * self.scales.magnitude(now)
        self.best, self.no_gain = min(self.best, now), 0 if improved else self.no_gain + 1
        if status is None and self.prob.samples > 1 and self.no_gain >= STOCHASTIC_PATIENCE:
            return pt, Status.NOT_CONVERGED, (f"; stopped: {STOCHASTIC_PATIENCE} evaluations on fresh draws "
                                "in a row without improvement")
        return pt, status, ""

    def best_fresh(self) -> float:
        """The best objective (minimisation form) of a feasible candidate so far."""
        return min((c.f for c in self.candidates if self.feasible(c)), default=np.inf)

    def feasible(self, pt) -> bool:
        """Each constraint's violation at ``pt`` in its scale at most ``feasibility_tol``."""
        return self.scales.violation(pt.cons) <= self.feasibility_tol

    def checked(self, pt) -> bool:
        """Whether ``pt``'s strategy was the last one evaluated on fresh draws."""
        return any(np.array_equal(c.p, pt.p) for c in self.candidates[-1:])

    def track(self, pt) -> None:
        """Keep the ``TRACKED`` best feasible tracked iterates: at the end each better than
        every answer on fresh draws is evaluated on fresh draws itself."""
        if not self.feasible(pt):
            return
        if len(self.tracked) < TRACKED or pt.f < self.tracked[-1].f:
            self.tracked = sorted(self.tracked + [pt], key=lambda c: c.f)[:TRACKED]

    def select(self, last):
        """The answer and a note on its confirmation: the best candidate after the best
        tracked iterates were evaluated on fresh draws, confirmed on further ones."""
        best = self._choose(last)
        for c in self.tracked:
            if time.perf_counter() > self.deadline:
                break
            if (not self.feasible(best)
                    or c.f < best.f - SAME_OBJECTIVE * self.scales.magnitude(best.f)):
                self.checkpoint(c)
                best = self._choose(last)
        if self.select_rule == "best-feasible" and self.feasible(best):
            return self.confirm(best)
        return best, ""

    def _choose(self, last=None):
        """The best candidate; among those within rounding of the best objective, the
        one at ``last`` (where the run ended) if it is among them, else the latest."""
        if self.select_rule == "last":
            return self.candidates[-1]
        feasible = [c for c in self.candidates if self.feasible(c)]
        if not feasible:
            return min(self.candidates, key=lambda c: self.scales.violation(c.cons))
        f_min = min(c.f for c in feasible)
        near = [c for c in feasible if c.f <= f_min + SAME_OBJECTIVE * self.scales.magnitude(f_min)]
        at_last = [c for c in near if last is not None and np.array_equal(c.p, last.p)]
        return (at_last or near)[-1]

    def confirm(self, best):
        """The followers' dynamics from other random starts may reach other equilibria
        than those a candidate was evaluated on (and with several equilibria the best
        of many noisy estimates is biased). Each of the ``CONFIRM_TRIES`` best feasible
        candidates is evaluated on about ``CONFIRM_EQUILIBRIA`` further fresh equilibria; the answer is
        the one with the best mean objective over its draws among those whose mean
        constraints hold: an estimate of what a fresh draw gives, as scoring draws.
        Its constraints are then checked in expectation on ``SEEN_EQUILIBRIA`` (29)
        equilibria at least, as scoring's first stage draws (:meth:`_holds_widely`): an equilibrium the
        followers reach one draw in ten is then missed with probability 0.05 at most, where
        a few draws can miss a class of equilibria that overspends a budget (on the paper's
        security game, one reached one draw in six spent 0.74 of a budget of 0.4). Where
        every follower is provably convex and the candidate's first further draw reaches its
        equilibrium again, no more are drawn: they would reach it too. A candidate that
        fails is left for the next; where none holds, the run's start (its first checkpoint,
        if it made one) is checked the same way and returned if it holds. With fixed draws
        (:class:`~stackopt.leader.LeaderProblem` ``fixed_seed``) the candidates were
        evaluated on the same draws, their objectives are the sample average the run
        optimised, and ``best`` is kept."""
        if self.prob.fixed_seed is not None:
            return best, f"; compared on the same {self.prob.samples} fixed draws"
        ranked = sorted((c for c in self.candidates if self.feasible(c)), key=lambda c: c.f)
        # about CONFIRM_EQUILIBRIA equilibria per candidate: fewer draws where each holds several
        n_draws = max(1, round(CONFIRM_EQUILIBRIA / self.prob.samples))
        scored = []
        for c in ranked[:CONFIRM_TRIES]:
            if time.perf_counter() > self.deadline:
                break
            draws = [c, self.prob.draw(c.p)]
            if not self._one_equilibrium(draws):  # else further draws would reach it again
                draws += [self.prob.draw(c.p) for _ in range(n_draws - 1)]
            if all(d.converged for d in draws) and self._holds(draws):
                scored.append((float(np.mean([d.f for d in draws])), c, draws))
        if not scored:
            return best, (f"; no candidate stayed feasible on further fresh draws "
                          f"({min(CONFIRM_TRIES, len(ranked))} tried)")
        scored.sort(key=lambda t: t[0])
        for k, (mean_f, choice, draws) in enumerate(scored):
            held = self._holds_widely(choice, draws)
            chosen = (f"; chosen by its mean objective over {len(draws)} fresh draws "
                      f"({self.prob.sense * mean_f:.6g}) among {len(scored)} candidates")
            dropped = f" ({k} with a better mean did not)" if k else ""
            if held is None:  # the clock stopped the check: this one, unchecked
                return choice, (f"{chosen}; the time limit cut the check of its constraints on "
                                f"{SEEN_EQUILIBRIA} equilibria{dropped}")
            if held:
                return choice, f"{chosen}; its mean constraints held on {held} equilibria{dropped}"
        start = self.start
        if start is not None and all(start is not c for _, c, _ in scored) and self.feasible(start):
            held = self._holds_widely(start, [start])
            if held:
                return start, (f"; the start: no better candidate's mean constraints held on "
                               f"{SEEN_EQUILIBRIA} equilibria ({len(scored)} tried), the start's "
                               f"held on {held}")
        return scored[0][1], (f"; no candidate's mean constraints held on {SEEN_EQUILIBRIA} "
                              f"equilibria ({len(scored)} tried); the best by {len(scored[0][2])} fresh "
                              "draws")

    def _one_equilibrium(self, draws) -> bool:
        """Every follower is provably convex in its own variables and ``draws`` (converged)
        reached one equilibrium: every KKT point is then a Nash equilibrium, and further
        draws from fresh starts would find no other."""
        if not all(d.converged for d in draws):
            return False
        xs = [e.x for d in draws for e in d.equilibria]
        return all(self.prob.k.convex_followers()) and all(
            np.max(np.abs(x - xs[0]), initial=0.0) <= _same(draws[0]) for x in xs)

    def _holds(self, draws) -> bool:
        """Whether the mean of the draws' constraints is feasible."""
        return self.scales.violation(np.mean([d.cons for d in draws], axis=0)) <= self.feasibility_tol

    def _holds_widely(self, c, draws):
        """The number of equilibria (at least ``SEEN_EQUILIBRIA``) over which the constraints held
        at ``c``'s strategy, ``draws`` extended by further fresh ones; 0 where they did not
        or a draw failed; None where the clock stopped the draws. The constraints are those
        the run met: over each draw's equilibria as the run aggregates them (their mean, or
        with ``constraints="worst"`` their worst), then the mean over the draws. The worst
        of each draw bounds its mean, so with it the check is conservative: on the paper's
        security game the mean over the equilibria let 4 of 7 strategies that scoring finds
        over budget pass (each equilibrium's spend alone is too noisy at 32 equilibria where
        one class overspends by 0.6), the worst of each draw none. No draws are added where
        every follower is provably convex in its own variables and ``draws`` reached one
        equilibrium (every KKT point is then a Nash equilibrium and the dynamics find no
        other)."""
        draws = list(draws)
        if not self._one_equilibrium(draws):
            while sum(len(d.equilibria) for d in draws) < SEEN_EQUILIBRIA:
                if time.perf_counter() > self.deadline:
                    return None
                draws.append(self.prob.draw(c.p))
                if not draws[-1].converged:
                    return 0
        return sum(len(d.equilibria) for d in draws) if self._holds(draws) else 0


def _same(pt) -> float:
    """Distance within which two points' equilibria are the same (as :meth:`Answers.checkpoint`)."""
    return 1e-6 * (1.0 + max(float(np.max(np.abs(e.x), initial=0.0)) for e in pt.equilibria))
