"""``implicit-ipopt``: Ipopt on the leader's reduced problem, with implicit derivatives.

The leader's problem in its own variables only,

    min_p  f(x*(p), p)   s.t.  g(x*(p), p) <= 0,   A p <= b,   lb <= p <= ub,

is handed to Ipopt (through cyipopt) as an ordinary NLP: ``f`` and ``g``
evaluated at the followers' equilibrium ``x*(p)``, their gradient and Jacobian
by the implicit function theorem (one factorisation of the KKT matrix per
equilibrium and one adjoint solve with ``1 + n_g`` right-hand sides,
:mod:`stackopt.implicit`), a limited-memory quasi-Newton Hessian, and the
leader's linear constraints in its own variables (:mod:`stackopt.leaderset`)
as linear constraints. It is the paper's gradient with Ipopt's superlinear
convergence and exact constraint handling in place of a penalty.

Every evaluation point warm-starts the equilibrium from the evaluated point
nearest to it (Newton along the equilibrium's tangent); where a branch ends,
the followers re-adjust by their own dynamics, and where no equilibrium is
found Ipopt is told the point cannot be evaluated (it shortens its step).
Where equilibria are sampled (``samples_per_step > 1``) the problem is the
sample-average one over draws fixed at the start, with the constraints in
expectation (``constraints="mean"``) or at every draw (``"worst"``: one row
per draw, so the problem stays smooth).

After Ipopt stops, the answer is evaluated on fresh draws (the followers'
dynamics from seeded random starts, as scoring does); where they reach other
equilibria than the tracked ones, Ipopt runs again from there on the fresh
draws, at most ``reanchor`` times. The whole is repeated from ``starts``
leader strategies (the leader's initial values, then a seeded Latin
hypercube over the box, as ``mpec-ipopt`` does) and the best answer with
violation at most ``feasibility_tol`` on fresh draws is returned. The status is
Ipopt's for the run that produced it (``converged`` where Ipopt's convergence
test held).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
from pyomo.common.config import (ConfigDict, ConfigValue, In, NonNegativeFloat, NonNegativeInt,
                                 PositiveFloat, PositiveInt)

from .answers import Answers
from .kernel import kernel_of
from .merit import variable_scale
from .leaderset import spread_starts
from .methods import Method, MethodOutput, register_method
from .nlp import ArrayCallbacks, ipopt_solve
from .oracle import EquilibriumOracle
from .reduced import ReducedProblem
from .result import Status
from .steps import FIRST_MOVE

_INF = 1e20  # Ipopt treats |bound| >= 1e19 as infinite
_CACHE = 32  # evaluated points kept for warm starts
_NEAREST = 8  # of which the most recent are searched for the nearest


@register_method("implicit-ipopt", "reduced-ipopt")
class ImplicitIpopt(Method):
    """Ipopt on the leader's reduced problem with implicit gradients and a quasi-Newton Hessian."""

    CONFIG = ConfigDict("implicit-ipopt")
    CONFIG.declare("max_iter", ConfigValue(500, PositiveInt, "Ipopt iterations per run"))
    CONFIG.declare("tol", ConfigValue(1e-8, PositiveFloat, "Ipopt's convergence tolerance (tol)"))
    CONFIG.declare("starts", ConfigValue(
        4, PositiveInt, "runs from the leader's initial values, then from a seeded Latin hypercube "
        "over the leader's box; the best feasible answer is kept"))
    CONFIG.declare("reanchor", ConfigValue(
        3, NonNegativeInt, "further Ipopt runs from an answer whose fresh draws reach other equilibria"))
    CONFIG.declare("samples_per_step", ConfigValue(1, PositiveInt, "equilibria drawn and tracked"))
    CONFIG.declare("constraints", ConfigValue(
        "mean", In(["mean", "worst"]), "constraints over the sampled equilibria: their mean, or every "
        "draw's own (met at every sampled equilibrium)"))
    CONFIG.declare("oracle_tol", ConfigValue(1e-6, PositiveFloat, "equilibrium residual tolerance"))
    CONFIG.declare("feasibility_tol", ConfigValue(
        1e-6, NonNegativeFloat, "largest violation (on fresh draws) of an answer counted as feasible"))
    CONFIG.declare("ipopt_options", ConfigValue(
        {}, dict, "further Ipopt options (name -> value)"))

    def run(self, game, config, seed, time_limit):
        start = time.perf_counter()  # the time limit includes preparing the game
        k = kernel_of(game)
        deadline = start + (time_limit if time_limit else np.inf)
        oracle = EquilibriumOracle(k, tol=config.oracle_tol)
        rng = np.random.default_rng(seed)
        prob = ReducedProblem(k, oracle, rng, samples=config.samples_per_step,
                              aggregate="mean", deadline=deadline)
        scale = variable_scale(k)
        ls = prob.leader_set
        p_first = ls.project(k.p0, scale)
        points = [p_first] + [ls.project(q, scale) for q in
                              spread_starts(p_first, k.p_lb, k.p_ub, config.starts - 1, rng)]
        runs, history = [], []
        for s, p in enumerate(points):
            if time.perf_counter() > deadline:
                break
            anchor = prob.draw(p)
            if not anchor.converged:
                why = "; ".join(dict.fromkeys(e.message for e in anchor.equilibria if e.message))
                status = Status.INFEASIBLE if "no feasible point" in why else Status.NOT_CONVERGED
                runs.append((None, status, f"start {s}: no equilibrium at the start"
                             + (f" ({why})" if why else "")))
                continue
            for again in range(config.reanchor + 1):
                answer, status, message = _ipopt(prob, anchor, config, deadline, history, s)
                fresh = prob.draw(answer.p) if answer.converged else answer
                runs.append((fresh if fresh.converged else None, status, f"start {s}: {message}"))
                if not fresh.converged or prob.distance(fresh, answer) <= _same(answer):
                    break
                anchor = fresh  # the followers reach other equilibria there: optimise on those
                if time.perf_counter() > deadline:
                    break
        return _output(prob, runs, history, config, p_first, deadline)


def _same(pt) -> float:
    return 1e-6 * (1.0 + max(float(np.max(np.abs(e.x), initial=0.0)) for e in pt.equilibria))


def _output(prob, runs, history, config, p_first, deadline) -> MethodOutput:
    found = [r for r in runs if r[0] is not None]
    if not found:
        message = "; ".join(r[2] for r in runs) or "no run: the time limit was reached first"
        statuses = {r[1] for r in runs}
        status = (Status.TIME_LIMIT if not runs else
                  Status.INFEASIBLE if statuses == {Status.INFEASIBLE} else Status.NOT_CONVERGED)
        return MethodOutput(leader=p_first, status=status,
                            history=history, message=message)
    tol = config.feasibility_tol
    feasible = [r for r in found if _violation(prob, r[0]) <= tol]
    best = min(feasible, key=lambda r: r[0].f) if feasible else min(found, key=lambda r: _violation(prob, r[0]))
    note = ""
    if feasible:  # the answer whose mean over further fresh draws is best, as the gradient method's
        answers = Answers(prob, SimpleNamespace(feasibility_tol=tol, select="best-feasible"), deadline)
        answers.candidates = [r[0] for r in feasible]
        choice, note = answers.confirm(best[0])
        best = next(r for r in feasible if r[0] is choice)
    pt, status, message = best
    message += note
    message += (f"; best of {len(found)} answers from {len(set(h['start'] for h in history))} starts; "
                f"{prob.cold_starts} cold starts")
    return MethodOutput(leader=pt.p.copy(), status=status, claimed_objective=pt.objective,
                        claimed_violation=_violation(prob, pt), history=history,
                        singular_kkt=prob.singular(pt), follower_hint=pt.equilibria[0], message=message)


def _violation(prob, pt) -> float:
    return max(pt.violation, prob.leader_set.violation(pt.p))


def _ipopt(prob, anchor, config, deadline, history, start_index):
    """One Ipopt run from ``anchor``; returns ``(point at the answer, status, message)``."""
    k, ls = prob.k, prob.leader_set
    per_sample = config.constraints == "worst" and prob.samples > 1
    cb = _Callbacks(prob, anchor, per_sample, deadline, history, start_index)
    s = cb.scale  # Ipopt works in u = p / s
    m = cb.n_rows + ls.A.shape[0]
    cl = np.full(m, -_INF)
    cu = np.concatenate([np.zeros(cb.n_rows), ls.b])
    lb = np.where(np.isfinite(k.p_lb), k.p_lb / s, -_INF)
    ub = np.where(np.isfinite(k.p_ub), k.p_ub / s, _INF)
    # the first quasi-Newton step moves a variable by at most FIRST_MOVE of its scale
    gmax = float(np.max(np.abs(cb.gradient(anchor.p / s)), initial=0.0))
    options = {"hessian_approximation": "limited-memory",
               "limited_memory_init_val": max(gmax / FIRST_MOVE, 1.0),
               "tol": config.tol, "max_iter": config.max_iter, "mu_strategy": "adaptive",
               "bound_relax_factor": 0.0}
    options.update(config.ipopt_options)
    left = deadline - time.perf_counter() if np.isfinite(deadline) else None
    run = ipopt_solve(cb, anchor.p / s, lb, ub, cl, cu, options,
                      time_limit=max(left, 1e-2) if left is not None else None)
    status = Status.TIME_LIMIT if cb.timed_out else run.status
    name = run.message.split(":")[0]
    u = run.x
    try:
        answer = cb.point(np.asarray(u, dtype=float) * s)
    except _Unevaluable:
        answer = cb.best if cb.best is not None else anchor
        status = Status.NOT_CONVERGED if status is Status.CONVERGED else status
        name += "; no equilibrium at Ipopt's answer, the best point evaluated is returned"
    return answer, status, f"Ipopt: {name} after {run.iterations} iterations"


class _Unevaluable(Exception):
    pass


class _Callbacks(ArrayCallbacks):
    """cyipopt callbacks over a :class:`~stackopt.reduced.ReducedProblem`, caching points."""

    def __init__(self, prob, anchor, per_sample, deadline, history, start_index):
        self.prob, self.anchor, self.per_sample = prob, anchor, per_sample
        self.deadline, self.history, self.start_index = deadline, history, start_index
        self.scale = variable_scale(prob.k)
        self.cache: OrderedDict = OrderedDict({anchor.p.tobytes(): anchor})
        self.n_rows = prob.n_c * (prob.samples if per_sample else 1)
        self.iterations = 0
        self.timed_out = False
        self.best = None

    def point(self, p):
        # Ipopt may step a hair outside the bounds; the followers may have no feasible point there
        p = np.clip(np.asarray(p, dtype=float), self.prob.k.p_lb, self.prob.k.p_ub)
        key = p.tobytes()
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        base = self._nearest(p)
        pt = self.prob.follow(base, p)
        if not pt.converged:  # a branch ends here: the followers re-adjust by their dynamics,
            # within the oracle's step and sweep budgets (not a wall-clock cap: the answer
            # must not depend on the machine's load)
            pt = self.prob.readjust(base, p, pt)
        if not pt.converged:
            raise _Unevaluable()
        self.cache[key] = pt
        self.best = pt
        while len(self.cache) > _CACHE:
            self.cache.popitem(last=False)
        return pt

    def _nearest(self, p):
        best, dist = self.anchor, np.inf
        for n, pt in enumerate(reversed(self.cache.values())):
            if n >= _NEAREST:
                break
            d = float(np.max(np.abs((pt.p - p) / self.scale), initial=0.0))
            if d < dist:
                best, dist = pt, d
        return best

    def _eval(self, u):
        try:
            return self.point(u * self.scale)
        except _Unevaluable:
            import cyipopt

            raise cyipopt.CyIpoptEvaluationError() from None

    def _derivatives(self, pt):
        if "jacobian" not in pt.cache:
            gf, J = self.prob.jacobian(pt, per_sample=self.per_sample)
            if not (np.all(np.isfinite(gf)) and np.all(np.isfinite(J))):
                import cyipopt

                raise cyipopt.CyIpoptEvaluationError()
            pt.cache["jacobian"] = gf, J
        return pt.cache["jacobian"]

    # ------------------------------------------- callbacks, in u = p / scale
    def objective(self, u):
        return self._eval(u).f

    def gradient(self, u):
        return self._derivatives(self._eval(u))[0] * self.scale

    def constraints(self, u):
        pt = self._eval(u)
        rows = self.prob.per_sample_cons(pt) if self.per_sample else pt.cons
        return np.concatenate([rows, self.prob.leader_set.A @ pt.p])

    def jacobianstructure(self):
        m = self.n_rows + self.prob.leader_set.A.shape[0]
        r, c = np.indices((m, self.prob.k.n_p))
        return r.ravel(), c.ravel()

    def jacobian(self, u):
        J = self._derivatives(self._eval(u))[1]
        return (np.vstack([J, self.prob.leader_set.A]) * self.scale).ravel()

    def intermediate(self, alg_mod, iter_count, obj_value, inf_pr, inf_du, mu, d_norm,
                     regularization_size, alpha_du, alpha_pr, ls_trials):
        self.iterations = int(iter_count)
        self.history.append(dict(start=self.start_index, iteration=float(iter_count),
                                 objective=self.prob.sense * float(obj_value),
                                 primal_infeasibility=float(inf_pr), dual_infeasibility=float(inf_du)))
        if time.perf_counter() > self.deadline:
            self.timed_out = True
            return False
        return True
