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
wanted variable, adding nothing to children below none. The rows of a
Jacobian (:func:`jacobian_entries`) share one :class:`Walks`: each node of
their shared DAG is learnt once and each row's order is read from what was
learnt (a security game's 250 gradient entries, each a walk of about 1 700 of
the same 5 400 nodes), the same order a walk of the row alone gives. Where
Pyomo's rule table cannot be imported, ``reverse_sd`` itself is used.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

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


class Walks:
    """What the walks for one set of wanted variables (``pos``) learn of each node, shared by
    every expression differentiated with respect to them: a Jacobian's rows (the gradient
    entries of a security game's followers, each a derivative expression over the same
    objective) share most of their nodes, which each row's walk would otherwise visit
    again, with Pyomo's ``args`` and the type tests of every child.

    ``nodes[id(node)]`` is ``(node, its expression children above a wanted variable, the ids
    of all its children or None where it is above none, its wanted leaves, its serial
    number)``; ``wanted`` holds the ids of the nodes above a wanted variable and of the
    wanted leaves met. Every node is held, so no id is reused by an object made while the
    walks are in use.

    Learning a node costs more than one plain walk through it: where the first
    :data:`PLAIN_AFTER` expressions share no node with the ones before them (a normal-form
    game's gradient entries, each its own sum), the rest are walked plainly
    (:func:`_walk`). Both give the same order, so the same derivatives."""

    __slots__ = ("pos", "nodes", "wanted", "fresh", "shared")

    def __init__(self, pos: dict[int, int]):
        self.pos = pos
        self.nodes: dict[int, tuple] = {}
        self.wanted: set[int] = set()
        self.fresh = 0  # walks that met no node known before
        self.shared = False  # a walk met nodes known before

    @property
    def plain(self) -> bool:
        return not self.shared and self.fresh >= PLAIN_AFTER


PLAIN_AFTER = 2


def _walk(root, pos: dict[int, int]):
    """One walk of ``root``'s DAG, learning nothing for later walks: the nodes above a wanted
    variable, children first (leftmost first, as Pyomo's walk); the wanted leaves met;
    the ids of both (``wanted``); and ``der`` holding 0 for every node and leaf seen."""
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


def _post_order(root, walks: Walks):
    """The nodes above a wanted variable of ``root``'s DAG, children first (leftmost first, as
    Pyomo's walk), the wanted leaves in the order first met, and the ids of the children of
    those nodes. The nodes ``walks`` has not met are walked and learnt (:func:`_learn`);
    where ``root``'s DAG holds nodes met before, the order is then read from what
    ``walks`` knows (:func:`_known_order`)."""
    if id(root) not in walks.nodes:
        fresh = _learn(root, walks)
        if fresh is not None:
            walks.fresh += 1
            return fresh
    walks.shared = True
    return _known_order(root, walks)


def _learn(root, walks: Walks):
    """Walk and learn the nodes of ``root``'s DAG that ``walks`` has not met (the
    descendants of a node it knows are known); where none was known, the answer of
    :func:`_post_order` (this walk's order is the whole DAG's), else None."""
    nodes, wanted, pos = walks.nodes, walks.wanted, walks.pos
    first = len(nodes)  # the records' serial numbers from here on are this walk's
    fresh = True
    order, leaves, kid_ids = [], [], []
    met: set[int] = set()
    stack = [root]
    while stack:
        node = stack[-1]
        if id(node) in nodes:  # pushed by two parents
            stack.pop()
            continue
        kids = node.args
        pending = [c for c in kids if c.__class__ not in _NATIVE and id(c) not in nodes
                   and is_expression(c)]
        if pending:
            stack.extend(reversed(pending))  # leftmost first, as Pyomo's walk
            continue
        stack.pop()
        sub, below = [], []
        for c in kids:
            rec = nodes.get(id(c))
            if rec is not None:  # an expression, learnt
                if rec[2] is not None:
                    sub.append(c)
                if rec[4] < first:
                    fresh = False
            elif id(c) in wanted:  # a wanted leaf met before
                below.append(c)
            elif id(c) in pos and isinstance(c, VarData) and not c.fixed:
                wanted.add(id(c))
                below.append(c)
        if sub or below:
            wanted.add(id(node))
            ids = tuple(map(id, kids))
            nodes[id(node)] = (node, sub, ids, below, len(nodes))
            order.append(node)
            kid_ids.append(ids)
            for c in below:
                if id(c) not in met:
                    met.add(id(c))
                    leaves.append(c)
        else:
            nodes[id(node)] = (node, sub, None, below, len(nodes))
    return (order, leaves, kid_ids) if fresh else None


def _known_order(root, walks: Walks):
    """:func:`_post_order` of a ``root`` whose DAG ``walks`` knows: one depth-first walk
    through the children above a wanted variable only (the others hold none of them)."""
    nodes = walks.nodes
    order, leaves, kid_ids = [], [], []
    rec = nodes[id(root)]
    if rec[2] is None:
        return order, leaves, kid_ids
    met: set[int] = set()
    done = {id(root)}  # entered in this walk
    stack = [(rec, iter(rec[1]))]
    while stack:
        rec, kids = stack[-1]
        for c in kids:
            if id(c) not in done:
                done.add(id(c))
                below = nodes[id(c)]
                stack.append((below, iter(below[1])))
                break
        else:
            stack.pop()
            order.append(rec[0])
            kid_ids.append(rec[2])
            for c in rec[3]:
                if id(c) not in met:
                    met.add(id(c))
                    leaves.append(c)
    return order, leaves, kid_ids


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


def reverse_symbolic(expr, pos: dict[int, int], walks: Walks | None = None) -> dict[int, object]:
    """Symbolic derivatives of ``expr`` with respect to the unfixed variables whose ``id`` is
    in ``pos``: ``{pos[id(v)]: derivative expression}`` (structurally nonzero ones only).
    ``walks``: what earlier walks for the same ``pos`` learnt (:class:`Walks`; without it,
    one plain walk)."""
    if _diff_map is None:  # pragma: no cover
        ders = reverse_sd(expr)
        return {pos[id(v)]: d for v, d in ders.items()
                if id(v) in pos and isinstance(v, VarData) and not v.fixed}
    if walks is None or walks.plain:
        order, leaves, wanted, der = _walk(expr, pos)
    else:
        order, leaves, kid_ids = _post_order(expr, walks)
        wanted = walks.wanted
        der = dict.fromkeys(chain.from_iterable(kid_ids), 0)
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


def _derivatives(expr, pos: dict[int, int], walks: Walks | None = None) -> dict[int, object]:
    if expr.__class__ in _NATIVE:
        return {}
    if isinstance(expr, VarData):
        j = pos.get(id(expr))
        return {j: 1.0} if j is not None and not expr.fixed else {}
    if not expr.is_expression_type() or not expr.is_potentially_variable():
        return {}
    try:
        out = reverse_symbolic(expr, pos, walks)
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
    walks = Walks(pos)  # the rows' DAGs share most of their nodes: each is learnt once
    with PauseGC():
        return [(i, j, d) for i, e in enumerate(exprs)
                for j, d in sorted(_derivatives(e, pos, walks).items())]
