"""Is a follower's objective convex in its own variables? A structural proof, or "don't know".

Where a follower's objective (minimisation form) is convex in its own
variables for any values of the others', each of its KKT points is its best
response, so no search for a better far-away response
(:mod:`stackopt.oracle.deviation`) is needed. :func:`convex_in_own` proves it from
the expression's structure, by rules of disciplined convex programming in the
follower's own variables (the others' and the leader's variables are data):

* an expression affine in the own variables is convex (products with factors
  free of own variables, whatever their sign, included);
* sums of convex terms; a non-negative constant times a convex term, or a factor
  free of own variables that is provably non-negative (a variable whose lower
  bound is at least 0, such as a leader's price) times one;
* ``v * log(v)`` (entropy), ``exp(a)``, ``a ** k`` for even integer ``k`` and
  ``a ** k`` with ``k >= 1`` where ``a`` is a single own variable with a
  non-negative lower bound, ``a`` affine;
* minus a Cournot firm's revenue under isoelastic demand, ``-v * c * (alpha v + s) ** -r``
  with ``v`` a single own variable, ``c >= 0``, ``alpha > 0``, ``0 < r <= 1`` and ``s`` a
  constant ``>= 0`` plus non-negative multiples of other variables: concave revenue
  wherever ``v`` and those variables have non-negative lower bounds (the MacMPEC
  ``gnash`` firms).

Where these rules find no proof, a polynomial of degree at most two (in all
variables) is convex in the own variables where its Hessian in them, whose
entries are then its own-by-own coefficients, is positive semidefinite (for
maximisation, negative): the firms of a Cournot market, ``(c + d x) x - (a - b
(x + y)) x``, whose products of affine factors the rules above do not take.
Those coefficients must be numbers; a mutable Param among them (a value a user
may change between solves) leaves the proof open. Anything else (a sigmoid of
an effort, a quantal response) is "don't know": the search then runs. The walk
is recursive with a depth cap; an expression deeper than the cap is "don't know".

The proof depends on the expression's structure and on nothing else but the
lower bounds of the variables raised to a power ``k >= 1`` and of a revenue's
output and total (the leader's variables among them): values a user may change
between solves. :func:`convexity_conditions` therefore returns the structural
part once (the prepared game keeps it, :mod:`stackopt.kernel`), with the
variables whose lower bounds must be non-negative; the bounds are
checked against their current values at every use. Each sub-expression is
visited once per walk (whether it holds an own variable is kept by node).

A follower's *set* in its own variables is convex where every constraint binding
it is (:func:`convex_constraint`): ``body <= ub`` with ``body`` convex,
``lb <= body`` with ``body`` concave, an equality affine in the own variables
(a nonlinear equality makes the set non-convex: allowed, and searched).
"""
from __future__ import annotations

import numpy as np
from pyomo.core.base.var import VarData
from pyomo.core.expr import numeric_expr as ne
from pyomo.core.expr.numvalue import is_constant, native_numeric_types, value
from pyomo.repn.standard_repn import generate_standard_repn

MAX_DEPTH = 200  # deeper expressions are not analysed


class _Walk:
    def __init__(self, own_vars):
        self.own = {id(v) for v in own_vars}
        self._free: dict[int, bool] = {}
        self.nonnegative: list = []  # variables whose lower bound the proof needs >= 0

    def free(self, e) -> bool:
        """No unfixed own variable in ``e`` (each node's answer kept: one visit per node)."""
        if type(e) in native_numeric_types:
            return True
        memo = self._free
        if id(e) in memo:
            return memo[id(e)]
        stack = [(e, False)]
        while stack:  # post-order without recursion: expressions may be deep
            node, children_done = stack.pop()
            key = id(node)
            if children_done:
                memo[key] = all(type(a) in native_numeric_types or memo[id(a)] for a in node.args)
                continue
            if key in memo:
                continue
            if getattr(node, "is_variable_type", bool)():
                memo[key] = node.fixed or key not in self.own
            elif not getattr(node, "is_expression_type", bool)():  # a Param, a constant
                memo[key] = True
            else:
                stack.append((node, True))
                stack.extend((a, False) for a in node.args
                             if type(a) not in native_numeric_types and id(a) not in memo)
        return memo[id(e)]

    def affine(self, e, depth: int = 0) -> bool:
        if depth > MAX_DEPTH:
            return False
        if self.free(e) or (isinstance(e, VarData) and id(e) in self.own):
            return True
        e = _unwrap(e)
        if isinstance(e, (ne.SumExpression, ne.LinearExpression)):
            return all(self.affine(a, depth + 1) for a in e.args)
        if isinstance(e, ne.NegationExpression):
            return self.affine(e.args[0], depth + 1)
        if isinstance(e, (ne.ProductExpression, ne.MonomialTermExpression)):
            a, b = e.args
            return (self.free(a) and self.affine(b, depth + 1)) or (self.free(b) and self.affine(a, depth + 1))
        if isinstance(e, ne.DivisionExpression):
            return self.free(e.args[1]) and self.affine(e.args[0], depth + 1)
        return False

    def convex(self, e, sign: float, depth: int = 0) -> bool:
        """``sign * e`` is convex in the own variables."""
        if depth > MAX_DEPTH:
            return False
        if self.affine(e, depth):
            return True
        e = _unwrap(e)
        if isinstance(e, (ne.SumExpression, ne.LinearExpression)):
            return all(self.convex(a, sign, depth + 1) for a in e.args)
        if isinstance(e, ne.NegationExpression):
            return self.convex(e.args[0], -sign, depth + 1)
        if isinstance(e, (ne.ProductExpression, ne.MonomialTermExpression)):
            a, b = e.args
            for c, rest in ((a, b), (b, a)):
                if _is_number(c):
                    s = sign * float(value(c))
                    return s == 0 or self.convex(rest, 1.0 if s > 0 else -1.0, depth + 1)
            for c, rest in ((a, b), (b, a)):
                if self.free(c) and _nonnegative(c):
                    return self.convex(rest, sign, depth + 1)
            return self._entropy(a, b) if sign > 0 else self._revenue(a, b)
        if isinstance(e, ne.DivisionExpression) and _is_number(e.args[1]):
            d = float(value(e.args[1]))
            return d != 0 and self.convex(e.args[0], sign / d, depth + 1)
        if sign <= 0:
            return False
        if isinstance(e, ne.PowExpression) and _is_number(e.args[1]):
            base, k = e.args[0], float(value(e.args[1]))
            if not self.affine(base, depth + 1):
                return False
            if k.is_integer() and k >= 0 and int(k) % 2 == 0:
                return True
            return k >= 1 and self._nonnegative_own(base)
        if isinstance(e, ne.UnaryFunctionExpression) and e.getname() == "exp":
            return self.affine(e.args[0], depth + 1)
        return False

    def _entropy(self, a, b) -> bool:
        """``v * log(v)`` for one own variable ``v``."""
        for v, f in ((a, b), (b, a)):
            f = _unwrap(f)
            if (isinstance(v, VarData) and id(v) in self.own and isinstance(f, ne.UnaryFunctionExpression)
                    and f.getname() == "log" and f.args[0] is v):
                return True
        return False

    def _revenue(self, a, b) -> bool:
        """``v * c * (alpha v + s) ** -r`` is concave: one own variable ``v >= 0`` times a
        price falling isoelastically in the total ``alpha v + s`` (``c >= 0``, ``alpha > 0``,
        ``0 < r <= 1``, ``s`` a sum of non-negative multiples of other non-negative
        variables and a constant >= 0): a Cournot firm's revenue under the demand
        ``Q = (c / P) ** (1 / r)``. Its second derivative in ``v`` is ``c r alpha u ** (-r - 2)
        ((r - 1) alpha v - 2 s)`` with ``u = alpha v + s``, at most 0 there. The lower bounds
        of ``v`` and of the variables of ``s`` are conditions kept (see the module docstring)."""
        for v, f in ((a, b), (b, a)):
            if not (isinstance(v, VarData) and id(v) in self.own and not v.fixed):
                continue
            f = _unwrap(f)
            while isinstance(f, (ne.ProductExpression, ne.MonomialTermExpression)):
                c, rest = ((f.args[0], f.args[1]) if _is_number(f.args[0])
                           else (f.args[1], f.args[0]) if _is_number(f.args[1]) else (None, None))
                if c is None or float(value(c)) < 0:
                    return False
                f = _unwrap(rest)
            if not (isinstance(f, ne.PowExpression) and _is_number(f.args[1])
                    and -1.0 <= float(value(f.args[1])) < 0.0):
                return False
            others = self._total_of(f.args[0], v)
            if others is None:
                return False
            self.nonnegative.extend([v] + others)
            return True
        return False

    def _total_of(self, e, v):
        """The variables of ``s`` where ``e = alpha v + s`` as :meth:`_revenue` needs it, or None."""
        try:
            repn = generate_standard_repn(e, compute_values=False)
        except Exception:  # an expression the standard representation does not take
            return None
        if repn.nonlinear_expr is not None or repn.quadratic_vars or not _is_number(repn.constant) \
                or float(value(repn.constant)) < 0:
            return None
        alpha, others = 0.0, []
        for var, coef in zip(repn.linear_vars, repn.linear_coefs):
            if not _is_number(coef):
                return None
            if var is v:
                alpha += float(value(coef))
            elif id(var) in self.own or float(value(coef)) < 0:
                return None
            else:
                others.append(var)
        return others if alpha > 0 else None

    def _nonnegative_own(self, e) -> bool:
        """``e`` is a single own variable; its lower bound must be >= 0 (a condition kept)."""
        if isinstance(e, VarData) and id(e) in self.own:
            self.nonnegative.append(e)
            return True
        return False


def _unwrap(e):
    """A named Expression's body."""
    while hasattr(e, "is_named_expression_type") and e.is_named_expression_type():
        e = e.expr
    return e


def _nonnegative(e) -> bool:
    """``e`` is a variable whose values are at least 0 (a lower bound, or a fixed value)."""
    if isinstance(e, VarData):
        if e.fixed:
            return e.value is not None and e.value >= 0
        return e.lb is not None and e.lb >= 0
    return False


def _is_number(e) -> bool:
    return type(e) in native_numeric_types or (is_constant(e) and not hasattr(e, "is_variable_type"))


def convexity_conditions(expr, own_vars, sign: float = 1.0) -> tuple | None:
    """The structural proof that ``sign * expr`` is convex in ``own_vars``: ``None`` where
    there is none, else the variables (own ones, or those of a revenue's total) whose lower
    bounds must be non-negative for it to hold (often none; see the module docstring)."""
    walk = _Walk(own_vars)
    if walk.convex(expr, float(sign)):
        return tuple({id(v): v for v in walk.nonnegative}.values())
    return () if _convex_quadratic(expr, own_vars, float(sign)) else None


def _convex_quadratic(expr, own_vars, sign: float) -> bool:
    """``sign * expr`` is a polynomial of degree at most two whose Hessian in ``own_vars``
    (its own-by-own coefficients, numbers) is positive semidefinite (see the module docstring)."""
    try:
        repn = generate_standard_repn(expr, quadratic=True, compute_values=False)
    except Exception:  # an expression the standard representation does not take: no proof
        return False
    if repn.nonlinear_expr is not None:
        return False
    own = {id(v): i for i, v in enumerate(own_vars)}
    H = np.zeros((len(own), len(own)))
    for (a, b), c in zip(repn.quadratic_vars, repn.quadratic_coefs):
        i, j = own.get(id(a)), own.get(id(b))
        if i is None or j is None:  # linear in the own variables: data times one of them
            continue
        if not _is_number(c):  # a coefficient that may change between solves
            return False
        H[i, j] += sign * float(value(c))  # c x_i x_j: c at (i, j) and (j, i); 2c where i == j
        H[j, i] += sign * float(value(c))
    if not H.any():
        return True
    return bool(np.linalg.eigvalsh(H).min() >= -1e-12 * np.abs(H).max())


def convex_in_own(expr, own_vars, sign: float = 1.0) -> bool:
    """Whether ``sign * expr`` is provably convex in ``own_vars`` (see the module docstring)."""
    needs = convexity_conditions(expr, own_vars, sign)
    return needs is not None and all(v.lb is not None and v.lb >= 0 for v in needs)


def constraint_conditions(constraint, side: str, own_vars) -> tuple | None:
    """The structural proof that one side of ``constraint`` (``"upper"``: ``body <= ub``,
    ``"lower"``: ``lb <= body``, ``"equality"``) is a convex set in ``own_vars``: ``None``
    where there is none, else the own variables whose lower bounds must be non-negative."""
    if side == "equality":
        return () if _Walk(own_vars).affine(constraint.body) else None
    return convexity_conditions(constraint.body, own_vars, 1.0 if side == "upper" else -1.0)


def convex_constraint(constraint, side: str, own_vars) -> bool:
    """Whether one side of ``constraint`` is provably a convex set in ``own_vars`` (see
    :func:`constraint_conditions` and the module docstring)."""
    needs = constraint_conditions(constraint, side, own_vars)
    return needs is not None and all(v.lb is not None and v.lb >= 0 for v in needs)
