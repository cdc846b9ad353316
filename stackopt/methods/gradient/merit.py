"""The gradient method's merit function: the scaled augmented Lagrangian of the reduced problem.

The leader's problem ``min f(p) s.t. g(p) <= 0`` through the followers'
equilibria (:mod:`stackopt.leader.reduced`), in the PHR form
``L = wf f + sum(max(0, lam + mu wc g)^2 - lam^2) / (2 mu)`` with ALGENCAN's
scaling ``wf``, ``wc`` (the objective and each constraint divided by the
largest entry of its gradient in scaled variables at the start), and the
first-order measures of the stopping rule: the scaled projected gradient of
``L`` and the constraint measure ``||max(wc g, -lam/mu)||_inf``. Variables are
measured in their scales (:func:`variable_scale`).
"""
from __future__ import annotations

import numpy as np

from stackopt.leader import variable_scale
from stackopt.oracle import sensitivity

MU_RANGE = (1e-8, 1e8)  # ALGENCAN's bounds on the automatic initial penalty


class ScaledLagrangian:
    """The merit function of one gradient-method run on a
    :class:`~stackopt.leader.reduced.ReducedProblem` ``prob`` with the method's options ``opts``."""

    def __init__(self, prob, opts):
        self.prob, self.o = prob, opts
        k = prob.k
        self.scale = variable_scale(k)
        self._unbounded = ~(np.isfinite(k.p_ub - k.p_lb) & (k.p_ub > k.p_lb))
        self.lam = np.zeros(prob.n_c)
        self.mu = 1.0
        self.wf, self.wc = 1.0, np.ones(prob.n_c)
        self.t = 0  # steps taken (the gradient reuse of jacobian_every counts them)
        self.singular = False
        self.step = None  # the step rule in use (its held variables count as stationary)
        self._last_sens: list = []

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
        step rule holds on a kink of ``L`` (see :class:`~stackopt.methods.gradient.steps.SpgStep`) count
        as stationary."""
        s = self.scale
        held = getattr(self.step, "held", None)
        if held is not None and held.any():
            g = np.where(held, 0.0, g)
        return float(np.max(np.abs((self.project(pt.p - s * s * g) - pt.p) / s), initial=0.0))

    def kkt(self, pt) -> bool:
        """The stopping rule with exact gradients, at ``pt``."""
        st = self.stationarity(pt, self.grad(pt, exact=True))
        return st <= self.o.stationarity_tol * self.fscale(pt) and self.feasible(pt)

    def initial_penalty(self, pt) -> float:
        plus = np.maximum(self.wc * pt.cons, 0.0)
        mu = 10.0 * self.fscale(pt) / max(1.0, 0.5 * float(plus @ plus))
        return float(np.clip(mu, *MU_RANGE))
