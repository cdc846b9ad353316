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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.core.base.var import VarData
from pyomo.core.expr.calculus.diff_with_pyomo import reverse_sd
from pyomo.core.expr.numvalue import native_numeric_types
from pyomo.core.expr.visitor import identify_variables

from stackopt.core import Status
from stackopt.expr import compile_exprs, compile_jacobian, compile_sparse

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


class NlpProblem:
    """A Pyomo NLP compiled once for cyipopt; :meth:`solve` may be called many times.

    ``model``: a ConcreteModel or Block. Its active ``Objective`` (exactly one)
    and active ``Constraint`` data (descending into sub-blocks) define the
    problem; the variables are the unfixed ones appearing there. Mutable
    Params and fixed variables are read at every evaluation (immutable Params
    are constants), and constraint and variable *bounds* at every solve.
    ``exact_hessian=False`` skips compiling the Hessian of the Lagrangian and
    lets Ipopt use its limited-memory quasi-Newton approximation.
    """

    def __init__(self, model, exact_hessian: bool = True):
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
        seen: dict[int, Any] = {}
        for e in [self.objective.expr] + [c.body for c in self.constraints]:
            for v in identify_variables(e, include_fixed=False):
                seen.setdefault(id(v), v)
        self.variables = list(seen.values())
        if not self.variables:
            raise ValueError(f"model {model.name!r} has no unfixed variables in its objective or constraints")
        n, m = len(self.variables), len(self.constraints)
        self.n, self.m = n, m
        fexpr = self.sense * self.objective.expr
        self._f = compile_exprs([fexpr], self.variables)
        self._grad = compile_jacobian([fexpr], self.variables)
        bodies = [c.body for c in self.constraints]
        self._c = compile_exprs(bodies, self.variables)
        self._jac = compile_jacobian(bodies, self.variables)
        self.exact_hessian = bool(exact_hessian)
        self._hess, self._hess_nl = (self._compile_hessian(fexpr, bodies) if self.exact_hessian
                                     else (None, np.zeros(0, dtype=np.intp)))

    def _compile_hessian(self, fexpr, bodies):
        """Lower triangle of sigma*H_f + sum_i y_i H_ci over the nonlinear functions only."""
        aux = pyo.ConcreteModel()
        aux.sigma = pyo.Var()
        nonlinear = [i for i, b in enumerate(bodies) if _degree(b) != 1 and _degree(b) != 0]
        aux.y = pyo.Var(range(len(nonlinear)))
        terms = [aux.y[k] * bodies[i] for k, i in enumerate(nonlinear)]
        if _degree(fexpr) not in (0, 1):
            terms.append(aux.sigma * fexpr)
        inputs = self.variables + [aux.sigma] + [aux.y[k] for k in range(len(nonlinear))]
        entries = []
        if terms:
            lag = pyo.quicksum(terms)
            pos = {id(v): j for j, v in enumerate(self.variables)}
            grad = _derivatives(lag, pos)
            for j in sorted(grad):
                for k, d in sorted(_derivatives(grad[j], pos).items()):
                    if k <= j:
                        entries.append((j, k, d))
        hess = compile_sparse(entries, inputs, (self.n, self.n))
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


def _derivatives(expr, pos: dict) -> dict:
    """Pyomo's symbolic derivatives of ``expr``: position (``pos[id(var)]``) -> expression."""
    if expr.__class__ in native_numeric_types:
        return {}
    if isinstance(expr, VarData):
        j = pos.get(id(expr))
        return {j: 1.0} if j is not None and not expr.fixed else {}
    if not expr.is_potentially_variable():
        return {}
    out = {}
    for leaf, d in reverse_sd(expr).items():
        j = pos.get(id(leaf))
        if j is not None and not leaf.fixed:
            out[j] = d
    return out


def _degree(expr):
    if expr.__class__ in (int, float) or not hasattr(expr, "polynomial_degree"):
        return 0
    return expr.polynomial_degree()


def _num(val, default: float) -> float:
    return default if val is None else float(val)


def _lookup(mapping, v) -> float:
    if v in mapping:
        return float(mapping[v])
    return float(v.value) if v.value is not None else 0.0
