"""The gradient method's merit function: the scaled augmented Lagrangian of the leader's problem.

The leader's problem ``min f(p) s.t. g(p) <= 0`` through the followers'
equilibria (:mod:`stackopt.leader.problem`), in the PHR form
``L = wf f + sum(max(0, lam + mu wc g)^2 - lam^2) / (2 mu)`` with the
problem's own scales ``wf = 1 / m_f``, ``wc = 1 / m_c`` (:class:`Scales`: each
function divided by its magnitude at the start, ALGENCAN's gradient scaling
without its floor of one, so that a problem and its copy with the objective or
a constraint multiplied by any positive factor are the same scaled problem),
and the first-order measures of the stopping rule: the scaled projected
gradient of ``L`` and the constraint measure ``||max(wc g, -lam/mu)||_inf``.
Variables are measured in their scales (:func:`variable_scale`).
"""
from __future__ import annotations

import numpy as np

from stackopt.leader import Scales, problem_scales, variable_scale

MU_RANGE = (1e-8, 1e8)  # ALGENCAN's bounds on the automatic initial penalty
MODEL_STEPS = 30  # points of the violation's model along its projected path (halving lengths)


class ScaledLagrangian:
    """The merit function of one gradient-method run on a
    :class:`~stackopt.leader.LeaderProblem` ``prob`` with the method's options ``opts``."""

    def __init__(self, prob, opts):
        self.prob, self.o = prob, opts
        k = prob.k
        self.scale = variable_scale(k)
        self._unbounded = ~(np.isfinite(k.p_ub - k.p_lb) & (k.p_ub > k.p_lb))
        self._any_unbounded = bool(self._unbounded.any())
        self.lam = np.zeros(prob.n_c)
        self.mu = 1.0
        self.wf, self.wc = 1.0, np.ones(prob.n_c)
        self.scales = Scales(1.0, np.ones(prob.n_c))
        self.t = 0  # steps taken (the gradient reuse of jacobian_every counts them)
        self.singular = False
        self.step = None  # the step rule in use (its held variables count as stationary)
        self._last_lins: list = []  # the factorisations of the last gradient's equilibria

    def project(self, y, metric=None) -> np.ndarray:
        """Nearest point of the leader's set in the norm ``||(p - y) / metric||`` (default:
        the variables' scales)."""
        return self.prob.leader_set.project(y, self.scale if metric is None else metric)

    def scale_functions(self, pt) -> Scales:
        """The objective and each constraint divided by its magnitude at the start ``pt``
        (:func:`problem_scales`); returns the scales."""
        self.scales = problem_scales(self.prob, pt, self.scale)
        self.wf = 1.0 / self.scales.objective
        self.wc = 1.0 / self.scales.constraints
        return self.scales

    def multipliers(self, pt) -> np.ndarray:
        """``max(0, lam + mu g)`` of the scaled constraints."""
        return np.maximum(0.0, self.lam + self.mu * self.wc * pt.cons)

    def value(self, pt) -> float:
        """The augmented Lagrangian of the scaled problem."""
        return float(self.wf * pt.f + (self.multipliers(pt) ** 2 - self.lam ** 2).sum() / (2 * self.mu))

    def measure(self, pt) -> float:
        """Feasibility and complementarity of the scaled constraints: ``||max(g, -lam/mu)||_inf``."""
        return float(np.abs(np.maximum(self.wc * pt.cons, -self.lam / self.mu)).max(initial=0.0))

    def violation(self, pt) -> float:
        """The largest violation at ``pt``, each constraint in its scale."""
        return self.scales.violation(pt.cons)

    def feasible(self, pt) -> bool:
        """The stopping rule's feasibility part: the measure (the violation of each constraint
        in its scale, and complementarity) at most ``feasibility_tol``."""
        return self.measure(pt) <= self.o.feasibility_tol

    def fscale(self, pt) -> float:
        return max(1.0, abs(self.wf * pt.f))

    def grad(self, pt, exact: bool = False) -> np.ndarray:
        """The gradient of ``L`` at ``pt`` (kept with the point for the current multipliers
        and penalty only: one array per point however often they change)."""
        key = (self.lam.tobytes(), self.mu)
        held = pt.cache.get("grad")
        if held is None or held[0] != key:
            reuse = (not exact and self.o.jacobian_every > 1 and self.t % self.o.jacobian_every
                     and len(self._last_lins) == len(pt.equilibria))
            lins = self.prob.linearize(pt, reuse=self._last_lins if reuse else None)
            held = pt.cache["grad"] = key, self.wf * self.prob.gradient(
                pt, self.multipliers(pt) * self.wc / self.wf)
            self._last_lins = lins
            self.singular |= any(lin.singular for lin in lins)
        return held[1]

    def stationarity(self, pt, g) -> float:
        """The scaled projected gradient ``||(P(p - s^2 g) - p) / s||_inf``; variables the
        step rule holds on a kink of ``L`` (see :class:`~stackopt.methods.gradient.steps.SpgStep`) count
        as stationary."""
        s = self.scale
        held = getattr(self.step, "held", None)
        if held is not None and held.any():
            g = np.where(held, 0.0, g)
        return float(np.abs((self.project(pt.p - s * s * g) - pt.p) / s).max(initial=0.0))

    def violation_model(self, pt) -> tuple[float, float]:
        """``(V, V1)``: the scaled violation ``V = ||max(wc g, 0)||_2`` at ``pt`` and the least
        value of its first-order model along the projected steepest-descent path of ``V^2 / 2``
        (in the variables' scales, projected onto the leader's set) within one scale of every
        variable (``MODEL_STEPS`` points, halving from there). ``V1`` close to ``V`` says no
        direction within the set lowers the violation to first order: a stationary point of
        the violation."""
        plus = np.maximum(self.wc * pt.cons, 0.0)
        norm = float(np.linalg.norm(plus))
        if norm == 0.0:
            return 0.0, 0.0
        _, J = self.prob.jacobian(pt)
        J = self.wc[:, None] * J
        s = self.scale
        g = plus @ J  # gradient of V^2 / 2
        reach = float(np.max(np.abs(s * g), initial=0.0))
        if not np.isfinite(reach) or reach == 0.0:
            return norm, norm
        best = norm
        for k in range(MODEL_STEPS):
            d = self.project(pt.p - 0.5 ** k / reach * s * s * g) - pt.p
            best = min(best, float(np.linalg.norm(np.maximum(self.wc * pt.cons + J @ d, 0.0))))
        return norm, best

    def kkt(self, pt) -> bool:
        """The stopping rule with exact gradients, at ``pt``."""
        st = self.stationarity(pt, self.grad(pt, exact=True))
        return st <= self.o.stationarity_tol * self.fscale(pt) and self.feasible(pt)

    def initial_penalty(self, pt) -> float:
        plus = np.maximum(self.wc * pt.cons, 0.0)
        mu = 10.0 * self.fscale(pt) / max(1.0, 0.5 * float(plus @ plus))
        return float(np.clip(mu, *MU_RANGE))
