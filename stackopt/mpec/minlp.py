"""Complementarity pairs as mixed-integer constraints, in a solver-neutral, picklable form.

:func:`reformulate` turns a :class:`~stackopt.mpec.pipeline.SingleLevel` into
a :class:`Minlp`: variables with bounds and types, the objective and the
constraints as small expression trees (nested tuples), plus SOS1 sets and
indicator constraints. A solver process can rebuild it without Pyomo.

For a pair ``0 <= lambda _|_ s(x) >= 0`` (``s`` linear, as follower
constraints and bounds are):

- ``bigm`` (Fortuny-Amat & McCarl 1981): binary ``z``;
  ``s(x) <= M_s (1 - z)`` with ``M_s`` the largest value of ``s`` over the
  variables' bounds (interval arithmetic on the linear body; a needed bound
  that is missing is a ``ValueError`` naming the variable), and
  ``lambda <= M_lambda z`` when ``multiplier_bound`` is given, otherwise the
  indicator ``z = 0 => lambda <= 0`` (multipliers have no natural bound).
- ``sos1``: slack variable ``t = s(x) >= 0`` and the SOS1 set ``{lambda, t}``.
- ``indicator``: binary ``z``; ``z = 1 => s(x) <= 0`` and ``z = 0 => lambda <= 0``.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import pyomo.environ as pyo
from pyomo.core.base.var import VarData
from pyomo.core.expr import numeric_expr as ne
from pyomo.core.expr.numvalue import native_numeric_types, value
from pyomo.core.expr.visitor import identify_variables
from pyomo.repn.standard_repn import generate_standard_repn

FORMULATIONS = ("bigm", "sos1", "indicator")
_FUNCS = {"exp", "log", "sqrt", "sin", "cos", "abs", "log10", "tan"}


@dataclass
class Minlp:
    """A mixed-integer nonlinear program; variables ``0..n_model-1`` are the model's."""

    names: list = field(default_factory=list)
    lb: list = field(default_factory=list)
    ub: list = field(default_factory=list)
    vtype: list = field(default_factory=list)  # "C", "B" or "I"
    objective: tuple = ("c", 0.0)
    sense: str = "minimize"
    constraints: list = field(default_factory=list)  # (name, tree, lo | None, hi | None)
    sos1: list = field(default_factory=list)  # (name, [var indices])
    indicators: list = field(default_factory=list)  # (name, z, active_value, tree, hi): z == active_value => tree <= hi
    n_model: int = 0

    def add_var(self, name: str, lb=None, ub=None, vtype: str = "C") -> int:
        self.names.append(name)
        self.lb.append(lb)
        self.ub.append(ub)
        self.vtype.append(vtype)
        return len(self.names) - 1


class _TreeBuilder:
    """Pyomo expression -> nested tuples over variable indices (shared subtrees stay shared)."""

    def __init__(self, index: dict):
        self.index = index
        self.memo: dict[int, tuple] = {}
        self.keep: list = []
        if sys.getrecursionlimit() < 20000:
            sys.setrecursionlimit(20000)

    def __call__(self, expr) -> tuple:
        if expr.__class__ in native_numeric_types:
            return ("c", float(expr))
        repn = generate_standard_repn(expr, compute_values=True, quadratic=False)
        lin = ("lin", float(value(repn.constant)),
               tuple(self._idx(v) for v in repn.linear_vars),
               tuple(float(value(c)) for c in repn.linear_coefs))
        if repn.nonlinear_expr is None:
            return lin
        return ("+", (lin, self.walk(repn.nonlinear_expr)))

    def _idx(self, v) -> int:
        try:
            return self.index[id(v)]
        except KeyError:
            raise ValueError(f"variable {v.name!r} is not a variable of the single-level model") from None

    def walk(self, node) -> tuple:
        if node.__class__ in native_numeric_types:
            return ("c", float(node))
        hit = self.memo.get(id(node))
        if hit is None:
            hit = self._walk(node)
            self.memo[id(node)] = hit
            self.keep.append(node)
        return hit

    def _walk(self, node) -> tuple:
        if isinstance(node, VarData):
            return ("c", float(node.value)) if node.fixed else ("v", self._idx(node))
        if not node.is_expression_type() or not node.is_potentially_variable():
            return ("c", float(value(node)))
        if node.is_named_expression_type():
            return self.walk(node.expr)
        cls = node.__class__
        args = node.args
        if cls in (ne.SumExpression, ne.LinearExpression):
            return ("+", tuple(self.walk(a) for a in args))
        if cls in (ne.ProductExpression, ne.MonomialTermExpression):
            return ("*", self.walk(args[0]), self.walk(args[1]))
        if cls is ne.NegationExpression:
            return ("-", self.walk(args[0]))
        if cls is ne.DivisionExpression:
            return ("/", self.walk(args[0]), self.walk(args[1]))
        if cls is ne.PowExpression:
            base, expo = args
            if expo.__class__ in native_numeric_types or not expo.is_potentially_variable():
                return ("^", self.walk(base), float(value(expo)))
            return ("exp", ("*", self.walk(expo), ("log", self.walk(base))))
        if cls in (ne.UnaryFunctionExpression, ne.AbsExpression):
            name = node.getname()
            if name not in _FUNCS:
                raise ValueError(f"function {name!r} in {node} has no SCIP counterpart")
            inner = self.walk(args[0])
            if name == "log10":
                return ("*", ("c", 1.0 / math.log(10.0)), ("log", inner))
            if name == "tan":
                return ("/", ("sin", inner), ("cos", inner))
            return (name, inner)
        raise ValueError(f"expression type {cls.__name__} in {node} has no SCIP counterpart")


def reformulate(sl, formulation: str = "bigm", multiplier_bound: float | None = None) -> Minlp:
    """The MINLP of a single-level model: its constraints plus the pairs as ``formulation``."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    blk = sl.block
    objs = list(blk.component_data_objects(pyo.Objective, active=True, descend_into=True))
    cons = list(blk.component_data_objects(pyo.Constraint, active=True, descend_into=True))
    variables: dict[int, VarData] = {}
    for e in [objs[0].expr] + [c.body for c in cons] + [p.multiplier for p in sl.pairs]:
        for v in identify_variables(e, include_fixed=False):
            variables.setdefault(id(v), v)
    for v in list(sl.leader_variables) + list(sl.follower_variables):
        if not v.fixed:
            variables.setdefault(id(v), v)
    out = Minlp()
    index = {}
    for v in variables.values():
        vtype = "B" if v.is_binary() else ("I" if v.is_integer() else "C")
        index[id(v)] = out.add_var(v.name, v.lb, v.ub, vtype)
    out.n_model = len(out.names)
    tree = _TreeBuilder(index)
    out.objective = tree(objs[0].expr)
    out.sense = "maximize" if objs[0].sense == pyo.maximize else "minimize"
    for c in cons:
        out.constraints.append((c.name, tree(c.body),
                                None if c.lb is None else float(c.lb),
                                None if c.ub is None else float(c.ub)))
    for k, p in enumerate(sl.pairs):
        lam = index[id(p.multiplier)]
        s = tree(p.slack)
        if formulation == "sos1":
            m_s = _upper_bound(p, required=False)
            t = out.add_var(f"slack[{k}]", 0.0, m_s)
            out.constraints.append((f"slack_def[{k}]", ("+", (s, ("-", ("v", t)))), 0.0, 0.0))
            out.sos1.append((f"sos1[{k}]", [lam, t]))
            continue
        z = out.add_var(f"active[{k}]", 0.0, 1.0, "B")
        if formulation == "bigm":
            m_s = max(_upper_bound(p, required=True), 0.0)
            # s - M_s (1 - z) <= 0  <=>  s + M_s z <= M_s
            out.constraints.append((f"bigm_slack[{k}]", ("+", (s, ("*", ("c", m_s), ("v", z)))), None, m_s))
        else:
            out.indicators.append((f"active_slack[{k}]", z, 1, s, 0.0))
        if formulation == "bigm" and multiplier_bound is not None:
            out.constraints.append((f"bigm_mult[{k}]",
                                    ("+", (("v", lam), ("*", ("c", -float(multiplier_bound)), ("v", z)))),
                                    None, 0.0))
        else:
            out.indicators.append((f"inactive_mult[{k}]", z, 0, ("v", lam), 0.0))
    return out


def _upper_bound(pair, required: bool):
    """Largest value of the linear slack over the variables' bounds (None if unbounded)."""
    repn = generate_standard_repn(pair.slack, compute_values=True, quadratic=False)
    if not repn.is_linear():
        raise ValueError(f"the slack of the {pair.name} is not linear: {pair.slack}")
    total = float(value(repn.constant))
    for v, c in zip(repn.linear_vars, repn.linear_coefs):
        c = float(value(c))
        bound = v.ub if c > 0 else v.lb
        if bound is None:
            if not required:
                return None
            side = "an upper" if c > 0 else "a lower"
            raise ValueError(
                f"big-M for the {pair.name} needs {side} bound on variable {v.name!r}, which has "
                "none; give the variable bounds or use formulation='sos1' or 'indicator'"
            )
        total += c * float(bound)
    return total
