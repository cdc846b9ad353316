"""Solver ``ipopt``: a continuation mode's NLPs solved by Ipopt (:class:`stackopt.solvers.nlp.NlpProblem`).

The single-level model with the mode's block is compiled once; the mode's
parameter ``eps`` is driven down its schedule, each NLP warm-started from the
previous solution (:func:`~stackopt.methods.mpec.solvers.nlp_steps.sweep`). The sweep is a
local method; it is repeated from ``starts`` points and the best converged
end point is kept, then optionally polished on the active set it identifies
(:func:`~stackopt.methods.mpec.solvers.nlp_steps.polish`).
"""
from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.common.config import ConfigDict, ConfigValue

from stackopt.core import Status
from stackopt.solvers import NlpProblem
from stackopt.solvers.ipopt import check_options

from ...registry import MethodOutput
from ..options import finite_positive, flag, positive_int
from ..registry import Solver, clipped, register_solver
from .nlp_steps import Products, diagnose, nlp_starts, polish, sweep


@register_solver("ipopt")
class IpoptSolver(Solver):
    """Local solution with Ipopt of a continuation mode (``regularization``, ``smoothing``, ...).

    Status ``CONVERGED`` when the last NLP (at ``eps_final``) converged and
    the largest product ``lambda * s`` over the pairs is at most
    ``complementarity_tol``. Otherwise the status of the failing NLP
    (``TIME_LIMIT``, ``MAX_ITERATIONS``, ``NOT_CONVERGED``) with the best
    point at which any start solved an NLP of its sweep (a failed solve's point
    is no answer: where every start's first NLP failed, the leader's initial
    values are returned); when Ipopt reports local infeasibility the message names
    where the remaining violation is: ``INFEASIBLE`` only when it is in the
    leader's constraints alone; in a follower's KKT conditions (a follower
    whose problem is unbounded or infeasible has none) it is
    ``NOT_CONVERGED``, naming the follower. The leader's values are always
    within the leader's bounds. Integer or binary leader variables are
    refused (Ipopt would relax them).

    Ipopt solves the single-level model in its own units
    (:mod:`~stackopt.methods.mpec.units`): its ``tol``, ``eps`` and
    ``complementarity_tol`` (products of multipliers in the followers' units
    and slacks) and ``polish_tol`` mean the same for a game and for any
    positive multiple of its objectives or leader constraints. The claimed
    objective and the history's ``objective`` are in the game's units.
    """

    CONFIG = ConfigDict("ipopt")
    CONFIG.declare("complementarity_tol", ConfigValue(
        default=1e-6, domain=finite_positive,
        doc="largest accepted lambda * s at the end for status CONVERGED (multipliers in "
            "the followers' units)"))
    CONFIG.declare("max_iter", ConfigValue(
        default=3000, domain=positive_int, doc="Ipopt iterations per NLP"))
    CONFIG.declare("starts", ConfigValue(
        default=4, domain=positive_int,
        doc="eps sweeps from different points: the model's values, then the leader's "
            "variables spread over their box (seeded Latin hypercube); the best converged "
            "one is kept"))
    CONFIG.declare("initialize_followers", ConfigValue(
        default=True, domain=flag,
        doc="before each sweep, solve once with the leader's variables held at the start "
            "so that the followers' variables and multipliers start consistent with them"))
    CONFIG.declare("exact_hessian", ConfigValue(
        default=True, domain=flag,
        doc="compile the exact Hessian of the Lagrangian (False: Ipopt's limited-memory BFGS)"))
    CONFIG.declare("polish", ConfigValue(
        default=True, domain=flag,
        doc="after the sweep, re-solve on the identified active set with exact complementarity; "
            "kept when it converges and is not worse by more than polish_tol"))
    CONFIG.declare("polish_tol", ConfigValue(
        default=1e-4, domain=finite_positive,
        doc="the polished point is kept unless its objective is worse by more than this "
            "(relative to max(1, |objective|), the objective in its own scale)"))
    CONFIG.declare("tol", ConfigValue(default=1e-9, domain=finite_positive, doc="Ipopt's tol"))
    CONFIG.declare("ipopt_options", ConfigValue(
        default={}, domain=check_options,
        doc="further Ipopt options (name -> value), checked by Ipopt before the run; "
            "mu_strategy is 'adaptive' unless given (the monotone default stalls on large "
            "regularised MPECs)"))

    def solve(self, sl, mode, block, seed, time_limit, clock_start):
        cfg = self.config
        for v in sl.leader_variables:
            if not v.is_continuous():
                raise ValueError(f"leader variable {v.name!r} has the domain {v.domain.name}, which "
                                 "Ipopt would relax; use solver='scip' (method 'mpec-scip')")
        schedule = mode.schedule()
        deadline = None if time_limit is None else clock_start + time_limit
        problem = NlpProblem(sl.block, exact_hessian=cfg.exact_hessian, deadline=deadline)
        index = {id(v): j for j, v in enumerate(problem.variables)}
        leader_pos = [index.get(id(v)) for v in sl.leader_variables]
        prod = Products(problem, sl.pairs)
        options = {"max_iter": cfg.max_iter, "tol": cfg.tol, "mu_strategy": "adaptive"}
        options.update(cfg.ipopt_options)
        x_first = problem.start()
        points = [x_first] + nlp_starts(x_first, problem, leader_pos, cfg.starts - 1,
                                        np.random.default_rng(seed))

        def left():
            return None if time_limit is None else time_limit - (time.perf_counter() - clock_start)

        runs = []
        for k, x0 in enumerate(points):
            run = sweep(problem, mode, block, schedule, prod, x0, cfg, options, left(), clock_start,
                        sl.leader_variables if cfg.initialize_followers else ())
            for h in run.history:
                h["start"] = k
            runs.append(run)
            if run.status is Status.TIME_LIMIT:
                break
        sign = 1.0 if int(sl.block.objective.sense) == int(pyo.minimize) else -1.0
        status, message, final = _choose(runs, sign, problem, sl)
        history = [h for r in runs for h in r.history]
        x_map = ComponentMap(zip(problem.variables, final.values if final is not None else x_first))
        claimed = None if final is None else float(final.objective)  # never a failed solve's point
        if status is Status.CONVERGED and cfg.polish:
            x_map, claimed, note = self._polish(sl, block, x_map, claimed, sign, options, left(),
                                                history, clock_start)
            message += note
        for h in history:  # the model's objective is the leader's in its own scale
            h["objective"] = sl.units.objective_value(h["objective"])

        def pick(variables):
            return clipped(variables, [x_map[v] if v in x_map else (v.value or 0.0)
                                       for v in variables])

        return MethodOutput(leader=pick(sl.leader_variables), status=status,
                            claimed_objective=sl.units.objective_value(claimed), message=message,
                            history=history,
                            follower_hint=pick(sl.follower_variables))

    def _polish(self, sl, block, x_map, claimed, sign, options, time_left, history, clock_start):
        cfg = self.config
        # Ipopt relaxes every bound by bound_relax_factor (1e-8) in the model's units, here the
        # leader constraints' own scales: the polished point holds them exactly instead
        exact = {"bound_relax_factor": 0.0, **options}
        polished = polish(sl, block, x_map, cfg.exact_hessian, exact, time_left)
        history.append(dict(polish=1.0, objective=polished.objective if polished else float("nan"),
                            wall_time_s=time.perf_counter() - clock_start))
        if polished is None:
            return x_map, claimed, "; no time left to polish"
        if polished.ok and sign * (polished.objective - claimed) <= cfg.polish_tol * max(1.0, abs(claimed)):
            return (polished.x, float(polished.objective),
                    "; polished on the identified active set (exact complementarity)")
        return x_map, claimed, "; polishing did not confirm the point, the sweep's solution kept"


def _choose(runs, sign, problem, sl):
    """(status, message, NlpResult or None) of the best converged run, else the first run's
    status and message with the best point any run solved an NLP at (None where every
    start's first NLP failed); ``TIME_LIMIT`` where the limit stopped a start (the best
    converged point is kept)."""
    converged = [r for r in runs if r.status is Status.CONVERGED]
    if converged:
        best = min(converged, key=lambda r: sign * r.result.objective)
        message = best.message + f"; best of {len(converged)} converged start(s) out of {len(runs)}"
        if runs[-1].status is Status.TIME_LIMIT:  # the limit stopped a start: the rule did not hold
            return (Status.TIME_LIMIT, message + f"; start {len(runs) - 1} stopped: "
                    f"{runs[-1].message}", best.result)
        return best.status, message, best.result
    first = runs[0]
    status, message = first.status, first.message
    if first.infeasible and first.failed is not None:
        status, why = diagnose(problem, sl, first.failed.values)
        message += f"; {why}"
    # the point of a failed solve is no answer: the best point of an NLP that was solved
    # (at some eps), else none (the leader's initial values)
    solved = [r for r in runs if r.result is not None and r.result is not r.failed]
    final = min(solved, key=lambda r: sign * r.result.objective).result if solved else None
    message += ("" if final is first.result else
                "; the best point of an NLP solved on the way is returned" if solved else
                "; no NLP of any start was solved: the leader's initial values are returned")
    if runs[-1].status is Status.TIME_LIMIT:
        status, message = Status.TIME_LIMIT, runs[-1].message
    return status, message, final
