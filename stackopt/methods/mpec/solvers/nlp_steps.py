"""The steps of the ``ipopt`` solver: continuation sweep, polishing, starts, failure diagnosis."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.common.collections import ComponentSet
from pyomo.core.expr.visitor import identify_variables
from pyomo.repn.standard_repn import generate_standard_repn

from stackopt.core import Status
from stackopt.expr import compile_exprs
from stackopt.leader import spread_starts
from stackopt.solvers import NlpProblem
from stackopt.solvers.nlp import TimeLimitReached

from ..registry import clipped


class Products:
    """``lambda * s`` of every pair at a point of the compiled NLP.

    Linear slacks are one sparse matrix; nonlinear ones (a follower constraint
    nonlinear in its own variables or with the leader's coefficients) are
    compiled once (:func:`stackopt.expr.compile_exprs`). A variable the NLP does
    not have counts with its value on the model.
    """

    def __init__(self, problem: NlpProblem, pairs):
        pos = {id(v): j for j, v in enumerate(problem.variables)}
        rows, cols, vals = [], [], []
        self.const = np.zeros(len(pairs))
        self.mult_pos = np.full(len(pairs), -1, dtype=np.intp)
        self.mult_val = np.zeros(len(pairs))
        nonlinear = []
        for k, p in enumerate(pairs):
            repn = generate_standard_repn(p.slack, compute_values=True, quadratic=False)
            j = pos.get(id(p.multiplier))
            if j is None:
                self.mult_val[k] = float(p.multiplier.value or 0.0)
            else:
                self.mult_pos[k] = j
            if not repn.is_linear():
                nonlinear.append(k)
                continue
            self.const[k] = float(pyo.value(repn.constant))
            for v, c in zip(repn.linear_vars, repn.linear_coefs):
                j = pos.get(id(v))
                if j is None:
                    self.const[k] += float(c) * float(v.value or 0.0)
                else:
                    rows.append(k), cols.append(j), vals.append(float(c))
        self.matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(pairs), problem.n))
        self.nonlinear = np.array(nonlinear, dtype=np.intp)
        self._slacks, self._outside = None, np.zeros(0)
        if nonlinear:
            exprs = [pairs[k].slack for k in nonlinear]
            outside = ComponentSet(v for e in exprs for v in identify_variables(e, include_fixed=False)
                                   if id(v) not in pos)
            self._outside = np.array([float(v.value or 0.0) for v in outside])
            self._slacks = compile_exprs(exprs, list(problem.variables) + list(outside))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        lam = np.where(self.mult_pos >= 0, x[self.mult_pos], self.mult_val)
        s = self.matrix @ x + self.const
        if self._slacks is not None:
            s[self.nonlinear] = self._slacks(np.concatenate([x, self._outside]))
        return lam * s

    def worst(self, x: np.ndarray) -> float:
        return float(np.max(self(x), initial=0.0))


@dataclass
class Run:
    """One sweep: its status and message, the last converged NlpResult (else the failing
    one), whether Ipopt reported local infeasibility, and one history row per NLP."""

    status: Status
    message: str
    result: object = None
    infeasible: bool = False
    failed: object = None  # the NlpResult of the failing solve, if one failed
    history: list = field(default_factory=list)


def sweep(problem, mode, block, schedule, prod, x, cfg, options, time_limit, clock_start,
          leader=()) -> Run:
    """One sweep of ``mode``'s parameter over ``schedule`` from ``x``.

    With ``leader`` (the leader's variables), the followers' part of ``x`` is
    first made consistent with the leader's values: one solve at the first
    eps with the leader's variables held at ``x`` (their bounds closed, so
    nothing is recompiled).
    """
    begin = time.perf_counter()
    run, last_good = Run(Status.NOT_CONVERGED, ""), None
    if time_limit is not None and time_limit <= 0:
        return Run(Status.TIME_LIMIT, "time limit reached before the first solve")
    if leader:
        mode.set_parameter(block, schedule[0])
        held = _held(problem, leader, x, options, time_limit)
        run.history.append(_row(schedule[0], held, prod, clock_start, leader_held=1.0))
        if held.ok:
            x = held.values
    for eps in schedule:
        mode.set_parameter(block, eps)
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - begin)
        if remaining is not None and remaining <= 0:
            run.status, run.message, run.result = (Status.TIME_LIMIT,
                                                   f"time limit reached before eps={eps:g}", last_good)
            return run
        result = problem.solve(options=options, time_limit=remaining, warm_start=x)
        run.history.append(_row(eps, result, prod, clock_start))
        if not result.ok:
            run.status, run.message = result.status, f"Ipopt at eps={eps:g}: {result.message}"
            run.result = last_good if last_good is not None else result
            run.infeasible = result.status is Status.INFEASIBLE
            run.failed = result
            return run
        x, last_good = result.values, result
    worst = prod.worst(x)
    run.result = last_good
    if worst <= cfg.complementarity_tol:
        run.status, run.message = Status.CONVERGED, f"max lambda*s = {worst:.3g} at eps={eps:g}"
    else:
        run.message = (f"complementarity not reached: max lambda*s = {worst:.3g} > "
                       f"complementarity_tol={cfg.complementarity_tol:g}")
    return run


def _row(eps, result, prod, clock_start, **extra):
    return dict(eps=eps, objective=result.objective, iterations=result.iterations,
                complementarity=prod.worst(result.values),
                wall_time_s=time.perf_counter() - clock_start, **extra)


def _held(problem, leader, x, options, time_limit):
    pos = {id(v): j for j, v in enumerate(problem.variables)}
    saved = [(v, v.lb, v.ub) for v in leader]
    try:
        for v in leader:
            j = pos.get(id(v))
            if j is not None:
                v.setlb(float(x[j]))
                v.setub(float(x[j]))
        return problem.solve(options=options, time_limit=time_limit, warm_start=x)
    finally:
        for v, lb, ub in saved:
            v.setlb(lb)
            v.setub(ub)


def polish(sl, block, x_map, exact_hessian, options, time_limit):
    """Re-solve with the active set the sweep's point identifies, complementarity exact.

    For each pair, ``s = 0`` is imposed where ``s <= lambda``, else ``lambda`` is
    fixed to 0; the mode's block is deactivated. Returns the NlpResult (or
    None when out of time, compiling included); the model's clone is restored afterwards.
    """
    if time_limit is not None and time_limit <= 0:
        return None
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    for v, val in x_map.items():
        v.set_value(val, skip_validation=True)
    blk = pyo.Block(concrete=True)
    sl.block.add_component("polish", blk)
    blk.active_slack = pyo.ConstraintList()
    fixed = []
    for p in sl.pairs:
        lam = p.multiplier.value or 0.0
        if pyo.value(p.slack) <= lam:
            blk.active_slack.add(p.slack == 0)
        elif not p.multiplier.fixed:
            p.multiplier.fix(0.0)
            fixed.append(p.multiplier)
    block.deactivate()
    try:
        problem = NlpProblem(sl.block, exact_hessian=exact_hessian, deadline=deadline)
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            return None
        return problem.solve(options=options, time_limit=left, warm_start=x_map)
    except TimeLimitReached:
        return None
    finally:
        for v in fixed:
            v.unfix()
        block.activate()
        sl.block.del_component(blk)


def nlp_starts(x_first, problem, leader_pos, count, rng):
    """``count`` copies of ``x_first`` with the leader's values spread over their box
    (:func:`stackopt.leader.spread_starts`: a seeded Latin hypercube; a side without a
    finite bound replaced by the start value -/+ max(1, |start|))."""
    starts = [x_first.copy() for _ in range(count)]
    pos = np.array([j for j in leader_pos if j is not None], dtype=np.intp)
    if count == 0 or pos.size == 0:
        return starts
    xl, xu, _, _ = problem.bounds()
    lb = np.where(xl[pos] > -1e19, xl[pos], -np.inf)  # Ipopt's infinite bounds
    ub = np.where(xu[pos] < 1e19, xu[pos], np.inf)
    for x, p in zip(starts, spread_starts(x_first[pos], lb, ub, count, rng)):
        x[pos] = p
    return starts


def diagnose(problem, sl, x) -> tuple[Status, str]:
    """Where Ipopt's point of local infeasibility ``x`` violates the single-level model.

    ``INFEASIBLE`` when the violation is in the leader's constraints only;
    ``NOT_CONVERGED`` naming the follower when a follower's KKT conditions are
    violated (a follower whose problem is unbounded or infeasible at the
    leader's strategy has no KKT point).
    """
    xl, xu, cl, cu = problem.bounds()
    c = problem.constraint_values(x) if problem.m else np.zeros(0)
    viol = np.maximum(np.maximum(cl - c, c - cu), 0.0)
    owner = {}
    for name in sl.block.followers:
        for cd in sl.block.followers[name].component_data_objects(pyo.Constraint, descend_into=True):
            owner[id(cd)] = name
    shared = sl.block.component("shared")  # shared constraints, written once, and their ties
    for cd in (shared.component_data_objects(pyo.Constraint) if shared is not None else ()):
        owner[id(cd)] = "shared"
    leader = ComponentSet(sl.block.leader_constraints.values())
    worst: dict = {}
    for cd, v in zip(problem.constraints, viol):
        who = owner.get(id(cd), "leader" if cd in leader else "reformulation")
        worst[who] = max(worst.get(who, 0.0), float(v))
    tol = 1e-6
    bad = {k: v for k, v in worst.items() if v > tol}
    followers = sorted(k for k in bad if k not in ("leader", "reformulation", "shared"))
    pos = {id(v): j for j, v in enumerate(problem.variables)}
    inside = clipped(sl.leader_variables, [x[pos[id(v)]] if id(v) in pos else (v.value or 0.0)
                                           for v in sl.leader_variables])
    leader_at = ", ".join(f"{v.name}={val:.6g}" for v, val in zip(sl.leader_variables, inside))
    if followers:
        names = ", ".join(f"{f!r} (violation {bad[f]:.3g})" for f in followers)
        return Status.NOT_CONVERGED, (
            f"no KKT point of follower {names} found near the leader's strategy {leader_at}: its "
            "problem may be unbounded or infeasible there, or Ipopt stalled; not a proof of "
            "infeasibility")
    if "shared" in bad:
        return Status.NOT_CONVERGED, (
            f"no generalized Nash equilibrium found near the leader's strategy {leader_at}: the "
            f"shared constraints or their multipliers stay violated (by {bad['shared']:.3g}); the "
            "followers' joint set may be empty there, or Ipopt stalled; not a proof of infeasibility")
    if "leader" in bad:
        return Status.INFEASIBLE, (
            f"the leader's constraints stay violated (by {bad['leader']:.3g} of their magnitude "
            "at the start) at Ipopt's point of local infeasibility")
    return Status.NOT_CONVERGED, ("Ipopt reported local infeasibility, but no constraint is "
                                  f"violated by more than {tol:g} at its point")
