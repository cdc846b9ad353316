"""Solver ``scip``: the single-level model written by Pyomo's NL writer, solved by SCIP in a subprocess.

The model (with the mode's block, and with linked arguments, see
:mod:`~stackopt.methods.mpec.linking`) is written as an AMPL ``.nl`` file by Pyomo's
own NL writer (pure Python, no AMPL library), which SCIP reads with its NL
reader: binaries, integers, SOS1 sets and the nonlinear functions SCIP has
(``exp``, ``log``, ``log10``, ``sqrt``, ``sin``, ``cos``, ``abs``, powers).
SCIP runs in a child process started with :mod:`subprocess` (so it works
inside daemonic processes such as a default Dask worker, which may not have
multiprocessing children), in its own session, with its output going to
files. SCIP's own time limit is what is left of the method's when it starts
solving (writing the model and starting the process count); SCIP does not
check it everywhere (its presolve can expand products for minutes), so the
parent waits at most until the method's limit plus ``kill_grace`` seconds,
then kills the process and everything it started and reports
``TIME_LIMIT``. The process's address space is capped at ``memory_limit``
MiB (``RLIMIT_AS``, set in the child before SCIP is loaded) and SCIP's own
``limits/memory`` is set below that, so a model whose presolve grows
without bound ends with ``SOLVER_ERROR`` naming the limit instead of taking
the machine's memory. Starting the process (Python, then pyscipopt and
numpy) costs a few tenths of a second per solve.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.common.config import ConfigDict, ConfigValue
from pyomo.core.expr.numeric_expr import UnaryFunctionExpression
from pyomo.core.expr.visitor import StreamBasedExpressionVisitor
from pyomo.repn.plugins.nl_writer import NLWriter

from stackopt.core import Status

from ...registry import MethodOutput
from ..linking import link_linear_arguments
from ..options import finite_nonnegative, finite_positive, flag, mapping
from ..pipeline import check_deadline
from ..registry import Solver, clipped, register_solver

CHILD = Path(__file__).with_name("scip_process.py")

_SCIP_STATUS = {
    "optimal": Status.OPTIMAL,
    "gaplimit": Status.OPTIMAL,  # gap closed to the requested tolerance
    "timelimit": Status.TIME_LIMIT,
    "infeasible": Status.INFEASIBLE,
    "nodelimit": Status.MAX_ITERATIONS,  # a node budget (limits/nodes ...): deterministic
    "totalnodelimit": Status.MAX_ITERATIONS,
    "stallnodelimit": Status.MAX_ITERATIONS,
    "sollimit": Status.NOT_CONVERGED,
    "bestsollimit": Status.NOT_CONVERGED,
    "userinterrupt": Status.NOT_CONVERGED,
    "unbounded": Status.NOT_CONVERGED,
    "inforunbd": Status.NOT_CONVERGED,
    "memlimit": Status.SOLVER_ERROR,
}
_EXPLAIN = {
    "infeasible": "no point satisfies the leader's constraints and every follower's KKT "
                  "conditions together (a follower whose problem is unbounded or infeasible at "
                  "every leader strategy has no KKT point)",
    "unbounded": "the leader's objective is unbounded over the followers' KKT points",
    "inforunbd": "SCIP proved the single-level model infeasible or unbounded, without "
                 "telling which",
}
DEFAULT_MEMORY_MB = 4096.0  # the SCIP process's address space by default
HEADROOM_MB = 512.0  # of it, what Python, pyscipopt and the model's text take besides SCIP's memory
# SCIP holds a nonlinear objective as a constraint ``f <= t``, feasible within its absolute
# feastol (1e-6). The single-level model's objective has magnitude one at the start; SCIP gets
# it multiplied by this, so the claimed objective is accurate to about 3e-9 of that magnitude,
# which keeps the digits of an optimum far below it (a profit near zero after costs: gnash14's
# is 1/13000 of its magnitude at the start). Much larger asks SCIP to close its gap on a
# tolerance finer than the gap: on the known-optimum library 1e3 and 1e4 took 10-20 times
# longer on gnash10 or gnash19 or ran into the time limit; 1e2 lost digits on gnash14.
OBJECTIVE_UNITS = 300.0
# Each leader constraint (divided by its magnitude) is multiplied by this for SCIP, so that its
# absolute feasibility tolerance (1e-6) is 1e-9 of the constraint's magnitude, as the gradient
# method's feasibility_tol: at 1 a regulator's budget of 300 (magnitude ~1800 with the spend's
# sensitivity) was overspent by 1.7e-4 at SCIP's optimum.
CONSTRAINT_UNITS = 1e3
# unary functions SCIP's NL reader takes (Pyomo's names)
_FUNCTIONS = {"exp", "log", "log10", "sqrt", "sin", "cos", "abs"}


@register_solver("scip")
class ScipSolver(Solver):
    """Global solution with SCIP (spatial branch and bound for nonconvex terms).

    A mode with a continuation parameter is solved once at ``eps_final``.
    Before writing, every linear argument of a singular term becomes a
    bounded auxiliary variable (option ``link_arguments``). The result carries
    SCIP's best bound and relative gap (``None`` where SCIP has none: its
    infinity is never reported as a number); the status is ``OPTIMAL`` when
    the gap closed (to ``gap_tol``), ``TIME_LIMIT`` at the time limit (the
    method's ``time_limit``, else ``default_time_limit``) with the best
    solution found, if any. A node budget (``scip_params={"limits/nodes": N}``)
    ends with ``MAX_ITERATIONS``: SCIP is deterministic, so unlike its time limit
    the budget gives the same answer on a busy machine as on a quiet one.

    SCIP solves the single-level model in its own units
    (:mod:`~stackopt.methods.mpec.units`), its objective multiplied by
    ``OBJECTIVE_UNITS`` and each leader constraint by ``CONSTRAINT_UNITS``: its
    absolute feasibility tolerances mean the same for a game and for any positive
    multiple of its objectives or leader constraints. The claimed objective and the bound are in the game's units.
    """

    CONFIG = ConfigDict("scip")
    CONFIG.declare("link_arguments", ConfigValue(
        default=True, domain=flag,
        doc="give linear arguments of singular terms (negative or fractional powers, "
            "denominators, log, sqrt) a bounded auxiliary variable that linear constraints reach"))
    CONFIG.declare("gap_tol", ConfigValue(
        default=1e-6, domain=finite_nonnegative, doc="relative gap at which SCIP stops (limits/gap)"))
    CONFIG.declare("default_time_limit", ConfigValue(
        default=3600.0, domain=finite_positive, doc="time limit (s) when the method gets none"))
    CONFIG.declare("kill_grace", ConfigValue(
        default=1.0, domain=finite_positive,
        doc="seconds beyond the time limit after which the SCIP process is killed (SCIP "
            "stops by itself at the limit where it checks it)"))
    CONFIG.declare("memory_limit", ConfigValue(
        default=DEFAULT_MEMORY_MB, domain=finite_positive,
        doc="MiB of address space the SCIP process may use (RLIMIT_AS, where the platform "
            f"has it); SCIP's own limits/memory is this less {HEADROOM_MB:g} MiB for Python and "
            "the libraries"))
    CONFIG.declare("scip_params", ConfigValue(
        default={}, domain=mapping, doc="further SCIP parameters (name -> value)"))

    def solve(self, sl, mode, block, seed, time_limit, clock_start):
        cfg = self.config
        if mode.continuation:
            mode.set_parameter(block, mode.config.eps_final)
        limit = float(time_limit) if time_limit is not None else cfg.default_time_limit
        deadline = clock_start + limit
        check_functions(sl.block, deadline)
        objective = sl.block.objective
        objective.set_value(OBJECTIVE_UNITS * objective.expr)
        for c in sl.block.leader_constraints.values():
            c.set_value(CONSTRAINT_UNITS * c.body <= 0)
        per_unit = sl.units.objective / OBJECTIVE_UNITS  # of the game's objective
        linked = link_linear_arguments(sl.block, deadline) if cfg.link_arguments else 0
        params = {"limits/gap": cfg.gap_tol, "randomization/randomseedshift": int(seed),
                  "limits/memory": max(cfg.memory_limit - HEADROOM_MB, 0.5 * cfg.memory_limit)}
        params.update(cfg.scip_params)
        workdir = tempfile.mkdtemp(prefix="stackopt-scip-")
        try:
            columns = write_nl(sl.block, os.path.join(workdir, "model.nl"))
            check_deadline(deadline, "writing the single-level model for SCIP")
            left = max(deadline - time.perf_counter(), 1e-3)
            sol = run_scip(workdir, len(columns), left, params, grace=cfg.kill_grace,
                           memory_limit=cfg.memory_limit)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        x = ComponentMap(zip(columns, sol["x"])) if sol.get("x") is not None else None

        def pick(variables):
            return clipped(variables, [x[v] if x is not None and v in x and x[v] is not None
                                       else _initial(v) for v in variables])

        message = sol["message"]
        if mode.continuation:
            message += f"; {mode.name} at eps={mode.config.eps_final:g}"
        return MethodOutput(
            leader=pick(sl.leader_variables),
            status=sol["status"],
            claimed_objective=_times(sol.get("objective"), per_unit),
            bound=_times(sol.get("bound"), per_unit),
            gap=sol.get("gap"),
            message=message,
            history=[dict(wall_time_s=time.perf_counter() - clock_start,
                          scip_time_s=float(sol.get("solving_time", float("nan"))),
                          nodes=float(sol.get("nodes", float("nan"))),
                          n_vars=float(len(columns)), n_linked=float(linked),
                          n_binary=float(sum(1 for v in columns if v.is_binary())))],
            follower_hint=pick(sl.follower_variables) if x is not None else None,
        )


def _times(value, factor):
    return None if value is None else float(value) * factor


def _initial(v) -> float:
    return 0.0 if v.value is None else float(v.value)


def write_nl(block, path: str) -> list:
    """Write ``block`` (its active objective and constraints) as ``path`` with a .col file
    beside it; returns the variables in column order."""
    base = os.path.splitext(path)[0]
    with open(path, "w") as nl, open(base + ".row", "w") as row, open(base + ".col", "w") as col:
        info = NLWriter().write(block, nl, row, col, symbolic_solver_labels=True,
                                linear_presolve=False, export_defined_variables=False,
                                scale_model=False)
    return list(info.variables)


class _FunctionCheck(StreamBasedExpressionVisitor):
    def __init__(self, where):
        super().__init__()
        self.where = where

    def exitNode(self, node, data):
        if isinstance(node, UnaryFunctionExpression) and node.getname() not in _FUNCTIONS:
            raise ValueError(f"function {node.getname()!r} in {self.where} has no SCIP counterpart "
                             f"(SCIP's NL reader takes {sorted(_FUNCTIONS)} and powers)")


def check_functions(block, deadline: float | None = None) -> None:
    """Raise ValueError naming a function SCIP's NL reader cannot take, and where it is
    (``deadline`` checked before each component: :class:`~stackopt.solvers.nlp.TimeLimitReached`)."""
    for comp in block.component_data_objects((pyo.Objective, pyo.Constraint), active=True,
                                             descend_into=True):
        check_deadline(deadline, "checking the single-level model's functions for SCIP")
        expr = comp.expr if comp.ctype is pyo.Objective else comp.body
        _FunctionCheck(comp.name).walk_expression(expr)


def child_command(job: str, result: str) -> list[str]:
    """The command that starts the SCIP process (tests put a misbehaving one here)."""
    return [sys.executable, str(CHILD), job, result]


def run_scip(workdir: str, columns: int, time_limit: float, params: dict, grace: float,
             memory_limit: float | None = DEFAULT_MEMORY_MB) -> dict:
    """Solve ``workdir/model.nl`` in a SCIP process; never waits past ``time_limit + grace``.

    ``time_limit`` counts from now (SCIP gets what is left of it once the
    process has read the model); ``memory_limit``: MiB of address space of the
    process (None: unlimited). Returns ``status`` (a :class:`Status`),
    ``message`` and, from SCIP, ``x`` (column order, or None), ``objective``,
    ``bound``, ``gap`` (None where not finite) and the process's
    ``address_space_limit`` (bytes, None where unlimited).
    """
    job, result = os.path.join(workdir, "job.json"), os.path.join(workdir, "result.json")
    with open(job, "w") as fh:
        json.dump({"nl": os.path.join(workdir, "model.nl"), "columns": columns,
                   "time_limit": float(time_limit), "params": params,
                   "memory_limit_mb": None if memory_limit is None else float(memory_limit)}, fh)
    log = os.path.join(workdir, "scip.log")
    with open(log, "w") as err:
        proc = subprocess.Popen(child_command(job, result), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        code = proc.wait(timeout=time_limit + grace)
    except subprocess.TimeoutExpired:
        return dict(status=Status.TIME_LIMIT,
                    message=f"SCIP did not return within {time_limit:g}+{grace:g} s; its "
                            "process was killed")
    finally:
        if proc.poll() is None:
            _kill(proc)
    if not os.path.exists(result):
        signalled = (f", a signal: possibly its memory limit of {memory_limit:g} MiB "
                     "(option memory_limit)" if code < 0 and memory_limit is not None else "")
        return dict(status=Status.SOLVER_ERROR, message=f"SCIP process ended without a result "
                                                        f"(exit code {code}{signalled}){_tail(log)}")
    with open(result) as fh:
        out = json.load(fh)
    if "error" in out:
        memory = ("; the process reached its memory limit of "
                  f"{memory_limit:g} MiB (option memory_limit)"
                  if out["error"].startswith("MemoryError") and memory_limit is not None else "")
        return dict(status=Status.SOLVER_ERROR, message=f"SCIP: {out['error']}{memory}{_tail(log)}")
    name = out["status"]
    status = _SCIP_STATUS.get(name, Status.SOLVER_ERROR)
    message = f"SCIP status {name!r}" + (f": {_EXPLAIN[name]}" if name in _EXPLAIN else "")
    if name == "memlimit":
        message += f": SCIP reached its limits/memory of {params.get('limits/memory')} MiB"
    if status is Status.OPTIMAL and out.get("x") is None:
        status, message = Status.SOLVER_ERROR, message + " without a solution"
    if out.get("x") is None and status is Status.TIME_LIMIT:
        message += "; no feasible solution found"
    out.update(status=status, message=message)
    return out


def _kill(proc) -> None:
    try:
        if hasattr(os, "killpg"):  # the process and anything it started (its own session)
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait(5)


def _tail(path: str, n: int = 400) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""
    return f": {text[-n:]}" if text else ""
