"""Pyomo's symbolic derivatives, swept once per expression over the nodes that need them.

Pyomo's ``reverse_sd`` differentiates an expression with respect to every
leaf, keyed in ``ComponentMap`` objects, and walks it with a general visitor;
for the games here (a follower objective with tens of thousands of terms of
which only the follower's own variables are wanted) most of that work is
thrown away. :func:`reverse_symbolic` runs the same reverse sweep with
Pyomo's own differentiation rules (``diff_with_pyomo``'s rule for each node
type; those of sums, products, negations and named expressions written out
here the same way), so the derivative expressions are the ones ``reverse_sd``
builds (the tests compare them), but over plain dicts keyed by ``id``, one
iterative post-order walk, and only through the nodes above at least one
wanted variable, adding nothing to children below none. Where Pyomo's rule
table cannot be imported, ``reverse_sd`` itself is used.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyomo.common.gc_manager import PauseGC
from pyomo.core.base.var import VarData
from pyomo.core.expr.calculus.diff_with_pyomo import DifferentiationException, reverse_sd
from pyomo.core.expr.numeric_expr import UnaryFunctionExpression
from pyomo.core.expr.numvalue import native_numeric_types

from .poly import is_expression

try:  # Pyomo's rule table for the reverse symbolic sweep
    from pyomo.core.expr.calculus.diff_with_pyomo import _diff_GeneralExpression, _diff_map
except ImportError:  # pragma: no cover - other Pyomo versions
    _diff_map = None
try:  # the unary functions Pyomo differentiates
    from pyomo.core.expr.calculus.diff_with_pyomo import _unary_map as _UNARY
except ImportError:  # pragma: no cover - other Pyomo versions
    _UNARY = None

_NATIVE = native_numeric_types


class _Symbolic:
    """``val_dict`` of the symbolic sweep: every node stands for itself."""

    __slots__ = ()

    def __getitem__(self, node):
        return node


class _ById:
    """``der_dict`` of the sweep: a plain dict keyed by ``id`` (every node is kept alive
    by the expression being differentiated)."""

    __slots__ = ("d",)

    def __init__(self, d: dict):
        self.d = d

    def __getitem__(self, node):
        return self.d[id(node)]

    def __setitem__(self, node, val):
        self.d[id(node)] = val


def _post_order(root, pos: dict[int, int]):
    """Nodes above a wanted variable, children first; the wanted leaves met; the ids of
    both (``wanted``); and ``der`` holding 0 for every node and leaf seen."""
    der: dict[int, object] = {}
    wanted: set[int] = set()
    order, leaves = [], []
    stack = [root]
    while stack:
        node = stack[-1]
        if id(node) in der:  # pushed by two parents
            stack.pop()
            continue
        kids = node.args
        pending = [c for c in kids if id(c) not in der and c.__class__ not in _NATIVE
                   and is_expression(c)]
        if pending:
            stack.extend(reversed(pending))  # leftmost first, as Pyomo's walk
            continue
        stack.pop()
        for c in kids:
            if id(c) not in der:  # a leaf or a number, met for the first time
                der[id(c)] = 0
                if id(c) in pos and isinstance(c, VarData) and not c.fixed:
                    wanted.add(id(c))
                    leaves.append(c)
        der[id(node)] = 0
        if not wanted.isdisjoint(map(id, kids)):
            wanted.add(id(node))
            order.append(node)
    return order, leaves, wanted, der


# the rules of the commonest nodes, written out as Pyomo's are (val_dict[x] is x in the
# symbolic sweep) but adding only to children above a wanted variable
def _sum(node, der, wanted):
    d = der[id(node)]
    for arg in node.args:
        if id(arg) in wanted:
            der[id(arg)] += d


def _product(node, der, wanted):
    d = der[id(node)]
    arg1, arg2 = node.args
    if id(arg1) in wanted:
        der[id(arg1)] += d * arg2
    if id(arg2) in wanted:
        der[id(arg2)] += d * arg1


def _negation(node, der, wanted):
    arg = node.args[0]
    der[id(arg)] -= der[id(node)]


def _named(node, der, wanted):
    arg = node.args[0]
    der[id(arg)] += der[id(node)]


ABS_FLOOR = 1e-300  # added to |x| in abs's derivative: 0 at x = 0, the same value elsewhere


def _abs(node, der, wanted):
    """Pyomo's rule ``der * x / abs(x)`` with ``abs(x) + ABS_FLOOR`` below: the same value
    wherever ``|x| > 1e-284`` (the floor is lost in rounding), and at the kink ``x = 0``
    the element 0 of the subdifferential ``[-1, 1]`` (its smallest), where Pyomo's
    rule gives 0/0, a NaN that would stall a method landing there."""
    arg = node.args[0]
    der[id(arg)] += der[id(node)] * arg / (abs(arg) + ABS_FLOOR)


_OWN: dict = {}
if _diff_map is not None:
    from pyomo.core.expr.calculus.diff_with_pyomo import (
        _diff_NegationExpression,
        _diff_ProductExpression,
        _diff_SumExpression,
    )

    _OWN = {_diff_SumExpression: _sum, _diff_ProductExpression: _product,
            _diff_NegationExpression: _negation}
_RULE: dict[type, tuple] = {}


def _rule(node) -> tuple:
    """``(own rule or None, Pyomo's rule or None)`` for the node's class (and, for a unary
    function, its name)."""
    cls = node.__class__
    if isinstance(node, UnaryFunctionExpression):
        return (_abs if node.getname() == "abs" else None), _diff_map.get(cls)
    hit = _RULE.get(cls)
    if hit is None:
        pyomo_rule = _diff_map.get(cls)
        if pyomo_rule is None and node.is_named_expression_type():
            hit = (_named, _diff_GeneralExpression)
        else:
            hit = (_OWN.get(pyomo_rule), pyomo_rule)
        _RULE[cls] = hit
    return hit


def differentiable(node) -> str | None:
    """Why Pyomo's differentiation rules cannot differentiate the expression node ``node``
    (``None`` where they can, and for nodes that hold no variable)."""
    if _diff_map is None or not node.is_potentially_variable() or node.is_named_expression_type():
        return None
    if _diff_map.get(node.__class__) is None:
        return f"an expression of type {node.__class__.__name__}"
    if isinstance(node, UnaryFunctionExpression) and _UNARY is not None \
            and node.getname() not in _UNARY:
        return f"the function {node.getname()!r}"
    return None


def reverse_symbolic(expr, pos: dict[int, int]) -> dict[int, object]:
    """Symbolic derivatives of ``expr`` with respect to the unfixed variables whose ``id`` is
    in ``pos``: ``{pos[id(v)]: derivative expression}`` (structurally nonzero ones only)."""
    if _diff_map is None:  # pragma: no cover
        ders = reverse_sd(expr)
        return {pos[id(v)]: d for v, d in ders.items()
                if id(v) in pos and isinstance(v, VarData) and not v.fixed}
    order, leaves, wanted, der = _post_order(expr, pos)
    der[id(expr)] = 1
    val, dd = _Symbolic(), _ById(der)
    for node in reversed(order):
        own, pyomo_rule = _RULE.get(node.__class__) or _rule(node)
        if own is not None:
            own(node, der, wanted)
        elif pyomo_rule is not None:
            pyomo_rule(node, val, dd)
        else:
            raise DifferentiationException(
                f"Unsupported expression type for differentiation: {type(node)}")
    return {pos[id(v)]: der[id(v)] for v in leaves}


def _derivatives(expr, pos: dict[int, int]) -> dict[int, object]:
    if expr.__class__ in _NATIVE:
        return {}
    if isinstance(expr, VarData):
        j = pos.get(id(expr))
        return {j: 1.0} if j is not None and not expr.fixed else {}
    if not expr.is_expression_type() or not expr.is_potentially_variable():
        return {}
    try:
        out = reverse_symbolic(expr, pos)
    except DifferentiationException as exc:
        raise ValueError(f"Pyomo cannot differentiate the expression {expr}: {exc}") from None
    return {j: d for j, d in out.items() if not (d.__class__ in _NATIVE and d == 0)}


def positions(wrt: Sequence) -> dict[int, int]:
    return {id(v): j for j, v in enumerate(wrt)}


def derivatives(expr, wrt: Sequence) -> dict[int, object]:
    """Pyomo's symbolic derivatives of ``expr``: position in ``wrt`` -> derivative expression.

    Fixed variables and parameters get no derivative.
    """
    with PauseGC():
        return _derivatives(expr, positions(wrt))


def jacobian_entries(exprs: Iterable, wrt: Sequence) -> list[tuple[int, int, object]]:
    """``(row, position in wrt, derivative)`` of every structurally nonzero derivative of
    ``exprs``, columns ascending within each row (one index of ``wrt`` for all rows)."""
    pos = positions(wrt)
    with PauseGC():
        return [(i, j, d) for i, e in enumerate(exprs) for j, d in sorted(_derivatives(e, pos).items())]
