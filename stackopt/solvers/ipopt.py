"""The array-level Ipopt adapter: ``min f(x) s.t. cl <= c(x) <= cu, lb <= x <= ub`` through cyipopt.

:func:`ipopt_solve` hands a problem given by callbacks over NumPy arrays
(:class:`ArrayCallbacks`; :class:`LinearRowCallbacks` for constraints that are
the rows of a dense matrix) to ``cyipopt.Problem`` and returns an
:class:`IpoptRun`: Ipopt's return code mapped to a :class:`~stackopt.core.result.Status`,
the solution, the multipliers and a message naming the return code. Solver
failures are a status, never an exception. :mod:`stackopt.solvers.nlp` builds Pyomo
NLPs on it (and re-exports these names).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stackopt.core import Status

_INF = 1e20  # Ipopt treats |bound| >= 1e19 as infinite

# Ipopt's ApplicationReturnStatus -> stackopt Status
_IPOPT_STATUS = {
    0: Status.CONVERGED,  # Solve_Succeeded (a local optimum)
    1: Status.CONVERGED,  # Solved_To_Acceptable_Level
    2: Status.INFEASIBLE,  # Infeasible_Problem_Detected
    3: Status.NOT_CONVERGED,  # Search_Direction_Becomes_Too_Small
    4: Status.NOT_CONVERGED,  # Diverging_Iterates
    5: Status.NOT_CONVERGED,  # User_Requested_Stop
    6: Status.CONVERGED,  # Feasible_Point_Found (square problems)
    -1: Status.MAX_ITERATIONS,  # Maximum_Iterations_Exceeded
    -2: Status.NOT_CONVERGED,  # Restoration_Failed
    -3: Status.NOT_CONVERGED,  # Error_In_Step_Computation
    -4: Status.TIME_LIMIT,  # Maximum_CpuTime_Exceeded
    -5: Status.TIME_LIMIT,  # Maximum_WallTime_Exceeded
}
_IPOPT_NAMES = {
    0: "Solve_Succeeded", 1: "Solved_To_Acceptable_Level", 2: "Infeasible_Problem_Detected",
    3: "Search_Direction_Becomes_Too_Small", 4: "Diverging_Iterates", 5: "User_Requested_Stop",
    6: "Feasible_Point_Found", -1: "Maximum_Iterations_Exceeded", -2: "Restoration_Failed",
    -3: "Error_In_Step_Computation", -4: "Maximum_CpuTime_Exceeded",
    -5: "Maximum_WallTime_Exceeded", -10: "Not_Enough_Degrees_Of_Freedom",
    -11: "Invalid_Problem_Definition", -12: "Invalid_Option", -13: "Invalid_Number_Detected",
    -100: "Unrecoverable_Exception", -101: "NonIpopt_Exception_Thrown",
    -102: "Insufficient_Memory", -199: "Internal_Error",
}
_DEFAULT_OPTIONS = {"print_level": 0, "sb": "yes"}
OPTIONS_DOCUMENTATION = "https://coin-or.github.io/Ipopt/OPTIONS.html"


def check_options(options) -> dict:
    """``options`` (Ipopt option name -> value) as Ipopt takes them, checked by Ipopt itself
    before any run: an unknown name or a value Ipopt refuses is a ``ValueError`` naming it.

    An integer given for a real-valued option is taken as a float. The domain of
    the methods' ``ipopt_options``; Ipopt's own explanation of a refused value
    (its type, range or settings) is part of the message.
    """
    if not isinstance(options, Mapping):
        raise ValueError(f"expected a dict of Ipopt option name -> value, got {options!r}")
    if not options:
        return {}
    import cyipopt

    out = {}
    problem = cyipopt.Problem(n=1, m=0, problem_obj=_NoProblem(), lb=[0.0], ub=[1.0], cl=[], cu=[])
    try:
        for key, val in options.items():
            if not isinstance(key, str):
                raise ValueError(f"Ipopt option names are strings, got {key!r}")
            ok, said = _ipopt_takes(problem, key, val)
            if not ok and isinstance(val, int) and not isinstance(val, bool) and "Number" in said:
                val = float(val)
                ok, said = _ipopt_takes(problem, key, val)
            if ok:
                out[key] = val
            elif "not a valid option" in said:
                raise ValueError(f"unknown Ipopt option {key!r} in ipopt_options; Ipopt's options "
                                 f"and their values are listed at {OPTIONS_DOCUMENTATION}")
            else:
                why = " ".join(said.split())
                raise ValueError(f"Ipopt refuses the value {val!r} of option {key!r} in "
                                 f"ipopt_options" + (f": {why}" if why else "")
                                 + f" (Ipopt's options: {OPTIONS_DOCUMENTATION})")
    finally:
        problem.close()
    return out


class _NoProblem:
    """The callbacks of a one-variable problem that is never solved (options are checked on it)."""

    def objective(self, x):
        return 0.0

    def gradient(self, x):
        return np.zeros(1)


def _ipopt_takes(problem, key: str, val) -> tuple[bool, str]:
    """Whether Ipopt accepts ``key = val``, and what it printed (its reason where it does not)."""
    import ctypes
    import os
    import sys
    import tempfile

    sys.stdout.flush()
    with tempfile.TemporaryFile() as said:
        saved = os.dup(1)  # Ipopt prints its reasons to the C library's stdout
        try:
            os.dup2(said.fileno(), 1)
            try:
                problem.add_option(key, val)
                ok = True
            except (TypeError, ValueError):
                ok = False
            finally:
                try:
                    ctypes.CDLL(None).fflush(None)
                except (OSError, AttributeError):  # no C library to flush: its buffer stays
                    pass
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        said.seek(0)
        return ok, said.read().decode(errors="replace").strip()


@dataclass
class IpoptRun:
    """Outcome of one array-level Ipopt solve (:func:`ipopt_solve`).

    ``mult_g`` are the constraint multipliers, ``mult_x_L``/``mult_x_U`` the
    bound multipliers (both ``>= 0``), Ipopt's Lagrangian being
    ``f + mult_g^T c - mult_x_L^T (x - lb) + mult_x_U^T (x - ub)``.
    """

    status: Status
    code: int
    x: np.ndarray
    mult_g: np.ndarray
    mult_x_L: np.ndarray
    mult_x_U: np.ndarray
    iterations: int
    message: str
    wall_time_s: float

    @property
    def ok(self) -> bool:
        return self.status is Status.CONVERGED


class ArrayCallbacks:
    """The callbacks cyipopt calls, over arrays: subclasses define ``objective``,
    ``gradient``, ``constraints``, ``jacobianstructure``, ``jacobian`` and, for an
    exact Hessian, ``hessianstructure`` and ``hessian``. ``iterations`` counts
    Ipopt's iterations."""

    iterations = 0
    problem = None  # the cyipopt problem being solved, during ``ipopt_solve``

    def intermediate(self, alg_mod, iter_count, *args):
        self.iterations = int(iter_count)
        return True


class LinearRowCallbacks(ArrayCallbacks):
    """Callbacks of a problem whose constraints are the rows ``c(x) = M x`` of a dense ``M``;
    subclasses set ``self.M`` and define the objective, its gradient and Hessian."""

    M: np.ndarray

    def constraints(self, x):
        return self.M @ x

    def jacobianstructure(self):
        r, c = np.indices(self.M.shape)
        return r.ravel(), c.ravel()

    def jacobian(self, x):
        return self.M.ravel()


def ipopt_solve(callbacks: ArrayCallbacks, x0, lb, ub, cl, cu, options: Mapping | None = None,
                time_limit: float | None = None) -> IpoptRun:
    """Solve ``min f(x) s.t. cl <= c(x) <= cu, lb <= x <= ub`` with Ipopt from ``x0``.

    ``options`` are Ipopt options (``print_level`` 0 unless given), ``time_limit``
    seconds of wall time (``max_wall_time``). Solver failures are a status,
    never an exception; a rejected option raises ``ValueError``.
    """
    import cyipopt

    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds, got {time_limit!r}")
    opts = dict(_DEFAULT_OPTIONS)
    opts.update(options or {})
    if time_limit is not None:
        opts["max_wall_time"] = float(min(time_limit, opts.get("max_wall_time", np.inf)))
    lb, ub = np.asarray(lb, float), np.asarray(ub, float)
    cl, cu = np.asarray(cl, float), np.asarray(cu, float)
    start = time.perf_counter()
    problem = cyipopt.Problem(n=lb.size, m=cl.size, problem_obj=callbacks, lb=lb, ub=ub, cl=cl, cu=cu)
    callbacks.problem = problem  # for ``intermediate``: Ipopt's current iterate and violations
    try:
        for key, val in opts.items():
            try:
                problem.add_option(key, val)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Ipopt option {key!r}={val!r} was rejected: {exc}") from None
        x, info = problem.solve(np.asarray(x0, float))
    finally:
        callbacks.problem = None
        problem.close()
    code = int(info["status"])
    msg = info["status_msg"]
    if isinstance(msg, bytes):
        msg = msg.decode(errors="replace")
    return IpoptRun(
        status=_IPOPT_STATUS.get(code, Status.SOLVER_ERROR), code=code, x=np.asarray(x, float),
        mult_g=np.asarray(info["mult_g"], float) if cl.size else np.zeros(0),
        mult_x_L=np.asarray(info["mult_x_L"], float), mult_x_U=np.asarray(info["mult_x_U"], float),
        iterations=int(getattr(callbacks, "iterations", 0)),
        message=f"{_IPOPT_NAMES.get(code, f'Ipopt status {code}')}: {msg}",
        wall_time_s=time.perf_counter() - start)
