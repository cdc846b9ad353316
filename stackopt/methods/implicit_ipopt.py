"""``implicit-ipopt``: Ipopt on the leader's problem, with implicit derivatives.

The leader's problem in its own variables only,

    min_p  f(x*(p), p)   s.t.  g(x*(p), p) <= 0,   A p <= b,   lb <= p <= ub,

is handed to Ipopt (through cyipopt) as an ordinary NLP: ``f`` and ``g``
evaluated at the followers' equilibrium ``x*(p)`` and divided by their
magnitudes at the first start (:class:`~stackopt.leader.Scales`, as the
gradient method's; so Ipopt's tolerances mean the same whatever the units of
the objective and the constraints), their gradient and Jacobian
by the implicit function theorem (one factorisation of the KKT matrix per
equilibrium and one adjoint solve with ``1 + n_g`` right-hand sides,
:mod:`stackopt.oracle.implicit`), a limited-memory quasi-Newton Hessian, and the
leader's linear constraints in its own variables (:mod:`stackopt.leader.leaderset`)
as linear constraints. It is the paper's gradient with Ipopt's superlinear
convergence and exact constraint handling in place of a penalty.

Every evaluation point warm-starts the equilibrium from the evaluated point
nearest to it (Newton along the equilibrium's tangent); where a branch ends,
the followers re-adjust by their own dynamics, and where no equilibrium is
found Ipopt is told the point cannot be evaluated (it shortens its step).
Where equilibria are sampled (``samples_per_step > 1``) the problem is the
sample-average one over the draws, with the objective in expectation
(``objective="mean"``) or at the worst draw (``"worst"``: the largest of the
draws' objectives, a kink where the worst draw changes), and the constraints in
expectation (``constraints="mean"``) or at every draw (``"worst"``: one row
per draw, so the problem stays smooth). With ``draws="fixed"`` every draw starts
at the same seeded point, that of scoring's draw of the same index
(:mod:`stackopt.scoring`), at every start and re-anchoring: the problem Ipopt
solves is a deterministic function of the leader's variables, and the answers of
the starts are compared on the same draws; the default ``"fresh"`` draws new
starts at every start and re-anchoring.

Where the leader's problem is not differentiable at its optimum (a follower's
bound or row that becomes active there puts a kink into ``x*(p)``), Ipopt's
quasi-Newton steps cannot meet its convergence test and would run their whole
iteration budget at the optimum. A run that made no progress for
``STALL_ITERATIONS`` iterations is stopped (progress: a feasible iterate, each
constraint's violation in its scale at most ``feasibility_tol``, whose objective is
lower than every feasible one before by ``STALL_GAIN`` relative, or an infeasible one
at most ``STALL_REPAIR`` times as infeasible as any before; a stalled run answers
with its best point by the same order, never with an infeasible point of lower
objective);
its answer is ``converged`` where the convex hull of the gradients evaluated in
those iterations, all within ``KINK_RADIUS`` scale units of it, holds a point
of norm at most ``KINK_TOL * max(1, |f|)`` (each projected on the leader's box:
the gradient-sampling test of Clarke stationarity; without active leader
constraints), else ``not_converged``, saying so.

Ipopt's limited-memory BFGS skips its update where the curvature along a step
is not positive, as along a path on which the objective is linear (an insurer's
revenue along binding participation constraints); its steps then keep the length
of the first one (``FIRST_MOVE`` scale units at most) however far the optimum
is. A run whose last ``CRAWL_STEPS`` steps were full, feasible, descending and no
shorter than the one before is restarted from its iterate with first steps
``CRAWL_GROWTH`` times longer, within the same iteration budget.

After Ipopt stops, the answer is evaluated on fresh draws (the followers'
dynamics from seeded random starts, as scoring does); where they reach other
equilibria than the tracked ones, Ipopt runs again from there on the fresh
draws, at most ``reanchor`` times. The whole is repeated from ``starts``
leader strategies (the leader's initial values, then a seeded Latin
hypercube over the box, as ``mpec-ipopt`` does) and the best answer with
violation at most ``feasibility_tol`` (each constraint in its scale) on fresh
draws is returned. The status is
Ipopt's for the run that produced it (``converged`` where Ipopt's convergence
test held).
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
from pyomo.common.config import (
    ConfigDict,
    ConfigValue,
    In,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)

from stackopt.core import Status
from stackopt.kernel import kernel_of
from stackopt.leader import (
    FIRST_MOVE,
    Answers,
    LeaderProblem,
    Scales,
    declare_sampling,
    fixed_seed,
    problem_scales,
    spread_starts,
    variable_scale,
)
from stackopt.oracle import EquilibriumOracle
from stackopt.solvers import ArrayCallbacks, ipopt_solve
from stackopt.solvers.ipopt import check_options

from .registry import Method, MethodOutput, ReportedHistory, register_method

_INF = 1e20  # Ipopt treats |bound| >= 1e19 as infinite
STALL_ITERATIONS = 30  # Ipopt iterations without progress after which a run has stalled
STALL_GAIN = 1e-9  # relative decrease of the best feasible objective that counts as progress
CRAWL_STEPS = 10  # full, descending, feasible steps of unchanging length that make a crawl
CRAWL_GROWTH = 10.0  # a crawl's restart takes first steps this many times longer
STALL_REPAIR = 0.5  # infeasibility at most this fraction of the least so far counts as progress
KINK_RADIUS = 1e-4  # scale units: the stalled iterations' gradients sampled this near the answer
KINK_TOL = 1e-6  # the sampled gradients' convex hull holds a point this small (times max(1, |f|))


@register_method("implicit-ipopt", "reduced-ipopt")
class ImplicitIpopt(Method):
    """Ipopt on the leader's problem with implicit gradients and a quasi-Newton Hessian.

    Generalized Nash games (shared constraints, follower constraints in any smooth form):
    the followers play the equilibrium of the game's ``shared`` concept, as the oracle
    finds it (Rosen's normalized equilibrium for ``"variational"`` and ``"weighted"``; the
    one the followers' best responses reach for ``"any"``, where the KKT matrix is
    singular on a shared constraint and the result says so: ``singular_kkt``).
    """

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
    declare_sampling(CONFIG)  # objective, draws
    CONFIG.declare("oracle_tol", ConfigValue(1e-8, PositiveFloat, "equilibrium residual tolerance (in the "
                                             "followers' units, see stackopt.oracle)"))
    CONFIG.declare("feasibility_tol", ConfigValue(
        1e-6, NonNegativeFloat, "largest violation (on fresh draws) of an answer counted as feasible, "
        "each constraint relative to its magnitude at the first start"))
    CONFIG.declare("ipopt_options", ConfigValue(
        {}, check_options, "further Ipopt options (name -> value), checked by Ipopt before the run"))

    def run(self, game, config, seed, time_limit):
        start = time.perf_counter()  # the time limit includes preparing the game
        k = kernel_of(game)
        deadline = start + (time_limit if time_limit else np.inf)
        oracle = EquilibriumOracle(k, tol=config.oracle_tol)
        rng = np.random.default_rng(seed)
        prob = LeaderProblem(k, oracle, rng, samples=config.samples_per_step, aggregate="mean",
                             objective=config.objective,
                             fixed_seed=fixed_seed(config.draws, seed),
                             deadline=deadline)
        scale = variable_scale(k)
        ls = prob.leader_set
        p_first = ls.project(k.p0, scale)
        points = [p_first] + [ls.project(q, scale) for q in
                              spread_starts(p_first, k.p_lb, k.p_ub, config.starts - 1, rng)]
        # cut: the time limit left a start or a re-anchoring unrun
        runs, history, cut, scales = [], ReportedHistory(self.progress), False, None
        for s, p in enumerate(points):
            if time.perf_counter() > deadline:
                cut = True
                break
            anchor = prob.draw(p)
            if not anchor.converged:
                why = "; ".join(dict.fromkeys(e.message for e in anchor.equilibria if e.message))
                status = (Status.TIME_LIMIT if time.perf_counter() > deadline else
                          Status.INFEASIBLE if "no feasible point" in why else Status.NOT_CONVERGED)
                runs.append((None, status, f"start {s}: no equilibrium at the start"
                             + (" within the time limit" if status is Status.TIME_LIMIT else "")
                             + (f" ({why})" if why else "")))
                continue
            scales = scales or problem_scales(prob, anchor, scale)  # at the first start evaluated
            for _ in range(config.reanchor + 1):
                answer, status, message = _ipopt(prob, anchor, scales, config, deadline, history, s)
                fresh = prob.draw(answer.p) if answer.converged else answer
                # past the deadline the fresh draws get no time: the run's own point is kept
                kept = fresh if fresh.converged else (
                    answer if status is Status.TIME_LIMIT and answer.converged else None)
                runs.append((kept, status, f"start {s}: {message}"))
                if not fresh.converged or prob.distance(fresh, answer) <= _same(answer):
                    break
                anchor = fresh  # the followers reach other equilibria there: optimise on those
                if time.perf_counter() > deadline:
                    cut = True
                    break
        cut = cut or any(r[1] is Status.TIME_LIMIT for r in runs)
        return _output(prob, runs, history, config, p_first, deadline,
                       scales or Scales(1.0, np.ones(prob.n_c)), cut)


def _same(pt) -> float:
    return 1e-6 * (1.0 + max(float(np.max(np.abs(e.x), initial=0.0)) for e in pt.equilibria))


def _output(prob, runs, history, config, p_first, deadline, scales, cut=False) -> MethodOutput:
    """The best answer of ``runs``; ``cut``: the time limit stopped a run or left starts
    unrun, and the status says ``TIME_LIMIT`` whatever the runs that finished said."""
    found = [r for r in runs if r[0] is not None]
    if not found:
        message = "; ".join(r[2] for r in runs) or "no run: the time limit was reached first"
        statuses = {r[1] for r in runs}
        status = (Status.TIME_LIMIT if not runs or cut else
                  Status.INFEASIBLE if statuses == {Status.INFEASIBLE} else Status.NOT_CONVERGED)
        return MethodOutput(leader=p_first, status=status,
                            history=history, message=message, work=prob.work)
    tol = config.feasibility_tol
    feasible = [r for r in found if _violation(prob, r[0], scales) <= tol]
    best = (min(feasible, key=lambda r: r[0].f) if feasible else
            min(found, key=lambda r: _violation(prob, r[0], scales)))
    note = ""
    if feasible:  # the answer whose mean over further fresh draws is best, as the gradient method's
        answers = Answers(prob, deadline, scales, feasibility_tol=tol)
        answers.candidates = [r[0] for r in feasible]
        choice, note = answers.confirm(best[0])
        best = next(r for r in feasible if r[0] is choice)
    pt, status, message = best
    message += note
    message += (f"; best of {len(found)} answers from {len(set(h['start'] for h in history))} starts; "
                f"{prob.cold_starts} cold starts")
    if cut and status is not Status.TIME_LIMIT:
        message += f"; the time limit stopped the other runs (this one: {status})"
        status = Status.TIME_LIMIT
    return MethodOutput(leader=pt.p.copy(), status=status, claimed_objective=pt.objective,
                        claimed_violation=max(pt.violation, prob.leader_set.violation(pt.p)),
                        history=history,
                        singular_kkt=prob.singular(pt), follower_hint=pt.equilibria[0], message=message,
                        work=prob.work)


def _violation(prob, pt, scales) -> float:
    """The largest violation at ``pt``: each equilibrium-dependent constraint in its scale,
    the leader's linear constraints as they are."""
    return max(scales.violation(pt.cons), prob.leader_set.violation(pt.p))


def _ipopt(prob, anchor, scales, config, deadline, history, start_index):
    """One Ipopt run from ``anchor``; returns ``(point at the answer, status, message)``."""
    k, ls = prob.k, prob.leader_set
    per_sample = config.constraints == "worst" and prob.samples > 1
    cb = _IpoptCallbacks(prob, anchor, scales, per_sample, deadline, history, start_index,
                         config.feasibility_tol)
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
    u, used, restarts, budget = anchor.p / s, 0, 0, int(options["max_iter"])
    while True:
        left = deadline - time.perf_counter() if np.isfinite(deadline) else None
        run = ipopt_solve(cb, u, lb, ub, cl, cu, {**options, "max_iter": budget - used},
                          time_limit=max(left, 1e-2) if left is not None else None)
        used += run.iterations
        if not cb.crawling or used >= budget:
            break
        # a crawl: restart from Ipopt's iterate with longer first steps
        u, restarts = run.x, restarts + 1
        options["limited_memory_init_val"] = options["limited_memory_init_val"] / CRAWL_GROWTH
        cb.restart(used)
    status = (Status.TIME_LIMIT if cb.timed_out else Status.MAX_ITERATIONS if cb.crawling
              else run.status)
    name = ("stopped at the time limit" if cb.timed_out else "crawling at the iteration limit"
            if cb.crawling else run.message.split(":")[0])
    u = run.x
    try:
        answer = cb.point(np.asarray(u, dtype=float) * s)
    except _Unevaluable:
        answer = cb.best if cb.best is not None else anchor
        status = Status.NOT_CONVERGED if status is Status.CONVERGED else status
        name += "; no equilibrium at Ipopt's answer, the best point evaluated is returned"
    if cb.stalled and not cb.timed_out:
        if cb.lowest is not None and cb.better(cb.lowest, answer):
            answer = cb.lowest
        stationary, size = _kink_test(cb, answer, config)
        status = Status.CONVERGED if stationary else Status.NOT_CONVERGED
        name = (f"stalled (no better objective in {STALL_ITERATIONS} iterations); "
                + (f"Clarke stationary: the sampled gradients' convex hull holds a point of norm {size:.2g}"
                   if stationary else "no stationarity certificate"
                   + ("" if size is None else f" (smallest convex combination of the sampled "
                                               f"gradients {size:.2g})")))
    restarted = f" ({restarts} restarted with longer steps after a crawl)" if restarts else ""
    return answer, status, f"Ipopt: {name} after {used} iterations{restarted}"


def _kink_test(cb, answer, config):
    """Whether ``answer`` of a stalled run is Clarke stationary by gradient sampling (see the
    module docstring): ``(stationary, norm of the smallest convex combination or None)``."""
    from scipy.optimize import nnls

    prob, s = cb.prob, cb.scale
    k = prob.k
    if prob.n_c and np.any(answer.cons > -config.feasibility_tol):
        return False, None  # an active leader constraint: its multipliers would be needed
    ls = prob.leader_set
    if ls.linear and np.any(ls.A @ answer.p > ls.b - config.feasibility_tol * (1 + np.abs(ls.b))):
        return False, None
    near = [pt for pt in cb.recent if float(np.max(np.abs((pt.p - answer.p) / s), initial=0.0)) <= KINK_RADIUS]
    if len(near) < 2:
        return False, None
    G = []
    for pt in near:
        g = cb._derivatives(pt)[0] * s
        g = np.where(pt.p <= k.p_lb, np.minimum(g, 0.0), g)  # no feasible descent past a bound
        g = np.where(pt.p >= k.p_ub, np.maximum(g, 0.0), g)
        G.append(g)
    G = np.array(G).T  # a column per sampled gradient
    weight = 1e3 * max(1.0, float(np.max(np.abs(G), initial=0.0)))
    lam, _ = nnls(np.vstack([G, np.full((1, G.shape[1]), weight)]), np.concatenate([np.zeros(G.shape[0]), [weight]]))
    lam = lam / max(float(lam.sum()), 1e-300)
    size = float(np.max(np.abs(G @ lam), initial=0.0))
    return size <= KINK_TOL * max(1.0, abs(answer.f)), size


def _crawl(steps) -> bool:
    """Whether Ipopt's last full steps ``(objective after it, its length)`` crawl: each
    descends and is at least as long as the one before (to 1 %). Ipopt's limited-memory
    BFGS skips its update where the curvature along a step is not positive (an objective
    linear along the path, such as a leader's revenue along a binding participation
    constraint), and its steps then keep the first step's length however far the
    optimum is."""
    f, d = np.array(steps).T
    return bool(np.all(np.diff(f) < 0) and np.all(d[1:] >= 0.99 * d[:-1]) and d[-1] > 0)


class _Unevaluable(Exception):
    pass


class _IpoptCallbacks(ArrayCallbacks):
    """cyipopt's view of a :class:`~stackopt.leader.LeaderProblem` in ``u = p / scale``: the
    objective and the equilibrium-dependent constraints divided by their ``scales``, points
    tracked from the problem's cached point nearest them (its cache emptied but for
    ``anchor`` at the start of a run), the run's progress and stall."""

    def __init__(self, prob, anchor, scales, per_sample, deadline, history, start_index, feasibility_tol):
        self.prob, self.anchor, self.per_sample = prob, anchor, per_sample
        self.scales, self.feasibility_tol = scales, feasibility_tol
        self.wf = 1.0 / scales.objective
        self.wc = np.tile(1.0 / scales.constraints, prob.samples if per_sample else 1)
        self.deadline, self.history, self.start_index = deadline, history, start_index
        self.scale = variable_scale(prob.k)
        prob.forget(keep=anchor)
        self.n_rows = prob.n_c * (prob.samples if per_sample else 1)
        self.iterations = 0
        self.timed_out = False
        self.best = None
        self.lowest = None  # the feasible point of lowest objective evaluated, else the least violating
        self.recent: deque = deque(maxlen=2 * STALL_ITERATIONS)  # points whose gradients Ipopt asked for
        # progress: the lowest objective of a feasible iterate, the least infeasibility of the others
        self.best_f, self.least_inf, self.since, self.stalled = np.inf, np.inf, 0, False
        self.restart(0)

    def restart(self, done: int) -> None:
        """A new Ipopt run continues this one, ``done`` iterations in."""
        self.done, self.crawling, self.steps = done, False, []  # the current run's (f, step length)

    def point(self, p):
        """The converged point at ``p`` (``_Unevaluable`` where no equilibrium is found)."""
        cached = self.prob.cached(np.clip(np.asarray(p, dtype=float), self.prob.k.p_lb, self.prob.k.p_ub))
        if cached is not None:
            return cached
        pt = self.prob.track(p, self.anchor, self.scale)
        if not pt.converged:
            raise _Unevaluable()
        self.best = pt
        if self.lowest is None or self.better(pt, self.lowest):
            self.lowest = pt
        return pt

    def better(self, a, b) -> bool:
        """Whether point ``a`` is a better answer than ``b``: feasible (:func:`_violation` at
        most ``feasibility_tol``, as the answers of the starts are compared) with a lower
        objective, or less infeasible."""
        va, vb = (max(_violation(self.prob, pt, self.scales) - self.feasibility_tol, 0.0) for pt in (a, b))
        return va < vb or (va == vb == 0.0 and a.f < b.f)

    def _eval(self, u):
        try:
            return self.point(u * self.scale)
        except _Unevaluable:
            import cyipopt

            raise cyipopt.CyIpoptEvaluationError() from None

    def _derivatives(self, pt):
        if "jacobian" not in pt.cache:
            self.recent.append(pt)
            gf, J = self.prob.jacobian(pt, per_sample=self.per_sample)
            if not (np.all(np.isfinite(gf)) and np.all(np.isfinite(J))):
                import cyipopt

                raise cyipopt.CyIpoptEvaluationError()
            pt.cache["jacobian"] = gf, J
        return pt.cache["jacobian"]

    # ------------------------------------------- callbacks, in u = p / scale
    def objective(self, u):
        return self.wf * self._eval(u).f

    def gradient(self, u):
        return self.wf * self._derivatives(self._eval(u))[0] * self.scale

    def constraints(self, u):
        pt = self._eval(u)
        rows = self.prob.per_sample_cons(pt) if self.per_sample else pt.cons
        return np.concatenate([self.wc * rows, self.prob.leader_set.A @ pt.p])

    def jacobianstructure(self):
        m = self.n_rows + self.prob.leader_set.A.shape[0]
        r, c = np.indices((m, self.prob.k.n_p))
        return r.ravel(), c.ravel()

    def jacobian(self, u):
        J = self._derivatives(self._eval(u))[1]
        return (np.vstack([self.wc[:, None] * J, self.prob.leader_set.A]) * self.scale).ravel()

    def _iterate_violation(self) -> float:
        """The current iterate's largest constraint violation, in the constraints' scales
        (Ipopt's ``inf_pr`` here is of its own reformulated problem, with slacks)."""
        v = self.problem.get_current_violations(scaled=False)
        return float(max(np.max(v[key], initial=0.0) for key in ("g_violation", "x_L_violation", "x_U_violation")))

    def intermediate(self, alg_mod, iter_count, obj_value, inf_pr, inf_du, mu, d_norm,
                     regularization_size, alpha_du, alpha_pr, ls_trials):
        self.iterations = int(iter_count)
        self.history.append(dict(start=self.start_index, iteration=float(self.done + iter_count),
                                 objective=self.prob.sense * float(obj_value) / self.wf,
                                 primal_infeasibility=float(inf_pr), dual_infeasibility=float(inf_du)))
        if time.perf_counter() > self.deadline:
            self.timed_out = True
            return False
        restoring = int(alg_mod) == 1  # Ipopt's restoration phase: its own objective
        f, inf = float(obj_value), max((float(inf_pr) if restoring else self._iterate_violation())
                                       - self.feasibility_tol, 0.0)
        if not restoring and inf == 0.0 and f < self.best_f - STALL_GAIN * max(1.0, abs(f)):
            self.best_f, self.since = f, 0  # a better feasible iterate
        elif 0.0 < inf <= STALL_REPAIR * self.least_inf:
            self.since = 0  # an infeasible iterate, closer to feasible than any before
        else:
            self.since += 1
        self.least_inf = min(self.least_inf, inf)
        if self.since >= STALL_ITERATIONS:  # no progress: a kink Ipopt cannot converge on
            self.stalled = True
            return False
        full = not restoring and inf == 0.0 and float(alpha_pr) == 1.0 and int(ls_trials) == 1
        self.steps = self.steps[-CRAWL_STEPS:] + [(f, float(d_norm))] if full else []
        if len(self.steps) > CRAWL_STEPS and _crawl(self.steps):
            self.crawling = True
            return False
        return True
