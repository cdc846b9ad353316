"""``mpec-scip``: the single-level model as a MINLP, solved globally by SCIP in a guarded child process.

SCIP runs through pyscipopt in a child process whose standard output and
error go to ``/dev/null`` (no pipe that could fill up and stall it); the
parent waits at most the time limit plus ``kill_grace`` seconds, then kills
the child and reports ``TIME_LIMIT``. The model is handed over as the
solver-neutral :class:`~stackopt.mpec.minlp.Minlp`, so the child never walks
Pyomo expressions.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
import traceback

import numpy as np
from pyomo.common.config import Bool, ConfigDict, ConfigValue, In, NonNegativeFloat, PositiveFloat

from ..methods import Method, MethodOutput, register_method
from ..result import Status
from .linking import link_linear_arguments
from .minlp import FORMULATIONS, Minlp, reformulate
from .pipeline import build_single_level, declare_pipeline_options

_SCIP_STATUS = {
    "optimal": Status.OPTIMAL,
    "gaplimit": Status.OPTIMAL,  # gap closed to the requested tolerance
    "timelimit": Status.TIME_LIMIT,
    "infeasible": Status.INFEASIBLE,
    "nodelimit": Status.NOT_CONVERGED,
    "totalnodelimit": Status.NOT_CONVERGED,
    "stallnodelimit": Status.NOT_CONVERGED,
    "memlimit": Status.SOLVER_ERROR,
    "userinterrupt": Status.NOT_CONVERGED,
}


def _optional_positive(val):
    if val is None:
        return None
    val = float(val)
    if not val > 0:
        raise ValueError(f"expected a positive number or None, got {val}")
    return val


def _optional_start_method(val):
    if val is None:
        return None
    if val not in ("fork", "spawn", "forkserver"):
        raise ValueError(f"expected 'fork', 'spawn' or 'forkserver', got {val!r}")
    return val


@register_method("mpec-scip", "fortuny-amat-mccarl")
class ScipMpec(Method):
    """Global MPEC solution with SCIP: complementarity as big-M, SOS1 or indicator constraints.

    Reformulation (see :mod:`stackopt.mpec.minlp`): each pair
    ``0 <= lambda _|_ s(x) >= 0`` of the single-level model becomes, with a
    binary ``z``, ``s(x) <= M_s (1 - z)`` and ``lambda <= M_lambda z`` (or the
    indicator ``z = 0 => lambda <= 0``) for ``formulation='bigm'``
    (Fortuny-Amat & McCarl 1981; ``M_s`` from the variables' bounds by
    interval arithmetic, a ``ValueError`` naming a variable whose needed bound
    is missing); an SOS1 set ``{lambda, s}`` for ``'sos1'``; two indicator
    constraints for ``'indicator'``. The resulting MINLP is solved to global
    optimality by SCIP (spatial branch and bound for nonconvex terms), so it
    is the optimistic bilevel optimum: the leader's favourite among the
    followers' KKT points (the equilibria, when followers are convex).
    Before SCIP sees it, every linear argument of a singular term (``Q`` in
    ``Q^(-1/gamma)``) becomes a bounded auxiliary variable, so linear
    constraints on it tighten the term's relaxation
    (:mod:`~stackopt.mpec.linking`; option ``link_arguments``).

    The result carries SCIP's best bound and relative gap; the status is
    ``OPTIMAL`` when the gap closed (to ``gap_tol``), ``TIME_LIMIT`` at the
    time limit (the ``time_limit`` of ``run``, else ``default_time_limit``)
    with the best solution found, if any.
    """

    CONFIG = ConfigDict("mpec-scip")
    CONFIG.declare("formulation", ConfigValue(
        default="bigm", domain=In(FORMULATIONS),
        doc="how a complementarity pair becomes constraints: bigm, sos1 or indicator"))
    CONFIG.declare("multiplier_bound", ConfigValue(
        default=None, domain=_optional_positive,
        doc="big-M on the multipliers for formulation='bigm' (None: an indicator constraint)"))
    CONFIG.declare("link_arguments", ConfigValue(
        default=True, domain=Bool,
        doc="give linear arguments of singular terms (negative or fractional powers, "
            "denominators, log, sqrt) a bounded auxiliary variable that linear constraints reach"))
    CONFIG.declare("gap_tol", ConfigValue(
        default=1e-6, domain=NonNegativeFloat, doc="relative gap at which SCIP stops (limits/gap)"))
    CONFIG.declare("default_time_limit", ConfigValue(
        default=3600.0, domain=PositiveFloat, doc="time limit (s) when run() gets none"))
    CONFIG.declare("kill_grace", ConfigValue(
        default=30.0, domain=PositiveFloat,
        doc="seconds beyond the time limit after which the SCIP process is killed"))
    CONFIG.declare("start_method", ConfigValue(
        default=None, domain=_optional_start_method,
        doc="how the SCIP process is started: fork (default where available) or spawn"))
    CONFIG.declare("scip_params", ConfigValue(
        default={}, domain=dict, doc="further SCIP parameters (name -> value)"))
    declare_pipeline_options(CONFIG)

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        start = time.perf_counter()
        sl = build_single_level(game, block_name=config.block_name, dump=config.dump)
        sl.deactivate_complementarity()
        problem = reformulate(sl, config.formulation, config.multiplier_bound)
        if config.link_arguments:
            link_linear_arguments(problem)
        index = {name: i for i, name in enumerate(problem.names[: problem.n_model])}
        limit = float(time_limit) if time_limit is not None else config.default_time_limit
        limit = max(limit - (time.perf_counter() - start), 1e-3)
        params = {"limits/gap": config.gap_tol, "randomization/randomseedshift": int(seed)}
        params.update(config.scip_params)
        sol = solve_guarded(problem, limit, params, grace=config.kill_grace,
                            start_method=config.start_method)

        def pick(variables):
            out = []
            for v in variables:
                j = index.get(v.name)
                if sol.get("x") is not None and j is not None:
                    out.append(sol["x"][j])
                else:
                    out.append(_initial(v))
            return np.array(out, dtype=float)

        x = sol.get("x")
        return MethodOutput(
            leader=pick(sl.leader_variables),
            status=sol["status"],
            claimed_objective=sol.get("objective"),
            bound=sol.get("bound"),
            gap=sol.get("gap"),
            message=sol.get("message", ""),
            history=[dict(wall_time_s=time.perf_counter() - start,
                          n_vars=float(len(problem.names)),
                          n_binary=float(problem.vtype.count("B")))],
            follower_hint=pick(sl.follower_variables) if x is not None else None,
        )


def _initial(v) -> float:
    val = 0.0 if v.value is None else float(v.value)
    if v.lb is not None:
        val = max(val, float(v.lb))
    if v.ub is not None:
        val = min(val, float(v.ub))
    return val


# --------------------------------------------------------------------------- guard
def solve_guarded(problem: Minlp, time_limit: float, params: dict, grace: float = 30.0,
                  start_method: str | None = None) -> dict:
    """Solve ``problem`` with SCIP in a child process; never waits past ``time_limit + grace``.

    Returns a dict with ``status`` (a :class:`Status`), ``message`` and, when
    SCIP found a solution, ``x``, ``objective``, ``bound``, ``gap``.
    ``start_method``: multiprocessing start method (default ``fork`` where
    available: fast; ``spawn`` for parents with many threads).
    """
    import pyscipopt  # noqa: F401  (imported before forking: the child needs no import lock)

    available = mp.get_all_start_methods()
    if start_method is None:
        start_method = "fork" if "fork" in available else "spawn"
    if start_method not in available:
        raise ValueError(f"start_method must be one of {available}, got {start_method!r}")
    ctx = mp.get_context(start_method)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(problem, time_limit, params, send), daemon=True)
    proc.start()
    send.close()
    deadline = time.monotonic() + time_limit + grace
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return dict(status=Status.TIME_LIMIT,
                            message=f"SCIP did not return within {time_limit:g}+{grace:g} s; its "
                                    "process was killed")
            if recv.poll(min(left, 0.5)):
                try:
                    out = recv.recv()
                except EOFError:
                    proc.join(5)
                    return dict(status=Status.SOLVER_ERROR,
                                message=f"SCIP process ended without a result (exit code {proc.exitcode})")
                out["status"] = Status(out["status"])
                return out
            if not proc.is_alive() and not recv.poll():
                return dict(status=Status.SOLVER_ERROR,
                            message=f"SCIP process ended without a result (exit code {proc.exitcode})")
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)


def _child_main(problem: Minlp, time_limit: float, params: dict, conn) -> None:
    """Entry point of the SCIP process: silence the output, solve, send the result."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    except OSError:
        pass
    try:
        out = _solve_in_child(problem, time_limit, params)
    except Exception as exc:  # reported to the parent as a solver error
        out = dict(status=Status.SOLVER_ERROR.value,
                   message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    try:
        conn.send(out)
    finally:
        conn.close()


def _solve_in_child(problem: Minlp, time_limit: float, params: dict) -> dict:
    model, xs = build_scip(problem)
    model.setParam("limits/time", float(time_limit))
    for key, val in params.items():
        model.setParam(key, val)
    model.optimize()
    status = model.getStatus()
    mapped = _SCIP_STATUS.get(status, Status.SOLVER_ERROR)
    out = dict(status=mapped.value, message=f"SCIP status {status!r}")
    if model.getNSols() > 0:
        sol = model.getBestSol()
        out["x"] = [float(model.getSolVal(sol, v)) for v in xs[: problem.n_model]]
        out["objective"] = float(model.getSolObjVal(sol))
        out["gap"] = float(model.getGap())
    elif mapped is Status.OPTIMAL:
        out["status"] = Status.SOLVER_ERROR.value
    bound = float(model.getDualbound())
    if math.isfinite(bound):
        out["bound"] = bound
    if mapped is Status.TIME_LIMIT and "x" not in out:
        out["message"] += "; no feasible solution found"
    return out


def build_scip(problem: Minlp):
    """A pyscipopt model of ``problem`` with output hidden; returns (model, variables)."""
    import pyscipopt as scip

    model = scip.Model()
    model.hideOutput()
    model.setParam("display/verblevel", 0)
    xs = []
    for name, lb, ub, vtype in zip(problem.names, problem.lb, problem.ub, problem.vtype):
        xs.append(model.addVar(name=name, lb=lb, ub=ub, vtype=vtype))
    conv = _ScipExpr(xs, scip)
    obj = conv(problem.objective)
    if _is_linear(problem.objective):
        model.setObjective(obj, problem.sense)
    else:
        t = model.addVar(name="objective", lb=None, ub=None)
        if problem.sense == "minimize":
            model.addCons(obj - t <= 0, name="objective_epigraph")
        else:
            model.addCons(obj - t >= 0, name="objective_hypograph")
        model.setObjective(t, problem.sense)
    for name, tree, lo, hi in problem.constraints:
        e = conv(tree)
        if lo is not None and hi is not None and lo == hi:
            model.addCons(e == lo, name=name)
            continue
        if lo is not None:
            model.addCons(e >= lo, name=f"{name}_lo" if hi is not None else name)
        if hi is not None:
            model.addCons(e <= hi, name=name)
    for name, idx in problem.sos1:
        model.addConsSOS1([xs[i] for i in idx], name=name)
    for name, z, active, tree, hi in problem.indicators:
        model.addConsIndicator(conv(tree) <= hi, binvar=xs[z], activeone=bool(active), name=name)
    return model, xs


def _is_linear(tree) -> bool:
    return tree[0] in ("lin", "c", "v")


class _ScipExpr:
    """Nested tuples (:mod:`stackopt.mpec.minlp`) -> pyscipopt expressions."""

    def __init__(self, xs, scip):
        self.xs = xs
        self.scip = scip
        self.memo: dict[int, object] = {}
        self.funcs = {"exp": scip.exp, "log": scip.log, "sqrt": scip.sqrt,
                      "sin": scip.sin, "cos": scip.cos, "abs": abs}

    def __call__(self, tree):
        hit = self.memo.get(id(tree))
        if hit is None:
            hit = self._build(tree)
            self.memo[id(tree)] = (hit, tree)
            return hit
        return hit[0]

    def _build(self, tree):
        kind = tree[0]
        if kind == "c":
            return tree[1]
        if kind == "v":
            return self.xs[tree[1]]
        if kind == "lin":
            _, const, idx, coef = tree
            return self.scip.quicksum([const] + [c * self.xs[i] for i, c in zip(idx, coef)])
        if kind == "+":
            return self.scip.quicksum(self(t) for t in tree[1])
        if kind == "*":
            return self(tree[1]) * self(tree[2])
        if kind == "/":
            return self(tree[1]) / self(tree[2])
        if kind == "-":
            return -self(tree[1])
        if kind == "^":
            base, expo = self(tree[1]), tree[2]
            if float(expo).is_integer():
                expo = int(expo)
            return base ** expo
        return self.funcs[kind](self(tree[1]))
