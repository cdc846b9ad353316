"""Linear arguments of singular nonlinear terms as bounded auxiliary variables, on a Pyomo block.

A term such as ``(x + y1 + y2)^(-1/gamma)`` or ``log(x + y)`` has a
singularity or a domain boundary where its linear argument vanishes. A
spatial branch-and-bound solver bounds the term from the bounds of the
argument, and it computes those from the variables' boxes only: a linear
constraint of the model on the same linear form (``x + y1 + y2 >= 150``,
a leader constraint or a valid inequality) does not reach the term, so its
relaxation stays useless however tight the constraint is.

:func:`link_linear_arguments` gives every distinct such argument one
auxiliary variable ``a`` with the defining linear constraint
``a = argument`` and puts ``a`` in place of the argument in every active
objective and constraint of the block (``replace_expressions``). Linear
forms are read with ``generate_standard_repn``; two arguments share one
auxiliary when they are the same linear form (up to a common factor) with
the same constant. The bounds of ``a`` are

- interval arithmetic of the linear form over the variables' bounds
  (``compute_bounds_on_expr``);
- every linear constraint of the block whose body is ``const + s * form``
  (the same variables with proportional coefficients, ``s != 0``), solved
  for ``a``;
- ``a >= 0`` for the base of a power with a non-integer exponent, and for the
  argument of ``log``, ``log10`` and ``sqrt`` (the term is undefined below).

Each bound is implied by the constraints and the domains of the functions,
so the feasible set is unchanged; only the relaxation improves. Affected
terms: bases of powers with a negative or non-integer constant exponent,
denominators, arguments of ``log``, ``log10`` and ``sqrt``, whose argument is
linear in at least two variables. The walk is Pyomo's non-recursive
expression visitor: no recursion limit is touched.
"""
from __future__ import annotations

import math

import pyomo.environ as pyo
from pyomo.contrib.fbbt.fbbt import compute_bounds_on_expr
from pyomo.core.expr import numeric_expr as ne
from pyomo.core.expr.numvalue import is_constant, native_numeric_types
from pyomo.core.expr.visitor import StreamBasedExpressionVisitor, replace_expressions
from pyomo.repn.standard_repn import generate_standard_repn

from .pipeline import check_deadline

LINKING_BLOCK = "linked_arguments"
_DOMAIN_FUNCTIONS = ("log", "log10", "sqrt")


class _SingularArguments(StreamBasedExpressionVisitor):
    """Collects (argument node, must be >= 0) of the singular terms of an expression."""

    def __init__(self):
        super().__init__()
        self.found: list = []

    def exitNode(self, node, data):
        cls = node.__class__
        if issubclass(cls, ne.DivisionExpression):
            self.found.append((node.args[1], False))
        elif issubclass(cls, ne.PowExpression):
            base, expo = node.args
            if expo.__class__ in native_numeric_types or is_constant(expo) \
                    or not expo.is_potentially_variable():
                e = float(pyo.value(expo))
                if e < 0 or not e.is_integer():
                    self.found.append((base, not e.is_integer()))
        elif issubclass(cls, ne.UnaryFunctionExpression) and node.getname() in _DOMAIN_FUNCTIONS:
            self.found.append((node.args[0], True))


def _linear_form(expr):
    """(constant, [(var, coef)]) when ``expr`` is linear in at least two variables, else None."""
    if expr.__class__ in native_numeric_types or not expr.is_potentially_variable():
        return None
    repn = generate_standard_repn(expr, compute_values=True, quadratic=False)
    if not repn.is_linear():
        return None
    terms = [(v, float(c)) for v, c in zip(repn.linear_vars, repn.linear_coefs) if float(c) != 0.0]
    if len({id(v) for v, _ in terms}) < 2:
        return None
    return float(pyo.value(repn.constant)), terms


def _key(terms):
    """Variables and coefficients scaled to a leading coefficient 1 (by name), and that scale."""
    coefs: dict = {}
    for v, c in terms:
        coefs[v.name] = coefs.get(v.name, 0.0) + c
    items = sorted((n, c) for n, c in coefs.items() if c != 0.0)
    if not items:
        return None, 0.0
    scale = items[0][1]
    return tuple((n, round(c / scale, 12)) for n, c in items), scale


def link_linear_arguments(block, deadline: float | None = None) -> int:
    """Replace linear arguments of singular terms on ``block`` by bounded auxiliary variables
    (in place, on a sub-block ``linked_arguments``); returns the number of auxiliaries.
    ``deadline`` (a ``time.perf_counter()`` value) is checked before each component is
    walked (:class:`~stackopt.solvers.nlp.TimeLimitReached`)."""
    comps = list(block.component_data_objects((pyo.Objective, pyo.Constraint), active=True,
                                              descend_into=True))
    finder = _SingularArguments()
    for comp in comps:
        check_deadline(deadline, "linking singular arguments for SCIP")
        finder.walk_expression(comp.expr if comp.ctype is pyo.Objective else comp.body)
    aux: dict = {}  # (key, constant / scale) -> [index, constant, terms, nonnegative]
    substitute: dict = {}
    for node, nonneg in finder.found:
        if id(node) in substitute:
            continue
        form = _linear_form(node)
        if form is None:
            continue
        const, terms = form
        key, scale = _key(terms)
        full = (key, round(const / scale, 12))
        entry = aux.setdefault(full, [len(aux), const, terms, False, key, scale])
        entry[3] = entry[3] or nonneg
        substitute[id(node)] = entry
    if not aux:
        return 0
    link = pyo.Block(concrete=True)
    block.add_component(LINKING_BLOCK, link)
    link.argument = pyo.Var(range(len(aux)))
    link.definition = pyo.ConstraintList()
    for idx, const, terms, _, _, _ in aux.values():
        link.definition.add(link.argument[idx] == const + sum(c * v for v, c in terms))
    substitute = {k: link.argument[e[0]] for k, e in substitute.items()}
    for comp in comps:
        check_deadline(deadline, "linking singular arguments for SCIP")
        if comp.ctype is pyo.Objective:
            comp.expr = replace_expressions(comp.expr, substitute, remove_named_expressions=True)
        else:
            body = replace_expressions(comp.body, substitute, remove_named_expressions=True)
            comp.set_value((comp.lower, body, comp.upper) if not comp.equality
                           else body == comp.upper)
    _bound(link, aux.values(), comps)
    return len(aux)


def _bound(link, entries, comps) -> None:
    """Bounds of the auxiliaries from the variables' boxes, linear constraints and domains."""
    linear = []  # (key, scale, constant, lower, upper) of every linear constraint, keyed once
    for c in comps:
        if c.ctype is not pyo.Constraint:
            continue
        repn = generate_standard_repn(c.body, compute_values=True, quadratic=False)
        if not repn.is_linear() or not repn.linear_vars:
            continue
        terms = [(v, float(k)) for v, k in zip(repn.linear_vars, repn.linear_coefs)]
        linear.append((*_key(terms), float(pyo.value(repn.constant)),
                       None if c.lower is None else float(pyo.value(c.lower)),
                       None if c.upper is None else float(pyo.value(c.upper))))
    for idx, const, terms, nonneg, key, scale in entries:
        lo, hi = compute_bounds_on_expr(const + sum(c * v for v, c in terms))
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        if nonneg:
            lo = max(lo, 0.0)
        for c_key, c_scale, c_const, c_lo, c_hi in linear:
            if c_key != key:
                continue
            # body = c_const + s * (a - const), s = c_scale / scale: solve lo <= body <= hi for a
            s = c_scale / scale
            for bound, is_lower in ((c_lo, True), (c_hi, False)):
                if bound is None:
                    continue
                val = const + (bound - c_const) / s
                if is_lower == (s > 0):
                    lo = max(lo, val)
                else:
                    hi = min(hi, val)
        var = link.argument[idx]
        var.setlb(lo if math.isfinite(lo) else None)
        var.setub(hi if math.isfinite(hi) else None)
