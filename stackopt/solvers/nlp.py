"""Hand any Pyomo NLP to Ipopt through cyipopt, with exact sparse derivatives.

Pyomo's own ``ipopt`` and ``cyipopt`` interfaces need the AMPL Solver Library,
which is not available here. :class:`NlpProblem` reads a Pyomo model (or block)
with one active objective, equality/inequality/ranged constraints and variable
bounds, compiles the objective, the constraint bodies, their sparse Jacobian
and the lower triangle of the Hessian of the Lagrangian once with
:mod:`stackopt.expr` (derivatives are Pyomo's symbolic ones), and solves it
with ``cyipopt.Problem``. Variable and constraint bounds are read again at
every :meth:`NlpProblem.solve`, so a mutable ``Param`` in a bound (for example
a regularisation parameter) can change between solves without recompiling.

Nothing is written onto the model unless ``load_solution=True``. The
array-level adapter underneath (:func:`ipopt_solve`, :class:`ArrayCallbacks`,
:class:`LinearRowCallbacks`, :class:`IpoptRun`) lives in :mod:`stackopt.solvers.ipopt`.

>>> result = solve_nlp(model, time_limit=10)
>>> result.status, result.objective, result.x[model.x]
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.core as pyo
from pyomo.common.collections import ComponentMap
from pyomo.common.gc_manager import PauseGC
from pyomo.core.expr.numvalue import native_numeric_types
from pyomo.core.expr.visitor import identify_variables

from stackopt.core import Status
from stackopt.expr import compile_exprs, compile_sparse, derivatives

from .ipopt import _INF, ArrayCallbacks, ipopt_solve


@dataclass
class NlpResult:
    """Outcome of one Ipopt solve.

    ``x`` maps each variable of the problem to its value, ``duals`` each active
    constraint to Ipopt's multiplier (Lagrangian ``f + sum_i y_i c_i`` of the
    problem in minimisation form), ``objective`` is in the model's own sense.
    """

    status: Status
    x: ComponentMap
    objective: float
    duals: ComponentMap
    iterations: int
    message: str
    ipopt_status: int
    wall_time_s: float
    values: np.ndarray = field(repr=False)  # x as an array, in NlpProblem.variables order
    multipliers: np.ndarray = field(repr=False)  # duals as an array, in NlpProblem.constraints order
    constraint_violation: float = float("nan")

    @property
    def ok(self) -> bool:
        return self.status is Status.CONVERGED


class TimeLimitReached(Exception):
    """A preparation step that checks a deadline (compiling an NLP, building a
    reformulation) passed it."""


class NlpProblem:
    """A Pyomo NLP compiled once for cyipopt; :meth:`solve` may be called many times.

    ``model``: a ConcreteModel or Block. Its active ``Objective`` (exactly one)
    and active ``Constraint`` data (descending into sub-blocks) define the
    problem; the variables are the unfixed ones appearing there. Mutable
    Params and fixed variables are read at every evaluation (immutable Params
    are constants), and constraint and variable *bounds* at every solve.
    ``exact_hessian=False`` skips compiling the Hessian of the Lagrangian and
    lets Ipopt use its limited-memory quasi-Newton approximation. ``deadline``
    (a ``time.perf_counter()`` value) is checked between the expressions
    compiled; past it :class:`TimeLimitReached` is raised.

    Derivatives are the sweeps of :mod:`stackopt.expr_diff` (only through
    the nodes above a wanted variable); a constraint is nonlinear where one of
    its Jacobian entries depends on a variable, and only those enter the
    Hessian, whose row ``j`` is differentiated with respect to the variables
    up to ``j`` (its lower triangle) only.
    """

    def __init__(self, model, exact_hessian: bool = True, deadline: float | None = None):
        if not hasattr(model, "component_data_objects"):
            raise ValueError(f"model must be a Pyomo ConcreteModel or Block, got {model!r}")
        objs = list(model.component_data_objects(pyo.Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise ValueError(
                f"model {model.name!r} must have exactly one active objective, found {len(objs)}"
            )
        self.model = model
        self.objective = objs[0]
        self.sense = int(self.objective.sense)
        self.constraints = list(
            model.component_data_objects(pyo.Constraint, active=True, descend_into=True)
        )
        for c in self.constraints:
            if not c.has_lb() and not c.has_ub():
                raise ValueError(f"constraint {c.name!r} has neither a lower nor an upper bound")
        self._deadline = deadline
        seen: dict[int, Any] = {}
        for e in self._until([self.objective.expr] + [c.body for c in self.constraints]):
            for v in identify_variables(e, include_fixed=False):
                seen.setdefault(id(v), v)
        self.variables = list(seen.values())
        if not self.variables:
            raise ValueError(f"model {model.name!r} has no unfixed variables in its objective or constraints")
        n, m = len(self.variables), len(self.constraints)
        self.n, self.m = n, m
        with PauseGC():  # the derivative expressions are many small objects, all kept
            self._compile(exact_hessian)
        self._deadline = None

    def _compile(self, exact_hessian: bool) -> None:
        n, m = self.n, self.m
        fexpr = self.sense * self.objective.expr
        self._f = compile_exprs(self._until([fexpr]), self.variables)
        grad_entries = self._entries([fexpr])
        self._grad = compile_sparse(self._until(grad_entries), self.variables, (1, n))
        bodies = [c.body for c in self.constraints]
        self._c = compile_exprs(self._until(bodies), self.variables)
        jac_entries = self._entries(bodies)
        self._jac = compile_sparse(self._until(jac_entries), self.variables, (m, n))
        self.exact_hessian = bool(exact_hessian)
        self._hess, self._hess_nl = (
            self._compile_hessian(fexpr, bodies, _nonlinear_rows(jac_entries),
                                  bool(_nonlinear_rows(grad_entries)))
            if self.exact_hessian else (None, np.zeros(0, dtype=np.intp)))

    def _until(self, items):
        """``items``, checking the deadline before each."""
        for item in items:
            if self._deadline is not None and time.perf_counter() > self._deadline:
                raise TimeLimitReached(f"time limit reached while compiling the NLP of "
                                       f"{self.model.name!r} ({len(self.constraints)} constraints)")
            yield item

    def _entries(self, exprs) -> list:
        """``(row, col, derivative)`` of ``exprs`` over the variables, one row at a time."""
        return [(i, j, d) for i, e in enumerate(self._until(exprs))
                for j, d in sorted(derivatives(e, self.variables).items())]

    def _compile_hessian(self, fexpr, bodies, nonlinear, objective_nonlinear):
        """Lower triangle of sigma*H_f + sum_i y_i H_ci over the nonlinear functions only."""
        aux = pyo.ConcreteModel()
        aux.sigma = pyo.Var()
        aux.y = pyo.Var(range(len(nonlinear)))
        terms = [aux.y[k] * bodies[i] for k, i in enumerate(nonlinear)]
        if objective_nonlinear:
            terms.append(aux.sigma * fexpr)
        inputs = self.variables + [aux.sigma] + [aux.y[k] for k in range(len(nonlinear))]
        entries = []
        if terms:
            grad = derivatives(pyo.quicksum(terms), self.variables)
            for j in self._until(sorted(grad)):  # row j: columns k <= j only
                entries.extend((j, k, d) for k, d in
                               sorted(derivatives(grad[j], self.variables[:j + 1]).items()))
        hess = compile_sparse(self._until(entries), inputs, (self.n, self.n))
        return hess, np.array(nonlinear, dtype=np.intp)

    # ------------------------------------------------------------- callbacks
    def objective_value(self, x: np.ndarray) -> float:
        return float(self._f(x)[0])

    def constraint_values(self, x: np.ndarray) -> np.ndarray:
        return self._c(x)

    def bounds(self):
        """Current variable and constraint bounds (re-read from the model)."""
        xl = np.array([_num(v.lb, -_INF) for v in self.variables])
        xu = np.array([_num(v.ub, _INF) for v in self.variables])
        cl = np.array([_num(c.lb, -_INF) for c in self.constraints])
        cu = np.array([_num(c.ub, _INF) for c in self.constraints])
        return xl, xu, cl, cu

    def start(self, warm_start=None) -> np.ndarray:
        """Starting point: ``warm_start`` (a mapping var -> value, an NlpResult or an
        array), else the variables' current values, projected into their bounds."""
        xl, xu, _, _ = self.bounds()
        if warm_start is None:
            x0 = np.array([v.value if v.value is not None else 0.0 for v in self.variables], float)
        elif isinstance(warm_start, NlpResult):
            x0 = np.array([warm_start.x.get(v, v.value or 0.0) for v in self.variables], float)
        elif isinstance(warm_start, np.ndarray):
            if warm_start.shape != (self.n,):
                raise ValueError(f"warm_start array must have shape ({self.n},), got {warm_start.shape}")
            x0 = warm_start.astype(float).copy()
        elif isinstance(warm_start, Mapping) or isinstance(warm_start, ComponentMap):
            x0 = np.array([_lookup(warm_start, v) for v in self.variables], float)
        else:
            raise ValueError(
                f"warm_start must be a mapping var -> value, an NlpResult or an array, got {type(warm_start).__name__}"
            )
        return np.clip(x0, xl, xu)

    def solve(self, options: Mapping | None = None, time_limit: float | None = None,
              warm_start=None, load_solution: bool = False) -> NlpResult:
        """Solve with Ipopt; never raises for solver failures (see ``NlpResult.status``)."""
        xl, xu, cl, cu = self.bounds()
        x0 = self.start(warm_start)
        opts = {} if self.exact_hessian else {"hessian_approximation": "limited-memory"}
        opts.update(options or {})
        callbacks = _HessianCallbacks(self) if self.exact_hessian else _Callbacks(self)
        run = ipopt_solve(callbacks, x0, xl, xu, cl, cu, options=opts, time_limit=time_limit)
        x = run.x
        cvals = self._c(x) if self.m else np.zeros(0)
        viol = 0.0
        if self.m:
            viol = float(max(np.max(np.maximum(cl - cvals, 0.0)), np.max(np.maximum(cvals - cu, 0.0))))
        viol = max(viol, float(np.max(np.maximum(xl - x, 0.0))), float(np.max(np.maximum(x - xu, 0.0))))
        xmap = ComponentMap(zip(self.variables, x.tolist()))
        duals = ComponentMap(zip(self.constraints, run.mult_g.tolist()))
        obj = self.sense * self.objective_value(x)
        if load_solution:
            for v, val in zip(self.variables, x):
                v.set_value(float(val), skip_validation=True)
        return NlpResult(status=run.status, x=xmap, objective=obj, duals=duals,
                         iterations=run.iterations, message=run.message, ipopt_status=run.code,
                         wall_time_s=run.wall_time_s, values=x, multipliers=run.mult_g,
                         constraint_violation=viol)


class _Callbacks(ArrayCallbacks):
    """The object cyipopt calls back into (no Hessian: Ipopt approximates it)."""

    def __init__(self, prob: NlpProblem):
        self.p = prob
        self.iterations = 0
        self._jac_struct = (prob._jac.rows, prob._jac.cols)
        self._grad_cols = prob._grad.cols

    def objective(self, x):
        return self.p.objective_value(x)

    def gradient(self, x):
        g = np.zeros(self.p.n)
        np.add.at(g, self._grad_cols, self.p._grad(x))
        return g

    def constraints(self, x):
        return self.p._c(x)

    def jacobianstructure(self):
        return self._jac_struct

    def jacobian(self, x):
        return self.p._jac(x)


class _HessianCallbacks(_Callbacks):
    """Callbacks with the exact Hessian of the Lagrangian (lower triangle)."""

    def __init__(self, prob: NlpProblem):
        super().__init__(prob)
        self._hess_struct = (prob._hess.rows, prob._hess.cols)
        self._buf = np.zeros(prob.n + 1 + len(prob._hess_nl))

    def hessianstructure(self):
        return self._hess_struct

    def hessian(self, x, lagrange, obj_factor):
        n = self.p.n
        buf = self._buf
        buf[:n] = x
        buf[n] = obj_factor
        if len(self.p._hess_nl):
            buf[n + 1:] = np.asarray(lagrange)[self.p._hess_nl]
        return self.p._hess(buf)


def solve_nlp(model, options: Mapping | None = None, time_limit: float | None = None,
              warm_start=None, load_solution: bool = False) -> NlpResult:
    """Compile ``model`` and solve it once with Ipopt; see :class:`NlpProblem`.

    ``options``: Ipopt options (``print_level`` is 0 unless given);
    ``time_limit``: seconds of wall time (Ipopt's ``max_wall_time``);
    ``warm_start``: mapping var -> value (default: the variables' current values);
    ``load_solution``: write the solution onto the model's variables.
    """
    return NlpProblem(model).solve(options=options, time_limit=time_limit,
                                   warm_start=warm_start, load_solution=load_solution)


def _nonlinear_rows(entries) -> list[int]:
    """The rows of ``(row, col, derivative)`` entries with a derivative that depends on a
    variable (a fixed one included: such a row only adds entries that compile to zero)."""
    return sorted({i for i, _, d in entries
                   if d.__class__ not in native_numeric_types and d.is_potentially_variable()})


def _num(val, default: float) -> float:
    return default if val is None else float(val)


def _lookup(mapping, v) -> float:
    if v in mapping:
        return float(mapping[v])
    return float(v.value) if v.value is not None else 0.0
