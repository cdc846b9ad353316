"""The augmented Lagrangian outer loop of the gradient method (see :mod:`stackopt.methods.gradient.method`)."""
from __future__ import annotations

import time

import numpy as np

from stackopt.core import Status
from stackopt.leader import SAME_OBJECTIVE, Answers

from ..registry import MethodOutput, ReportedHistory
from .merit import ScaledLagrangian

MU_MAX = 1e20  # the penalty stops growing here
FIRST_INNER_TOL = 1e-2  # the first inner solve's stationarity tolerance, relative like the final one
# outer iterations without an accepted step, in a row but for those that did not move, end the run
MAX_STALLS = 3
PATIENCE = 5  # inner solves in a row that did not lower L before the second step rule
TRAVEL = 0.1  # an inner solve travels where some variable's net displacement is this share of its path
POLISH_AT = 0.7  # share of the step budget after which the second rule takes over in any case


class AugmentedLagrangian(ScaledLagrangian):
    """State and outer loop of one gradient-method run on a :class:`~stackopt.leader.LeaderProblem`."""

    def __init__(self, prob, opts, deadline: float, progress=None):
        super().__init__(prob, opts)
        self.deadline = deadline
        self.history: list[dict] = ReportedHistory(progress)
        self.answers = None  # made once the problem's scales are known (solve)
        self.halvings = self.jumps = self.settled = self.refused = 0
        self.note = ""
        self.switched = None  # the step at which the second step rule took over
        self._path = np.zeros(prob.k.n_p)  # each variable's path length in the current inner solve
        self._solved = False
        # the constraints are stuck at a violation a step can lower: the next inner solve steps
        self._push = False

    # ---------------------------------------------------------------- the loop
    def solve(self, steps) -> MethodOutput:
        """The outer loop over ``steps``: the first step rule, then the second once the
        first stalls (``steps`` may hold one rule only)."""
        o, prob = self.o, self.prob
        first = prob.draw(self.project(prob.k.p0))
        if first.converged:  # tolerances relative to the problem's scales at the start
            self.scale_functions(first)
        self.answers = Answers(prob, self.deadline, self.scales, feasibility_tol=o.feasibility_tol,
                               select=o.select)
        pt = self.answers.checkpoint(first, first=True)
        if pt is None:
            return _no_start(self.answers, self.project(prob.k.p0), self.deadline)
        self.mu = o.mu if o.mu is not None else self.initial_penalty(pt)
        # inner tolerance: tightened tenfold per outer iteration; final at once without constraints
        self.omega = max(o.stationarity_tol, FIRST_INNER_TOL) if prob.n_c else o.stationarity_tol
        rules = list(steps)
        step = self.step = rules.pop(0)
        self.v_prev, stalls, status, idle = np.inf, 0, None, 0
        self.outer = 0
        last = None  # the previous inner solve's start and path
        while status is None:
            before, start = self.value(pt), pt.p
            self._path = np.zeros_like(pt.p)
            pt, status, stalled = self._inner(step, pt, self.omega)
            gain = before - self.value(pt)  # at the multipliers and penalty of this inner solve
            travels = _travels(pt.p - start, self._path, self.scale)
            # two inner solves that together return where they began: the first rule circles
            # between two points, each inner solve lowering L at its multipliers and the
            # multiplier update between them undoing it
            circles = last is not None and not _travels(pt.p - last[0], last[1] + self._path, self.scale)
            last = (start, self._path)
            self.outer += 1
            if status in (None, Status.CONVERGED) and time.perf_counter() < self.deadline:
                settled = prob.settle(pt)  # a tracked branch may stop being an equilibrium
                if settled is not pt and settled.converged:
                    pt, status = settled, None
                    step.reset()
                    self.settled += 1
            # an outer iteration that left the strategy where it was does not end a run of
            # stalls: inner solves that stop at once (counted as solved) between failed
            # searches otherwise alternate with them until the step budget
            stalls = stalls + 1 if stalled else (stalls if np.array_equal(pt.p, start) else 0)
            if status is None and stalls >= MAX_STALLS:
                status = Status.NOT_CONVERGED
                self.note = ("; the line search found no decrease along the projected gradient "
                             f"{MAX_STALLS} times in a row (outer iterations that did not move "
                             "between them aside)")
            stuck = False  # the constraints did not improve over a solved inner problem
            if status is Status.CONVERGED or (status is None and (step.paper or not stalled)):
                stuck = self._update_multipliers(pt, status)
            if status is None:
                status = self._stopped(pt, stuck)
            if status is not Status.TIME_LIMIT and time.perf_counter() < self.deadline:
                pt, status, note = self.answers.scheduled(pt, status, self.outer, step, self.kkt)
                self.note = note or self.note
            # the first rule has stalled once PATIENCE inner solves in a row either did not
            # lower the augmented Lagrangian or only circled a point (no variable's net
            # displacement reached TRAVEL of the longest path, over the inner solve or over it
            # and the one before): the second rule takes over
            idle = idle + 1 if gain <= SAME_OBJECTIVE * self.fscale(pt) or not travels or circles else 0
            late = self.t >= POLISH_AT * o.steps  # the last steps polish in any case
            if status is None and rules and (idle >= PATIENCE or late):
                step, idle = rules.pop(0), 0
                self.step = step
                self.switched = self.t
        return self._output(status, pt)

    def _update_multipliers(self, pt, status) -> bool:
        """Multipliers at the end of every inner solve that did not stall (ALGENCAN: it met
        its tolerance or used its steps), the penalty by :func:`_next_penalty`. Returns
        whether the constraints did not improve enough over a solved inner problem (the
        penalty was raised, or would have been beyond ``MU_MAX``)."""
        o = self.o
        v = self.measure(pt)
        stuck = _stuck(o, v, self.v_prev, status is None and self._solved)
        self.lam = self.multipliers(pt)
        self.mu = _next_penalty(o, self.mu, v, self.v_prev, status is None and self._solved)
        self.v_prev = v
        self.omega = max(o.stationarity_tol, 0.1 * self.omega)
        return stuck

    def _stopped(self, pt, stuck: bool):
        """The status where the run ends after this outer iteration although its stopping
        rule did not hold, else None: ``time_limit`` past the deadline; ``max_iterations``
        once the outer iterations reach ``steps`` (an outer iteration may take no step:
        the budget bounds them too); ``infeasible`` where the constraints are violated and
        stuck (:meth:`_update_multipliers`) at a stationary point of their violation: not
        even its first-order model along the projected steepest descent within the leader's
        set (up to one scale of each variable) falls by ``penalty_decrease``
        (:meth:`violation_model`), so no penalty can bring the iterates to feasibility here
        (Birgin and Martinez, *Practical Augmented Lagrangian Methods*, ch. 6)."""
        o = self.o
        if self.out_of_time():
            return Status.TIME_LIMIT
        if self.outer >= o.steps:
            self.note = f"; {self.outer} outer iterations: the step budget bounds them too"
            return Status.MAX_ITERATIONS
        if not stuck or self.violation(pt) <= o.feasibility_tol:
            return None
        now, model = self.violation_model(pt)
        if model < o.penalty_decrease * now:
            # a step lowers the violation; where the inner solve counts its start as solved
            # (short steps to the bounds are stationary within its tolerance) it takes one
            self._push = True
            return None
        self.note = (f"; infeasible: the leader's constraints cannot be met near this strategy: "
                     f"their scaled violation ({now:.3g}) is stationary over the leader's set (its "
                     f"first-order model along the projected steepest descent falls only to "
                     f"{model:.3g}, not by penalty_decrease) and the inner solve at penalty "
                     f"{self.mu:.3g} did not lower it enough; the strategy with the smallest "
                     "violation found is returned")
        return Status.INFEASIBLE

    def _inner(self, step, pt, omega):
        """Steps on ``L`` until its stationarity is below ``omega`` (relative), or
        ``multiplier_every`` steps; returns ``(point, status or None, stalled)``. After an
        outer iteration stuck at a violation a step can lower, it takes at least one step:
        the penalty alone cannot move a point the tolerance counts as solved."""
        o = self.o
        push, self._push = self._push, False
        for inner in range(o.multiplier_every + 1):
            g = self.grad(pt)
            if not np.isfinite(g).all():  # a singular system with non-finite data here
                return pt, None, True
            st = self.stationarity(pt, g)
            self._record(pt, st)
            fscale = self.fscale(pt)
            if st <= o.stationarity_tol * fscale and self.feasible(pt):
                if self.o.jacobian_every == 1 or self.kkt(pt):
                    return pt, Status.CONVERGED, False
            if (st <= omega * fscale and not (push and inner == 0)) or inner == o.multiplier_every:
                self._solved = st <= omega * fscale
                return pt, None, False
            if self.t >= o.steps:
                return pt, Status.MAX_ITERATIONS, False
            if time.perf_counter() > self.deadline:
                return pt, Status.TIME_LIMIT, False
            done = step.take(self, pt, g)
            self.t += 1
            self.halvings += done.halvings
            self.jumps += done.jumps
            self.refused += done.refused
            new = done.point
            if new is None:
                return pt, None, True
            self._path = self._path + np.abs(new.p - pt.p) / self.scale
            pt = new
            self._moved(pt)
            if o.resample_every and self.t % o.resample_every == 0:
                anchored = self.answers.checkpoint(pt)
                if anchored is not None and anchored is not pt:
                    pt = anchored
                    step.reset()
        return pt, None, False

    def out_of_time(self) -> bool:
        return time.perf_counter() > self.deadline

    def _record(self, pt, st) -> None:
        if self.history and self.history[-1]["step"] == self.t:
            self.history.pop()  # the same step seen again after a multiplier update
        self.history.append(dict(
            step=self.t, leader_objective=pt.objective, violation=pt.violation,
            lagrangian=self.value(pt) if self.mu else pt.f, stationarity=st, mu=self.mu,
            equilibrium_residual=max(e.residual for e in pt.equilibria), fresh=float(pt.fresh)))

    def _moved(self, pt) -> None:
        """After an accepted step: variables without a box take their scale from their
        value, and the iterate may be the best tracked one."""
        if self._any_unbounded:
            self.scale = np.where(self._unbounded, np.maximum(1.0, np.abs(pt.p)), self.scale)
        self.answers.track(pt)

    def _output(self, status, last) -> MethodOutput:
        ans = self.answers
        best, confirmed = ans.select(last)
        note = self.note + confirmed
        if status is Status.CONVERGED and not np.array_equal(best.p, last.p):
            status = Status.NOT_CONVERGED
            note += ("; the stopping rule held at a strategy other than the one returned (an earlier "
                     "strategy evaluated on fresh draws was better)")
        if status is Status.INFEASIBLE and ans.feasible(best):
            status = Status.NOT_CONVERGED
            note += "; an earlier strategy evaluated on fresh draws was feasible: it is returned"
        st = self.history[-1]["stationarity"] if self.history else float("nan")
        switch = "" if self.switched is None else f" (spg from step {self.switched})"
        message = (f"{self.t} steps{switch}; stationarity {st:.3g}; selected strategy: violation "
                   f"{best.violation:.3g}{note}; {ans.reanchors} re-anchorings on fresh draws; "
                   f"leader steps halved {self.halvings} times; {self.jumps} equilibria re-adjusted "
                   f"where their branch ended ({self.refused} refused: worse for the leader); "
                   f"{self.settled} where a follower gained by deviating; "
                   f"{self.prob.cold_starts} cold starts")
        if ans.failed_draws:
            message += f"; fresh draws failed {ans.failed_draws} times"
        return MethodOutput(leader=best.p.copy(), status=status, claimed_objective=best.objective,
                            claimed_violation=best.violation, history=self.history,
                            singular_kkt=self.singular, follower_hint=best.equilibria[0],
                            message=message, work=self.prob.work)


def _stuck(o, v: float, v_prev: float, solved: bool) -> bool:
    """The inner solve met its tolerance (``solved``) and the constraint measure ``v`` did
    not fall enough since the last update (neither to ``feasibility_tol`` nor to
    ``penalty_decrease * v_prev``); an inner solve that used its steps is no evidence."""
    return solved and v > o.feasibility_tol and v > o.penalty_decrease * v_prev


def _next_penalty(o, mu: float, v: float, v_prev: float, solved: bool) -> float:
    """The penalty after a multiplier update: it grows (by ``penalty_growth``, up to
    ``MU_MAX``) where the constraints are stuck (:func:`_stuck`)."""
    if _stuck(o, v, v_prev, solved):
        return min(mu * o.penalty_growth, MU_MAX)
    return mu


def _no_start(answers, p0, deadline: float) -> MethodOutput:
    """The result where no fresh draw converged at the initial strategy ``p0``."""
    late = time.perf_counter() >= deadline
    why = answers.failure or "the equilibrium oracle did not converge"
    status = (Status.TIME_LIMIT if late else
              Status.INFEASIBLE if "no feasible point" in answers.failure else Status.NOT_CONVERGED)
    return MethodOutput(leader=p0, status=status, work=answers.prob.work, message=(
        f"no start: at the initial strategy {why}" + (" (the time limit was reached)" if late else "")))


def _travels(net, path, scale) -> bool:
    """Whether some variable's net displacement ``net`` (in its ``scale``) reached ``TRAVEL``
    of the longest ``path`` (already in scale units)."""
    return np.max(np.abs(net) / scale, initial=0.0) >= TRAVEL * np.max(path, initial=0.0)
