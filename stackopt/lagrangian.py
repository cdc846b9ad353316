"""The augmented Lagrangian outer loop of the gradient method (see :mod:`stackopt.gradient`)."""
from __future__ import annotations

import time

import numpy as np

from .answers import SAME_OBJECTIVE, Answers
from .implicit import sensitivity
from .methods import MethodOutput
from .result import Status

MU_RANGE = (1e-8, 1e8)  # ALGENCAN's bounds on the automatic initial penalty
MU_MAX = 1e20  # the penalty stops growing here
FIRST_INNER_TOL = 1e-2  # the first inner solve's stationarity tolerance, relative like the final one
MAX_STALLS = 3  # outer iterations in a row without an accepted step end the run
PATIENCE = 5  # inner solves in a row that did not lower L before the second step rule
TRAVEL = 0.1  # an inner solve travels where some variable's net displacement is this share of its path
POLISH_AT = 0.5  # share of the step budget after which the second rule takes over in any case
STOCHASTIC_PATIENCE = 5  # checkpoints without a better answer on fresh draws end a sampled run
IMPROVEMENT = 1e-4  # relative improvement of the best answer on fresh draws that counts


def variable_scale(kernel, p=None) -> np.ndarray:
    """Box width where both bounds are finite (and apart), else ``max(1, |p|)`` (``p``
    defaults to the leader's initial values): steps relative to the value itself where
    no box says how far a variable may go."""
    width = kernel.p_ub - kernel.p_lb
    bounded = np.isfinite(width) & (width > 0)
    return np.where(bounded, width, np.maximum(1.0, np.abs(kernel.p0 if p is None else p)))


class AugmentedLagrangian:
    """State and outer loop of one gradient-method run on a :class:`~stackopt.reduced.ReducedProblem`."""

    def __init__(self, prob, opts, deadline: float):
        self.prob, self.o, self.deadline = prob, opts, deadline
        k = prob.k
        self.scale = variable_scale(k)
        self._unbounded = ~(np.isfinite(k.p_ub - k.p_lb) & (k.p_ub > k.p_lb))
        self.lam = np.zeros(prob.n_c)
        self.mu = 1.0
        self.wf, self.wc = 1.0, np.ones(prob.n_c)
        self.t = 0
        self.history: list[dict] = []
        self.answers = Answers(prob, opts, deadline)
        self.halvings = self.jumps = self.settled = 0
        self.singular = False
        self.note = ""
        self.switched = None  # the step at which the second step rule took over
        self._path = np.zeros(k.n_p)  # each variable's path length in the current inner solve
        self._solved = False
        self._last_sens: list = []
        self.step = None  # the step rule in use

    # ------------------------------------------------------------ the function
    def project(self, y, metric=None) -> np.ndarray:
        """Nearest point of the leader's set in the norm ``||(p - y) / metric||`` (default:
        the variables' scales)."""
        return self.prob.leader_set.project(y, self.scale if metric is None else metric)

    def scale_functions(self, pt) -> None:
        """ALGENCAN's scaling: the objective and each constraint divided by the largest
        entry of its (scaled-variable) gradient at the start, where that exceeds one."""
        gf, J = self.prob.jacobian(pt)
        self.wf = 1.0 / max(1.0, float(np.max(np.abs(gf * self.scale), initial=0.0)))
        self.wc = 1.0 / np.maximum(1.0, np.max(np.abs(J * self.scale), axis=1, initial=0.0))

    def multipliers(self, pt) -> np.ndarray:
        """``max(0, lam + mu g)`` of the scaled constraints."""
        return np.maximum(0.0, self.lam + self.mu * self.wc * pt.cons)

    def value(self, pt) -> float:
        """The augmented Lagrangian of the scaled problem."""
        return float(self.wf * pt.f + np.sum(self.multipliers(pt) ** 2 - self.lam ** 2) / (2 * self.mu))

    def measure(self, pt) -> float:
        """Feasibility and complementarity of the scaled constraints: ``||max(g, -lam/mu)||_inf``."""
        return float(np.max(np.abs(np.maximum(self.wc * pt.cons, -self.lam / self.mu)), initial=0.0))

    def feasible(self, pt) -> bool:
        """The stopping rule's feasibility part: the user's violation and the scaled measure."""
        return pt.violation <= self.o.feasibility_tol and self.measure(pt) <= self.o.feasibility_tol

    def fscale(self, pt) -> float:
        return max(1.0, abs(self.wf * pt.f))

    def grad(self, pt, exact: bool = False) -> np.ndarray:
        key = ("grad", self.lam.tobytes(), self.mu)
        if key not in pt.cache:
            reuse = (not exact and self.o.jacobian_every > 1 and self.t % self.o.jacobian_every
                     and len(self._last_sens) == len(pt.equilibria))
            if reuse:
                for e, old in zip(pt.equilibria, self._last_sens):
                    sensitivity(self.prob.k, e, reuse=old)
            pt.cache[key] = self.wf * self.prob.gradient(pt, self.multipliers(pt) * self.wc / self.wf)
            self._last_sens = [sensitivity(self.prob.k, e) for e in pt.equilibria]
            self.singular |= any(s.singular for s in self._last_sens)
        return pt.cache[key]

    def stationarity(self, pt, g) -> float:
        """The scaled projected gradient ``||(P(p - s^2 g) - p) / s||_inf``; variables the
        step rule holds on a kink of ``L`` (see :class:`~stackopt.steps.SpgStep`) count
        as stationary."""
        s = self.scale
        held = getattr(self.step, "held", None)
        if held is not None and held.any():
            g = np.where(held, 0.0, g)
        return float(np.max(np.abs((self.project(pt.p - s * s * g) - pt.p) / s), initial=0.0))

    # ---------------------------------------------------------------- the loop
    def solve(self, steps) -> MethodOutput:
        """The outer loop over ``steps``: the first step rule, then the second once the
        first stalls (``steps`` may hold one rule only)."""
        o, prob = self.o, self.prob
        ans = self.answers
        pt = ans.checkpoint(prob.draw(self.project(prob.k.p0)), first=True)
        if pt is None:
            late = time.perf_counter() >= self.deadline
            why = f": {ans.failure}" if ans.failure else ""
            infeasible = "no feasible point" in ans.failure
            return MethodOutput(leader=self.project(prob.k.p0),
                                status=Status.TIME_LIMIT if late else
                                Status.INFEASIBLE if infeasible else Status.NOT_CONVERGED,
                                message="the equilibrium oracle did not converge at the initial strategy"
                                        + (" within the time limit" if late else "") + why)
        self.scale_functions(pt)
        self.mu = o.mu if o.mu is not None else self._initial_penalty(pt)
        # inner tolerance: tightened tenfold per outer iteration; final at once without constraints
        omega = max(o.stationarity_tol, FIRST_INNER_TOL) if prob.n_c else o.stationarity_tol
        rules = list(steps)
        step = self.step = rules.pop(0)
        v_prev, stalls, status, idle = np.inf, 0, None, 0
        outer, next_check, interval = 0, 1, 1
        best_fresh, no_gain = ans.best_fresh(), 0
        while status is None:
            before, start = self.value(pt), pt.p
            self._path = np.zeros_like(pt.p)
            pt, status, stalled = self._inner(step, pt, omega)
            gain = before - self.value(pt)  # at the multipliers and penalty of this inner solve
            net = np.abs(pt.p - start) / self.scale
            travels = np.max(net, initial=0.0) >= TRAVEL * np.max(self._path, initial=0.0)
            outer += 1
            if status in (None, Status.CONVERGED) and time.perf_counter() < self.deadline:
                settled = prob.settle(pt)  # a tracked branch may stop being an equilibrium
                if settled is not pt and settled.converged:
                    pt, status = settled, None
                    step.reset()
                    self.settled += 1
            stalls = stalls + 1 if stalled else 0
            if status is None and stalls >= MAX_STALLS:
                status = Status.NOT_CONVERGED
                self.note = ("; the line search found no decrease along the projected gradient "
                             f"{MAX_STALLS} times in a row")
            # multipliers at the end of every inner solve that did not stall (ALGENCAN: met
            # its tolerance or used its steps); the penalty grows where an inner solve met
            # its tolerance and the constraint measure did not fall enough since the last
            # update (an inner solve that used its steps is no evidence against mu)
            if status is Status.CONVERGED or (status is None and (step.paper or not stalled)):
                v = self.measure(pt)
                self.lam = self.multipliers(pt)
                if status is None and self._solved and v > o.feasibility_tol and v > o.penalty_decrease * v_prev:
                    self.mu = min(self.mu * o.penalty_growth, MU_MAX)
                v_prev = v
                omega = max(o.stationarity_tol, 0.1 * omega)
            # fresh draws at every outer iteration while they move the equilibria, then at
            # ever longer intervals while they agree with the tracked ones, and at the end
            if (status is not Status.TIME_LIMIT and time.perf_counter() < self.deadline
                    and (status is not None or outer >= next_check) and not ans.checked(pt)):
                anchored = ans.checkpoint(pt)
                if anchored is not None and anchored is not pt:  # the followers play other equilibria
                    pt = anchored
                    step.reset()
                    interval = 1
                    if status is Status.CONVERGED and not self._kkt(pt):
                        status = None
                else:
                    interval *= 2
                next_check = outer + interval
                # with several equilibria per step no KKT point is ever certified: stop once
                # STOCHASTIC_PATIENCE checkpoints in a row did not improve on fresh draws
                now = ans.best_fresh()
                improved = best_fresh - now > IMPROVEMENT * max(1.0, abs(now))
                best_fresh, no_gain = min(best_fresh, now), 0 if improved else no_gain + 1
                if status is None and prob.samples > 1 and no_gain >= STOCHASTIC_PATIENCE:
                    status = Status.NOT_CONVERGED
                    self.note = (f"; stopped: {STOCHASTIC_PATIENCE} evaluations on fresh draws in a "
                                 "row without improvement")
            # the first rule has stalled once PATIENCE inner solves in a row either did not
            # lower the augmented Lagrangian or only circled a point (no variable's net
            # displacement reached TRAVEL of the longest path): the second rule takes over
            idle = idle + 1 if gain <= SAME_OBJECTIVE * self.fscale(pt) or not travels else 0
            late = self.t >= POLISH_AT * o.steps  # the last steps polish in any case
            if status is None and rules and (idle >= PATIENCE or late):
                step, idle = rules.pop(0), 0
                self.step = step
                self.switched = self.t
        return self._output(status, pt)

    def _inner(self, step, pt, omega):
        """Steps on ``L`` until its stationarity is below ``omega`` (relative), or
        ``multiplier_every`` steps; returns ``(point, status or None, stalled)``."""
        o = self.o
        for inner in range(o.multiplier_every + 1):
            g = self.grad(pt)
            if not np.all(np.isfinite(g)):  # a singular system with non-finite data here
                return pt, None, True
            st = self.stationarity(pt, g)
            self._record(pt, st)
            fscale = self.fscale(pt)
            if st <= o.stationarity_tol * fscale and self.feasible(pt):
                if self.o.jacobian_every == 1 or self._kkt(pt):
                    return pt, Status.CONVERGED, False
            if st <= omega * fscale or inner == o.multiplier_every:
                self._solved = st <= omega * fscale
                return pt, None, False
            if self.t >= o.steps:
                return pt, Status.MAX_ITERATIONS, False
            if time.perf_counter() > self.deadline:
                return pt, Status.TIME_LIMIT, False
            new = step.take(self, pt, g)
            self.t += 1
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

    def _kkt(self, pt) -> bool:
        """The stopping rule with exact gradients, at ``pt``."""
        st = self.stationarity(pt, self.grad(pt, exact=True))
        return st <= self.o.stationarity_tol * self.fscale(pt) and self.feasible(pt)

    def _initial_penalty(self, pt) -> float:
        plus = np.maximum(self.wc * pt.cons, 0.0)
        mu = 10.0 * self.fscale(pt) / max(1.0, 0.5 * float(plus @ plus))
        return float(np.clip(mu, *MU_RANGE))

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
        if self._unbounded.any():
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
        st = self.history[-1]["stationarity"] if self.history else float("nan")
        switch = "" if self.switched is None else f" (spg from step {self.switched})"
        message = (f"{self.t} steps{switch}; stationarity {st:.3g}; selected strategy: violation "
                   f"{best.violation:.3g}{note}; {ans.reanchors} re-anchorings on fresh draws; "
                   f"leader steps halved {self.halvings} times; {self.jumps} equilibria re-adjusted "
                   f"where their branch ended; {self.settled} where a follower gained by deviating; "
                   f"{self.prob.cold_starts} cold starts")
        if ans.failed_draws:
            message += f"; fresh draws failed {ans.failed_draws} times"
        return MethodOutput(leader=best.p.copy(), status=status, claimed_objective=best.objective,
                            claimed_violation=best.violation, history=self.history,
                            singular_kkt=self.singular, follower_hint=best.equilibria[0],
                            message=message)
