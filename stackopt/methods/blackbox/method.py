"""Black-box baselines: scipy optimisers over the leader's variables, the oracle inside.

As in the paper's baselines, the followers' equilibrium is treated as a black
box: every evaluation of the leader's objective or constraints at a leader
strategy ``p`` asks the equilibrium oracle for ``x*(p)``, and derivatives are
finite differences of those evaluations. Registered methods:

* ``slsqp``: ``scipy.optimize.minimize(method="SLSQP")``;
* ``trust-region``: ``scipy.optimize.minimize(method="trust-constr")``
  (alias ``trust-constr``);

Bounds are the leader's variable bounds; the leader's constraints
``body(x*(p), p) <= 0`` become nonlinear inequality constraints. The optimiser sees the
objective and each constraint divided by its magnitude at its start
(:func:`~stackopt.leader.function_scales`: the larger of the value and the largest
finite-difference derivative times the variable's scale, as the gradient methods measure
them; rounded to a power of two, so that the division is exact), so that its tolerances
(``ftol``, ``gtol``) and ``feasibility_tol`` mean the same whatever the units: the
objective or a constraint multiplied by any positive factor gives the same answer to
those tolerances. The functions of ``p`` are a :class:`~stackopt.leader.LeaderProblem`'s
evaluations (:meth:`~stackopt.leader.LeaderProblem.evaluate`, whichever equilibrium the
oracle finds) and their finite differences: points are cached by leader strategy and every
oracle call is warm-started from the cached equilibrium nearest to the new strategy,
so a finite-difference sweep costs one or two Newton steps per coordinate.

Time limit: it is checked at every call scipy makes (a new point's oracle call
gets at most the time left), and the optimiser runs in a forked child process
(``isolate``, :mod:`stackopt.methods.blackbox.isolate`) that reports its best point
as it goes, so the limit also holds while scipy is inside compiled code (SLSQP's QP,
which can take tens of seconds in one call), and Ctrl-C stops the child at once.
When the limit is reached the best point evaluated so far (feasible first,
then lowest objective) is returned with status ``TIME_LIMIT``.
"""
from __future__ import annotations

import multiprocessing as mp
import time
import warnings

import numpy as np
from pyomo.common.config import (
    Bool,
    ConfigDict,
    ConfigValue,
    In,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)

from stackopt.core import Status
from stackopt.kernel import kernel_of
from stackopt.leader import LeaderProblem, Scales, TimeUp, function_scales, variable_scale
from stackopt.oracle import EquilibriumOracle

from ..registry import Method, MethodOutput, ReportedHistory, register_method
from .isolate import isolated


def _common_config() -> ConfigDict:
    cfg = ConfigDict()
    cfg.declare("maxiter", ConfigValue(default=100, domain=PositiveInt,
                                       doc="maximum iterations of the scipy optimiser"))
    cfg.declare("fd_step", ConfigValue(default=1e-6, domain=PositiveFloat,
                                       doc="finite-difference step, relative: "
                                           "h_j = fd_step * max(1, |p_j|)"))
    cfg.declare("fd_scheme", ConfigValue(default="forward", domain=In(["forward", "central"]),
                                         doc="finite differences: 'forward' (n_p oracle calls per "
                                             "gradient) or 'central' (2 n_p)"))
    cfg.declare("oracle_tol", ConfigValue(default=1e-11, domain=PositiveFloat,
                                          doc="equilibrium oracle tolerance (KKT residual, inf-norm, "
                                              "in the followers' units: see stackopt.oracle)"))
    cfg.declare("oracle_time_limit", ConfigValue(default=30.0, domain=PositiveFloat,
                                                 doc="seconds allowed for one oracle call"))
    cfg.declare("feasibility_tol", ConfigValue(default=1e-6, domain=NonNegativeFloat,
                                               doc="constraint violation counted as feasible when "
                                                   "choosing the best point found, each constraint "
                                                   "relative to its magnitude at the start"))
    cfg.declare("cache_size", ConfigValue(default=64, domain=PositiveInt,
                                          doc="equilibria kept for warm starts"))
    cfg.declare("isolate", ConfigValue(default=True, domain=Bool,
                                       doc="run the optimiser in a forked child process, so that "
                                           "the time limit holds inside scipy's compiled code and "
                                           "Ctrl-C stops it at once"))
    cfg.declare("kill_grace", ConfigValue(default=0.5, domain=NonNegativeFloat,
                                          doc="seconds after the time limit before the child "
                                              "process is stopped (it stops by itself at the limit "
                                              "unless scipy is inside compiled code)"))
    return cfg


# --------------------------------------------------------------------- methods
class _ScipyMethod(Method):
    """Shared driver: run one scipy optimiser over the leader's variables.

    The optimiser runs in a forked child process that reports its best point
    as it goes: scipy's SLSQP solves its QP in compiled code holding the GIL
    (about 30 s per iteration with 3000 leader variables, as NFG(3,10) has;
    one call took 49 s there), so a check between oracle calls alone can keep
    neither the limit nor Ctrl-C.
    The parent stops the child ``kill_grace`` seconds after the limit, or at
    once on KeyboardInterrupt, and returns the best point reported.
    Without ``fork`` (or inside a daemonic process, which may not start
    children) the optimiser runs in-process and the limit is checked at every
    call scipy makes.
    """

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        start = time.perf_counter()
        deadline = start + time_limit if time_limit is not None else float("inf")
        kernel_of(game)  # compile once in the parent; the child inherits it
        if (not config.isolate or "fork" not in mp.get_all_start_methods()
                or mp.current_process().daemon):  # daemonic processes may not have children
            return self._optimise(game, config, seed, start, deadline, None)
        return isolated(lambda report: self._optimise(game, config, seed, start, deadline, report),
                         deadline + float(config.kill_grace), time_limit,
                         kernel_of(game).p0.copy(), self.progress)

    def _optimise(self, game, config, seed, start, deadline, report) -> MethodOutput:
        box = _ScipyView(game, config, seed, deadline)
        k = box.kernel
        p0 = k.p0.copy()
        history: list[dict[str, float]] = [] if report is not None else ReportedHistory(self.progress)
        if report is not None:
            box.on_best = lambda pt: report("best", _best_payload(box, pt))

        def record(p):
            pt = box.evaluate(p)
            entry = {"iteration": float(len(history) + 1), "objective": box.sign * pt.f,
                     "violation": _violation(pt), "oracle_calls": float(box.prob.calls),
                     "time_s": time.perf_counter() - start}
            history.append(entry)
            if report is not None:
                report("history", entry)
                report("best", _best_payload(box, box.best))

        try:
            first = box.evaluate(p0)
            why = k.undefined(first.f, first.bodies) if first.found else ""
            if why:
                return self._output(box, None, Status.NOT_CONVERGED, history, (
                    f"no start: at the initial strategy the followers' equilibrium was found, but {why}"))
            start_p = self._start(k, p0, config)
            box.measure(start_p)  # the objective's and the constraints' scales at the start
            res = self._minimize(box, start_p, config, record)
        except TimeUp:
            return self._output(box, box.best, Status.TIME_LIMIT, history,
                                f"time limit of {deadline - start:g} s reached; best point "
                                "evaluated so far")
        status, message = self._status(res)
        try:
            final = box.evaluate(np.clip(res.x, k.p_lb, k.p_ub))
        except TimeUp:
            final, status = box.best, Status.TIME_LIMIT
            message += "; time limit reached before the final point was evaluated, best point returned"
        return self._output(box, final, status, history, message)

    def _output(self, box, pt, status, history, message) -> MethodOutput:
        prob = box.prob
        if pt is None:  # not even the initial point was evaluated
            p = box.kernel.p0.copy()
            return MethodOutput(leader=p, status=status, message=message, history=history, work=prob.work)
        if prob.failed:
            message += f"; the oracle did not converge at {prob.failed} of {prob.calls} calls"
        return MethodOutput(leader=pt.p.copy(), status=status, claimed_objective=box.sign * pt.f,
                            claimed_violation=_violation(pt),
                            message=message, history=history, follower_hint=pt.x.copy(), work=prob.work)

    def _start(self, k, p0, config) -> np.ndarray:
        """Where the optimiser starts from the leader's initial values ``p0``."""
        return p0

    def _minimize(self, box, p0, config, record):  # pragma: no cover - abstract
        raise NotImplementedError

    def _status(self, res):  # pragma: no cover - abstract
        raise NotImplementedError


@register_method("slsqp")
class SLSQP(_ScipyMethod):
    """Sequential least squares programming (Kraft 1988) over the leader's variables.

    Objective and constraint gradients are finite differences of the
    equilibrium oracle (``fd_step``, ``fd_scheme``).

    Generalized Nash games (shared constraints, follower constraints in any smooth form):
    the followers play the equilibrium of the game's ``shared`` concept, as the oracle
    finds it (Rosen's normalized equilibrium for ``"variational"`` and ``"weighted"``; the
    one the followers' best responses reach for ``"any"``, where the KKT matrix is
    singular on a shared constraint and the result says so: ``singular_kkt``).
    """

    CONFIG = _common_config()
    CONFIG.declare("ftol", ConfigValue(default=1e-10, domain=PositiveFloat,
                                       doc="SLSQP's precision goal for the objective"))

    def _minimize(self, box, p0, config, record):
        from scipy.optimize import Bounds, minimize  # where a solve runs: it costs every import

        k = box.kernel
        cons = []
        if k.n_c:
            cons = [{"type": "ineq", "fun": lambda p: -box.constraints(p),
                     "jac": lambda p: -box.constraint_jacobian(p)}]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return minimize(box.value, p0, jac=box.gradient, method="SLSQP",
                            bounds=Bounds(k.p_lb, k.p_ub), constraints=cons, callback=record,
                            options={"maxiter": int(config.maxiter), "ftol": float(config.ftol)})

    def _status(self, res):
        if res.status == 0:
            return Status.CONVERGED, f"SLSQP: {res.message}"
        if res.status == 9:
            return Status.MAX_ITERATIONS, f"SLSQP: {res.message}"
        return Status.NOT_CONVERGED, f"SLSQP status {res.status}: {res.message}"


@register_method("trust-region", "trust-constr")
class TrustRegion(_ScipyMethod):
    """scipy's ``trust-constr`` (Byrd-Omojokun trust region SQP / interior point).

    Gradients are finite differences of the equilibrium oracle; Hessians of the
    objective and constraints are BFGS approximations. The constraints' Jacobian is
    passed sparse (``sparse_jacobian``), with the leader's bounds, which trust-constr
    adds as one identity row each: its projections then factorise the sparse augmented
    system, where a dense Jacobian makes them a dense QR of the ``(n_c + n_p) x
    (n_c + 2 n_p)`` matrix, which took 11-160 s in compiled code at NFG(3,10)'s
    3000 leader variables, past any time limit checked between calls.

    Generalized Nash games (shared constraints, follower constraints in any smooth form):
    the followers play the equilibrium of the game's ``shared`` concept, as the oracle
    finds it (Rosen's normalized equilibrium for ``"variational"`` and ``"weighted"``; the
    one the followers' best responses reach for ``"any"``, where the KKT matrix is
    singular on a shared constraint and the result says so: ``singular_kkt``).
    """

    CONFIG = _common_config()
    CONFIG.declare("gtol", ConfigValue(default=1e-11, domain=PositiveFloat,
                                       doc="tolerance on the Lagrangian gradient norm (objective and "
                                           "constraints divided by their magnitudes at the start; "
                                           "a looser one leaves the answer further inside an "
                                           "active bound)"))
    CONFIG.declare("xtol", ConfigValue(default=1e-10, domain=PositiveFloat,
                                       doc="tolerance on the trust-region radius"))
    CONFIG.declare("initial_tr_radius", ConfigValue(default=1.0, domain=PositiveFloat,
                                                    doc="initial trust-region radius"))
    CONFIG.declare("initial_barrier_parameter", ConfigValue(
        default=1e-6, domain=PositiveFloat,
        doc="initial barrier parameter of the interior-point phase, in the scaled functions "
            "(scipy's default 0.1 leaves the result inside an active bound or constraint, by about "
            "this parameter over the constraint's multiplier: trust-constr stops once a barrier "
            "subproblem meets gtol)"))
    CONFIG.declare("initial_barrier_tolerance", ConfigValue(
        default=1e-6, domain=PositiveFloat, doc="initial tolerance of the barrier subproblem"))
    CONFIG.declare("interior_shift", ConfigValue(
        default=1e-3, domain=PositiveFloat,
        doc="a start on a bound is moved this fraction of the bound range (or this much where "
            "the range is infinite) inside: the interior-point method stalls on its boundary"))

    def _minimize(self, box, p0, config, record):
        from scipy.optimize import BFGS, Bounds, NonlinearConstraint, minimize

        k = box.kernel
        cons = []
        if k.n_c:
            cons = [NonlinearConstraint(box.constraints, -np.inf, 0.0,
                                        jac=box.constraint_jacobian, hess=BFGS())]
        bounds = (Bounds(k.p_lb, k.p_ub, keep_feasible=True)
                  if np.any(np.isfinite(k.p_lb) | np.isfinite(k.p_ub)) else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return minimize(box.value, p0, jac=box.gradient, hess=BFGS(), method="trust-constr",
                            bounds=bounds, constraints=cons,
                            callback=lambda p, state: record(p),
                            options={"maxiter": int(config.maxiter), "gtol": float(config.gtol),
                                     "xtol": float(config.xtol),
                                     "initial_tr_radius": float(config.initial_tr_radius),
                                     "initial_barrier_parameter":
                                         float(config.initial_barrier_parameter),
                                     "initial_barrier_tolerance":
                                         float(config.initial_barrier_tolerance),
                                     "verbose": 0, "sparse_jacobian": True})

    def _start(self, k, p0, config) -> np.ndarray:
        return _interior(p0, k.p_lb, k.p_ub, config.interior_shift)

    def _status(self, res):
        if res.status in (1, 2):
            return Status.CONVERGED, f"trust-constr: {res.message}"
        if res.status == 0:
            return Status.MAX_ITERATIONS, f"trust-constr: {res.message}"
        return Status.NOT_CONVERGED, f"trust-constr status {res.status}: {res.message}"


class _ScipyView:
    """What scipy's optimisers see of a :class:`~stackopt.leader.LeaderProblem` on one
    equilibrium: ``value(p)`` (minimisation form), ``constraints(p)`` (every leader
    constraint's body, ``<= 0`` feasible) and their finite-difference derivatives
    ``gradient(p)``, ``constraint_jacobian(p)``, each divided by its scale once
    :meth:`measure` took them (:attr:`scales`); repeated calls at the same ``p`` cost
    nothing, and any call past ``deadline`` raises :class:`~stackopt.leader.TimeUp`. It
    keeps the best point evaluated so far (feasible first, each constraint in its scale,
    then lowest objective) and calls ``on_best`` with a new best (throttled), if set."""

    def __init__(self, game, config, seed: int, deadline: float):
        self.kernel = k = kernel_of(game)
        self.config = config
        self.sign = 1.0 if k.leader_sense == 1 else -1.0  # pyo.minimize == 1
        oracle = EquilibriumOracle(k, tol=config.oracle_tol, time_limit=float(config.oracle_time_limit))
        self.prob = LeaderProblem(k, oracle, np.random.default_rng(seed), deadline=deadline,
                                  cache=config.cache_size)
        self.scales = Scales(1.0, np.ones(k.n_c))
        self.best = None
        self.on_best = None
        self._last_report = -np.inf

    def measure(self, p) -> None:
        """Take the objective's and the constraints' scales at ``p`` (the optimiser's start),
        each rounded to a power of two: dividing by it is exact, and a function whose
        magnitude is about one is seen as it is written (its finite-difference derivatives
        would otherwise perturb it by their error)."""
        pt = self.evaluate(p)
        g, J = self._derivatives(p)
        m = function_scales(pt.f, pt.bodies, g, J, variable_scale(self.kernel))
        self.scales = Scales(float(_power_of_two(m.objective)), _power_of_two(m.constraints))

    def evaluate(self, p):
        pt = self.prob.evaluate(p)
        self._consider(pt)
        return pt

    def _consider(self, pt) -> None:
        if not np.isfinite(pt.f):
            return
        if self.best is None or self._better(pt, self.best):
            self.best = pt
            now = time.perf_counter()
            if self.on_best is not None and now - self._last_report >= 0.1:
                self._last_report = now
                self.on_best(pt)

    def _better(self, a, b) -> bool:
        tol = self.config.feasibility_tol
        va, vb = self.scales.violation(a.bodies), self.scales.violation(b.bodies)
        fa, fb = va <= tol, vb <= tol
        if fa != fb:
            return fa
        if fa:
            return a.f < b.f
        return va < vb

    # ------------------------------------------ scipy callbacks, in the scales
    def value(self, p) -> float:
        return self.evaluate(p).f / self.scales.objective

    def constraints(self, p) -> np.ndarray:
        return self.evaluate(p).bodies / self.scales.constraints

    def gradient(self, p) -> np.ndarray:
        return self._derivatives(p)[0] / self.scales.objective

    def constraint_jacobian(self, p) -> np.ndarray:
        return self._derivatives(p)[1] / self.scales.constraints[:, None]

    def _derivatives(self, p):
        # every point of a finite difference is a candidate for the best point too
        return self.prob.fd_derivatives(p, self.config.fd_step, self.config.fd_scheme, self.evaluate)


def _power_of_two(m):
    """The power of two nearest ``m`` (> 0) on a logarithmic scale."""
    return np.exp2(np.round(np.log2(m)))


def _violation(pt) -> float:
    """The largest violation of any leader constraint at ``pt``."""
    return float(np.max(pt.bodies, initial=0.0))


def _best_payload(box, pt):
    if pt is None:
        return None
    return {"p": pt.p.copy(), "objective": box.sign * pt.f, "x": pt.x.copy(),
            "n_oracle": box.prob.calls, "n_failed": box.prob.failed, "work": box.prob.work}


def _interior(p, lb, ub, frac):
    """``p`` moved strictly inside ``[lb, ub]`` where it sits on (or beyond) a bound."""
    width = np.where(np.isfinite(ub - lb), ub - lb, 1.0)
    shift = frac * width
    lo = np.where(lb < ub, lb + shift, lb)
    hi = np.where(lb < ub, ub - shift, ub)
    return np.minimum(np.maximum(p, lo), hi)
