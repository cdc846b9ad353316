"""Linear arguments of singular nonlinear terms as bounded auxiliary variables of a :class:`Minlp`.

A term such as ``(x + y1 + y2)^(-1/gamma)`` or ``log(x + y)`` has a
singularity or a domain boundary where its linear argument vanishes. A
spatial branch-and-bound solver bounds the term from the bounds of the
argument, and it computes those from the variables' boxes only: a linear
constraint of the model on the same linear form (``x + y1 + y2 >= 150``,
a leader constraint or a valid inequality) does not reach the term, so its
relaxation stays useless however tight the constraint is.

:func:`link_linear_arguments` gives every distinct such argument one
auxiliary variable ``a = argument`` (a defining linear equality) and puts
``a`` in place of the argument in every term. The bounds of ``a`` are

- interval arithmetic of the linear form over the variables' bounds;
- every linear constraint of the problem whose body is ``const + s * form``
  (the same variables with proportional coefficients, ``s != 0``), solved
  for ``a``;
- ``a >= 0`` for the base of a power with a non-integer exponent, and for the
  argument of ``log`` and ``sqrt`` (the term is undefined below).

Each bound is implied by the problem's constraints and the domains of its
functions, so the feasible set is unchanged; only the relaxation improves.
Affected terms: bases of powers with a negative or non-integer exponent,
denominators, arguments of ``log`` and ``sqrt``, whose argument involves at
least two variables.
"""
from __future__ import annotations

import math

from .minlp import Minlp

_SINGULAR_FUNCS = ("log", "sqrt")


def link_linear_arguments(problem: Minlp) -> int:
    """Replace linear arguments of singular terms by bounded auxiliary variables (in place).

    Returns the number of auxiliary variables added.
    """
    linker = _Linker(problem)
    problem.objective = linker.visit(problem.objective)
    problem.constraints = [(n, linker.visit(t), lo, hi) for n, t, lo, hi in problem.constraints]
    problem.indicators = [(n, z, a, linker.visit(t), hi) for n, z, a, t, hi in problem.indicators]
    linker.finish()
    return len(linker.aux)


def linear_form(tree):
    """``(constant, {variable index: coefficient})`` if ``tree`` is linear, else None."""
    kind = tree[0]
    if kind == "c":
        return float(tree[1]), {}
    if kind == "v":
        return 0.0, {tree[1]: 1.0}
    if kind == "lin":
        _, const, idx, coef = tree
        out: dict = {}
        for i, c in zip(idx, coef):
            out[i] = out.get(i, 0.0) + c
        return float(const), out
    if kind == "+":
        const, out = 0.0, {}
        for arg in tree[1]:
            sub = linear_form(arg)
            if sub is None:
                return None
            const += sub[0]
            for i, c in sub[1].items():
                out[i] = out.get(i, 0.0) + c
        return const, out
    if kind == "-":
        sub = linear_form(tree[1])
        return None if sub is None else (-sub[0], {i: -c for i, c in sub[1].items()})
    if kind == "*":
        for a, b in ((tree[1], tree[2]), (tree[2], tree[1])):
            if a[0] == "c":
                sub = linear_form(b)
                if sub is None:
                    return None
                s = float(a[1])
                return s * sub[0], {i: s * c for i, c in sub[1].items()}
    return None


def _key(coefs: dict):
    """Variables and coefficients scaled to a leading coefficient 1, and that scale."""
    items = sorted((i, c) for i, c in coefs.items() if c != 0.0)
    if not items:
        return None, 0.0
    scale = items[0][1]
    return tuple((i, round(c / scale, 12)) for i, c in items), scale


class _Linker:
    def __init__(self, problem: Minlp):
        self.p = problem
        self.memo: dict[int, tuple] = {}
        self.keep: list = []
        self.aux: dict = {}  # (form, constant) -> [aux index, constant, coefficients, nonnegative]
        self.defs: list = []  # the auxiliaries' defining equalities

    def visit(self, tree):
        hit = self.memo.get(id(tree))
        if hit is None:
            hit = self._visit(tree)
            self.memo[id(tree)] = hit
            self.keep.append(tree)
        return hit

    def _visit(self, tree):
        kind = tree[0]
        if kind in ("c", "v", "lin"):
            return tree
        if kind == "+":
            return ("+", tuple(self.visit(a) for a in tree[1]))
        if kind == "*":
            return ("*", self.visit(tree[1]), self.visit(tree[2]))
        if kind == "/":
            return ("/", self.visit(tree[1]), self._argument(tree[2], nonnegative=False))
        if kind == "^":
            expo = float(tree[2])
            if expo < 0 or not expo.is_integer():
                return ("^", self._argument(tree[1], nonnegative=not expo.is_integer()), tree[2])
            return ("^", self.visit(tree[1]), tree[2])
        if kind in _SINGULAR_FUNCS:
            return (kind, self._argument(tree[1], nonnegative=True))
        return (kind,) + tuple(self.visit(a) for a in tree[1:])

    def _argument(self, tree, nonnegative: bool):
        """``tree`` itself, or the auxiliary variable standing for it when it is linear."""
        form = linear_form(tree)
        if form is None or sum(1 for c in form[1].values() if c != 0.0) < 2:
            return self.visit(tree)
        const, coefs = form
        key, scale = _key(coefs)
        # the argument is const + scale * (sum of key's terms); one auxiliary per key and constant
        full = (key, round(const / scale, 12))
        entry = self.aux.get(full)
        if entry is None:
            a = self.p.add_var(f"linked_argument[{len(self.aux)}]")
            entry = self.aux[full] = [a, const, coefs, nonnegative]
            idx = tuple(coefs) + (a,)
            coef = tuple(coefs.values()) + (-1.0,)
            self.defs.append((f"linked_argument_def[{len(self.aux) - 1}]",
                              ("lin", const, idx, coef), 0.0, 0.0))
        else:
            entry[3] = entry[3] or nonnegative
        return ("v", entry[0])

    def finish(self):
        """Bounds of the auxiliaries from the variables' boxes, linear constraints and domains."""
        p = self.p
        lin_cons = []  # (key, scale, constant, lo, hi) of every linear constraint, keyed once
        for _, tree, c_lo, c_hi in p.constraints:
            if tree[0] == "lin":
                c_const, c_coefs = linear_form(tree)
                lin_cons.append((*_key(c_coefs), c_const, c_lo, c_hi))
        for a, const, coefs, nonneg in self.aux.values():
            lo, hi = _interval(const, coefs, p.lb, p.ub)
            if nonneg:
                lo = max(lo, 0.0)
            key, scale = _key(coefs)
            for c_key, c_scale, c_const, c_lo, c_hi in lin_cons:
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
            p.lb[a] = lo if math.isfinite(lo) else None
            p.ub[a] = hi if math.isfinite(hi) else None
        p.constraints.extend(self.defs)


def _interval(const: float, coefs: dict, lb: list, ub: list):
    lo = hi = const
    for i, c in coefs.items():
        lo_i = -math.inf if lb[i] is None else float(lb[i])
        hi_i = math.inf if ub[i] is None else float(ub[i])
        if c > 0:
            lo += c * lo_i
            hi += c * hi_i
        elif c < 0:
            lo += c * hi_i
            hi += c * lo_i
    return lo, hi
