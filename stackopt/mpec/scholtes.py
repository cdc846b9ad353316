"""``mpec-ipopt``: Scholtes' regularised complementarity, solved by Ipopt."""
from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.common.config import ConfigDict, ConfigValue, PositiveFloat, PositiveInt

from ..methods import Method, MethodOutput, register_method
from ..nlp import NlpProblem
from ..result import Status
from .pipeline import build_single_level, declare_pipeline_options


def _fraction(val):
    val = float(val)
    if not 0.0 < val < 1.0:
        raise ValueError(f"expected a number strictly between 0 and 1, got {val}")
    return val


@register_method("mpec-ipopt", "scholtes")
class ScholtesMpec(Method):
    """Regularised MPEC (Scholtes 2001) solved by Ipopt through :mod:`stackopt.nlp`.

    Reformulation: every complementarity pair ``0 <= lambda _|_ s(x) >= 0`` of
    the single-level model (:mod:`stackopt.mpec.pipeline`) becomes

        lambda >= 0,   s(x) >= 0,   lambda * s(x) <= eps,

    a smooth NLP whose feasible set satisfies the constraint qualifications
    Ipopt needs. ``eps`` is driven from ``eps_initial`` down to ``eps_final``
    by the factor ``eps_factor``; each NLP is warm-started from the previous
    solution (only the bound ``eps`` changes, so the model is compiled once).
    The sweep is a local method; it is repeated from ``starts`` points (the
    model's initial values, then leader strategies spread over the leader's
    box by a seeded Latin hypercube) and the best converged end point is kept. With ``polish``
    that point is refined by one NLP on the active set it identifies
    (``s = 0`` where ``s <= lambda``, else ``lambda = 0``), which makes the
    complementarity exact.

    The result is a local solution of the optimistic bilevel problem: among
    the followers' equilibria (KKT points) the leader's favourite is chosen.
    Status ``CONVERGED`` when the last NLP converged and the largest product
    ``lambda * s`` is at most ``complementarity_tol``; otherwise the status of
    the failing NLP (``INFEASIBLE``, ``TIME_LIMIT``, ``MAX_ITERATIONS``,
    ``NOT_CONVERGED``) with the last point reached.
    """

    CONFIG = ConfigDict("mpec-ipopt")
    CONFIG.declare("eps_initial", ConfigValue(
        default=1e-1, domain=PositiveFloat, doc="first regularisation bound on lambda * s"))
    CONFIG.declare("eps_final", ConfigValue(
        default=1e-8, domain=PositiveFloat, doc="last regularisation bound on lambda * s"))
    CONFIG.declare("eps_factor", ConfigValue(
        default=0.1, domain=_fraction, doc="eps is multiplied by this factor after each solve"))
    CONFIG.declare("complementarity_tol", ConfigValue(
        default=1e-6, domain=PositiveFloat,
        doc="largest accepted lambda * s at the end for status CONVERGED"))
    CONFIG.declare("max_iter", ConfigValue(
        default=3000, domain=PositiveInt, doc="Ipopt iterations per regularised NLP"))
    CONFIG.declare("starts", ConfigValue(
        default=4, domain=PositiveInt,
        doc="eps sweeps from different points: the model's values, then the leader's "
            "variables spread over their box (seeded Latin hypercube); the best converged "
            "one is kept"))
    CONFIG.declare("initialize_followers", ConfigValue(
        default=True, domain=bool,
        doc="before each sweep, solve once with the leader's variables held at the start "
            "so that the followers' variables and multipliers start consistent with them"))
    CONFIG.declare("exact_hessian", ConfigValue(
        default=True, domain=bool,
        doc="compile the exact Hessian of the Lagrangian (False: Ipopt's limited-memory BFGS)"))
    CONFIG.declare("polish", ConfigValue(
        default=True, domain=bool,
        doc="after the sweep, re-solve on the identified active set with exact complementarity; "
            "kept when it converges and is not worse by more than polish_tol"))
    CONFIG.declare("polish_tol", ConfigValue(
        default=1e-4, domain=PositiveFloat,
        doc="the polished point is kept unless its objective is worse by more than this "
            "(relative to max(1, |objective|))"))
    CONFIG.declare("tol", ConfigValue(default=1e-9, domain=PositiveFloat, doc="Ipopt's tol"))
    CONFIG.declare("ipopt_options", ConfigValue(
        default={}, domain=dict,
        doc="further Ipopt options (name -> value); mu_strategy is 'adaptive' unless given "
            "(the monotone default stalls on large regularised MPECs)"))
    declare_pipeline_options(CONFIG)

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        start = time.perf_counter()
        if config.eps_final > config.eps_initial:
            raise ValueError(
                f"eps_final must be <= eps_initial, got {config.eps_final} > {config.eps_initial}"
            )
        sl = build_single_level(game, block_name=config.block_name, dump=config.dump)
        sl.deactivate_complementarity()
        pairs = sl.pairs
        reg = pyo.Block(concrete=True)
        sl.block.add_component("scholtes", reg)
        reg.eps = pyo.Param(mutable=True, initialize=config.eps_initial)
        reg.products = pyo.Constraint(
            range(len(pairs)), rule=lambda b, k: pairs[k].multiplier * pairs[k].slack <= reg.eps)
        problem = NlpProblem(sl.block, exact_hessian=config.exact_hessian)
        index = {id(v): j for j, v in enumerate(problem.variables)}
        leader_pos = [index.get(id(v)) for v in sl.leader_variables]
        prod = _products(problem, pairs, reg)

        options = {"max_iter": config.max_iter, "tol": config.tol, "mu_strategy": "adaptive"}
        options.update(config.ipopt_options)
        rng = np.random.default_rng(seed)
        x_first = problem.start()
        points = [x_first] + _spread_starts(x_first, problem, leader_pos, config.starts - 1, rng)
        runs = []
        for k, x0 in enumerate(points):
            remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
            run = _sweep(problem, reg, prod, x0, config, options, remaining, start,
                         sl.leader_variables if config.initialize_followers else ())
            for h in run[3]:
                h["start"] = k
            runs.append(run)
            if run[0] is Status.TIME_LIMIT:
                break
        converged = [r for r in runs if r[0] is Status.CONVERGED]
        sign = 1.0 if int(sl.block.objective.sense) == int(pyo.minimize) else -1.0
        if converged:
            status, message, final, _ = min(converged, key=lambda r: sign * r[2].objective)
            message += f"; best of {len(converged)} converged start(s) out of {len(runs)}"
        else:
            status, message, final, _ = runs[0]
            if runs[-1][0] is Status.TIME_LIMIT:
                status, message = Status.TIME_LIMIT, runs[-1][1]
        history = [h for r in runs for h in r[3]]
        values = final.values if final is not None else x_first
        x_map = ComponentMap(zip(problem.variables, values))
        claimed = None if final is None else float(final.objective)
        if status is Status.CONVERGED and config.polish:
            remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
            polished = _polish(sl, reg, x_map, config, options, remaining)
            history.append(dict(polish=1.0, objective=polished.objective if polished else float("nan"),
                                wall_time_s=time.perf_counter() - start))
            if polished is not None and polished.ok and (
                    sign * (polished.objective - claimed) <= config.polish_tol * max(1.0, abs(claimed))):
                x_map, claimed = polished.x, float(polished.objective)
                message += "; polished on the identified active set (exact complementarity)"
            elif polished is None:
                message += "; no time left to polish"
            else:
                message += "; polishing did not confirm the point, Scholtes solution kept"

        def pick(variables):
            return np.array([x_map[v] if v in x_map else (v.value or 0.0) for v in variables],
                            dtype=float)

        return MethodOutput(
            leader=pick(sl.leader_variables),
            status=status,
            claimed_objective=claimed,
            message=message,
            history=history,
            follower_hint=pick(sl.follower_variables),
        )


def _sweep(problem, reg, prod, x, config, options, time_limit, clock_start, leader=()):
    """One eps sweep from ``x``: (status, message, last converged NlpResult or None, history).

    With ``leader`` (the leader's variables), the followers' part of ``x`` is
    first made consistent with the leader's values: one regularised solve with
    the leader's variables held at ``x`` (their bounds closed, so nothing is
    recompiled).
    """
    begin = time.perf_counter()
    eps = config.eps_initial
    history, last_good, result = [], None, None
    if time_limit is not None and time_limit <= 0:
        return Status.TIME_LIMIT, "time limit reached before the first solve", None, history
    if leader:
        reg.eps = eps
        pos = {id(v): j for j, v in enumerate(problem.variables)}
        saved = [(v, v.lb, v.ub) for v in leader]
        try:
            for v in leader:
                j = pos.get(id(v))
                if j is not None:
                    v.setlb(float(x[j]))
                    v.setub(float(x[j]))
            held = problem.solve(options=options, time_limit=time_limit, warm_start=x)
        finally:
            for v, lb, ub in saved:
                v.setlb(lb)
                v.setub(ub)
        history.append(dict(eps=eps, objective=held.objective, iterations=held.iterations,
                            complementarity=float(np.max(prod(held.values), initial=0.0)),
                            wall_time_s=time.perf_counter() - clock_start, leader_held=1.0))
        if held.ok:
            x = held.values
    while True:
        reg.eps = eps
        remaining = None
        if time_limit is not None:
            remaining = time_limit - (time.perf_counter() - begin)
            if remaining <= 0:
                return (Status.TIME_LIMIT, f"time limit reached before eps={eps:g}",
                        last_good, history)
        result = problem.solve(options=options, time_limit=remaining, warm_start=x)
        worst = float(np.max(prod(result.values), initial=0.0))
        history.append(dict(eps=eps, objective=result.objective, iterations=result.iterations,
                            complementarity=worst, wall_time_s=time.perf_counter() - clock_start))
        if not result.ok:
            return (result.status, f"Ipopt at eps={eps:g}: {result.message}",
                    last_good if last_good is not None else result, history)
        x, last_good = result.values, result
        if eps <= config.eps_final * (1 + 1e-12):
            if worst <= config.complementarity_tol:
                return (Status.CONVERGED, f"max lambda*s = {worst:.3g} at eps={eps:g}",
                        last_good, history)
            return (Status.NOT_CONVERGED,
                    f"complementarity not reached: max lambda*s = {worst:.3g} > "
                    f"complementarity_tol={config.complementarity_tol:g}", last_good, history)
        eps = max(eps * config.eps_factor, config.eps_final)


def _polish(sl, reg, x_map, config, options, time_limit):
    """Re-solve with the active set the Scholtes solution identifies, complementarity exact.

    For each pair, ``s = 0`` is imposed where ``s <= lambda``, else ``lambda`` is
    fixed to 0; the regularised products are dropped. Returns the NlpResult
    (or None when out of time); the model's clone is restored afterwards.
    """
    if time_limit is not None and time_limit <= 0:
        return None
    for v, val in x_map.items():
        v.set_value(val, skip_validation=True)
    blk = pyo.Block(concrete=True)
    sl.block.add_component("scholtes_polish", blk)
    blk.active_slack = pyo.ConstraintList()
    fixed = []
    for p in sl.pairs:
        lam = p.multiplier.value or 0.0
        slack = pyo.value(p.slack)
        if slack <= lam:
            blk.active_slack.add(p.slack == 0)
        elif not p.multiplier.fixed:
            p.multiplier.fix(0.0)
            fixed.append(p.multiplier)
    reg.products.deactivate()
    try:
        problem = NlpProblem(sl.block, exact_hessian=config.exact_hessian)
        return problem.solve(options=options, time_limit=time_limit, warm_start=x_map)
    finally:
        for v in fixed:
            v.unfix()
        reg.products.activate()
        sl.block.del_component(blk)


def _spread_starts(x_first, problem, leader_pos, count, rng):
    """``count`` copies of ``x_first`` with the leader's values spread over their box.

    Latin hypercube (seeded): each leader coordinate takes one value in each of
    ``count`` equal slices of its range. A side without a finite bound is
    replaced by the start value -/+ max(1, |start|).
    """
    starts = [x_first.copy() for _ in range(count)]
    if count == 0:
        return starts
    xl, xu, _, _ = problem.bounds()
    for j in leader_pos:
        if j is None:
            continue
        width = max(1.0, abs(x_first[j]))
        lo = xl[j] if xl[j] > -1e19 else x_first[j] - width
        hi = xu[j] if xu[j] < 1e19 else x_first[j] + width
        slots = rng.permutation(count)
        for x, slot in zip(starts, slots):
            x[j] = lo + (slot + rng.uniform()) / count * (hi - lo)
    return starts



def _products(problem: NlpProblem, pairs, reg):
    """lambda * s for every pair, from the compiled constraint bodies."""
    pos = {id(c): i for i, c in enumerate(problem.constraints)}
    rows = np.array([pos[id(reg.products[k])] for k in range(len(pairs))], dtype=np.intp)

    def prod(x):
        if not len(rows):
            return np.zeros(0)
        return problem.constraint_values(x)[rows]

    return prod
