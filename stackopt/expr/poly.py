"""Pyomo expression DAGs to polynomials over atoms, by one iterative walk.

A polynomial is a dict ``{monomial: coefficient}`` whose monomials are sorted
tuples of *atoms*: the variables (``0 .. n_vars - 1``), then, numbered as they
are met, parameters (mutable Params and fixed variables, read at call time)
and auxiliary nodes for whatever is not polynomial (``log``, ``exp``,
``sqrt``, non-integer powers, ...) and for shared subexpressions (kind
``"id"``). Products are expanded while the product of the term counts stays
small and monomials have at most a few atoms; a shared subexpression of more
than one term becomes one atom the second time it is used.

The walk keeps its own stack, so expressions of any depth compile without
touching the interpreter's recursion limit; every node is combined once, and
sums accumulate into one new dict, so the work is linear in the size of the
expression DAG plus the size of the polynomials produced.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyomo.core.base.var import VarData
from pyomo.core.expr import numeric_expr as ne
from pyomo.core.expr.numvalue import native_numeric_types, value

from .params import Parameters, is_parameter

UNARY = {
    "log": np.log, "log10": np.log10, "exp": np.exp, "sqrt": np.sqrt,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
    "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor,
}
_EXPAND_LIMIT = 4  # largest product of term counts expanded into monomials
_SHARE_LIMIT = 1  # a shared subexpression with more terms becomes one auxiliary atom
_MAX_POWER = 4  # integer powers up to this are expanded
_MAX_DEGREE = 6  # a product of more atoms is split by making one factor an auxiliary atom
_NATIVE = native_numeric_types

# expression classes -> handler name, resolved once per class through its bases
_BASES = (
    (ne.SumExpression, "_sum"), (ne.ProductExpression, "_product"),
    (ne.NegationExpression, "_negation"), (ne.DivisionExpression, "_division"),
    (ne.PowExpression, "_pow"), (ne.UnaryFunctionExpression, "_unary"),
)
_HANDLER: dict[type, str | None] = {}
_IS_EXPR: dict[type, bool] = {}


def _handler(node) -> str | None:
    cls = node.__class__
    if cls not in _HANDLER:
        if node.is_named_expression_type():
            _HANDLER[cls] = "_named"
        else:
            _HANDLER[cls] = next((h for base, h in _BASES if issubclass(cls, base)), None)
    return _HANDLER[cls]


def compilable(node) -> str | None:
    """Why :class:`PolyBuilder` cannot compile the expression node ``node`` (``None`` where it can):
    the node's kind, or the function it applies."""
    name = _HANDLER.get(node.__class__) or _handler(node)
    if name is None:
        return f"an expression of type {node.__class__.__name__}"
    if name == "_unary" and node.getname() not in UNARY:
        return f"the function {node.getname()!r}"
    return None


def is_expression(node) -> bool:
    cls = node.__class__
    hit = _IS_EXPR.get(cls)
    if hit is None:
        hit = _IS_EXPR[cls] = cls not in _NATIVE and bool(node.is_expression_type())
    return hit


def _const(val: float) -> dict:
    return {(): val} if val != 0.0 else {}


class AtomTable:
    """The auxiliary atoms met so far, and the algebra of polynomials over atoms
    (expanding small products, making an atom of whatever is not expanded)."""

    def __init__(self, n_vars: int):
        self.n_vars = n_vars
        self.aux_kind: list[str] = []  # "param" for parameter atoms
        self.aux_arg: list[dict] = []
        self.aux_param: list[float] = []
        self.aux_key: dict = {}

    # ---------------------------------------------------------------- atoms
    def _new_atom(self, kind: str, arg: dict, param: float) -> int:
        atom = self.n_vars + len(self.aux_kind)
        self.aux_kind.append(kind)
        self.aux_arg.append(arg)
        self.aux_param.append(param)
        return atom

    def aux(self, kind: str, arg: dict, param: float = 0.0) -> dict:
        key = (kind, param, frozenset(arg.items()))
        atom = self.aux_key.get(key)
        if atom is None:
            atom = self.aux_key[key] = self._new_atom(kind, arg, param)
        return {(atom,): 1.0}

    def atomize(self, poly: dict) -> dict:
        if len(poly) == 1:
            (mono, coef), = poly.items()
            if len(mono) == 1 and coef == 1.0:
                return poly
        return self.aux("id", poly)

    # ------------------------------------------------------------- algebra
    @staticmethod
    def scale(a: dict, s: float) -> dict:
        if s == 0.0:
            return {}
        if s == 1.0:
            return a
        return {m: c * s for m, c in a.items()}

    def mul(self, a: dict, b: dict) -> dict:
        if not a or not b:
            return {}
        if len(a) == 1 and () in a:
            return self.scale(b, a[()])
        if len(b) == 1 and () in b:
            return self.scale(a, b[()])
        if len(a) * len(b) > _EXPAND_LIMIT:
            if len(a) >= len(b):
                a = self.atomize(a)
            else:
                b = self.atomize(b)
            if len(a) * len(b) > _EXPAND_LIMIT:
                a, b = self.atomize(a), self.atomize(b)
        da, db = max(map(len, a)), max(map(len, b))
        if da + db > _MAX_DEGREE:
            if da >= db:
                a, da = self.atomize(a), 1
            else:
                b, db = self.atomize(b), 1
            if da + db > _MAX_DEGREE:
                a, b = self.atomize(a), self.atomize(b)
        out: dict = {}
        get = out.get
        for ma, ca in a.items():
            for mb, cb in b.items():
                mono = tuple(sorted(ma + mb)) if ma and mb else (ma or mb)
                v = get(mono, 0.0) + ca * cb
                if v == 0.0:
                    out.pop(mono, None)
                else:
                    out[mono] = v
        return out

    def power(self, base: dict, e: float) -> dict:
        if e == 0:
            return {(): 1.0}
        if e == 1:
            return base
        if not base:
            return {} if e > 0 else {(): float("inf")}
        if len(base) == 1 and () in base:
            return _const(base[()] ** e)
        if float(e).is_integer() and 1 < e <= _MAX_POWER and len(base) ** int(e) <= _EXPAND_LIMIT:
            out = base
            for _ in range(int(e) - 1):
                out = self.mul(out, base)
            return out
        if len(base) == 1:
            (mono, coef), = base.items()
            if coef > 0 and float(e).is_integer():  # c^e * (prod atoms)^e, exact
                return self.scale(self.aux("pow", {mono: 1.0}, float(e)), coef ** e)
        return self.aux("pow", base, float(e))


class PolyBuilder(AtomTable):
    """Turns expression trees into polynomials over atoms, recording auxiliary nodes.

    ``parameters``: the :class:`Parameters` the expressions may use (others
    raise ``ValueError`` unless it grows); ``None`` collects them as they are met.
    """

    def __init__(self, variables: Sequence, parameters: Parameters | None = None):
        super().__init__(len(variables))
        self.index = {id(v): i for i, v in enumerate(variables)}
        if len(self.index) != self.n_vars:
            raise ValueError("the variable list contains a variable twice")
        self.parameters = Parameters(grow=True) if parameters is None else parameters
        self.collect = self.parameters.grow
        self.param_atom: dict[int, int] = {}  # position in parameters -> atom
        self.memo: dict[int, list] = {}  # id(node) -> [poly, uses], leaves included
        self.keep: list = []  # nodes whose ids key the memo stay alive

    # ---------------------------------------------------------------- walk
    def poly(self, root) -> dict:
        """Polynomial of ``root`` (counts as one use of it). Do not mutate the result."""
        memo = self.memo
        if id(root) not in memo and root.__class__ not in _NATIVE and is_expression(root):
            stack = [root]
            while stack:
                node = stack[-1]
                kids = node.args
                pending = [c for c in kids if id(c) not in memo and c.__class__ not in _NATIVE
                           and is_expression(c)]
                if pending:
                    stack.extend(pending)
                    continue
                stack.pop()
                if id(node) not in memo:
                    name = _HANDLER.get(node.__class__) or _handler(node)
                    if name is None:
                        raise ValueError(
                            f"unsupported expression type {node.__class__.__name__} in {node}")
                    memo[id(node)] = [getattr(self, name)(node, kids), 0]
                    self.keep.append(node)
        return self._use(root)

    def _use(self, node) -> dict:
        ent = self.memo.get(id(node))
        if ent is None:
            if node.__class__ in _NATIVE:
                return _const(float(node))
            ent = self._leaf(node)
        elif ent[1] and len(ent[0]) > _SHARE_LIMIT:
            ent[0] = self.atomize(ent[0])
        ent[1] += 1
        return ent[0]

    def _leaf(self, node) -> list:
        if isinstance(node, VarData) and id(node) in self.index:
            out = {(self.index[id(node)],): 1.0}
        elif is_parameter(node):
            out = self._param(node)
        elif isinstance(node, VarData):
            raise ValueError(
                f"variable {node.name!r} is not among the variables this expression is "
                "compiled over"
            )
        else:
            val = value(node, exception=False)
            if val is None:
                raise ValueError(f"{getattr(node, 'name', node)!r} has no value")
            out = _const(float(val))
        ent = self.memo[id(node)] = [out, 0]  # one term: never atomized
        self.keep.append(node)
        return ent

    def _param(self, node) -> dict:
        pos = self.parameters.position(node)
        if pos is None:
            if not self.collect:
                what = "fixed variable" if isinstance(node, VarData) else "mutable Param"
                raise ValueError(
                    f"{what} {node.name!r} is not among the parameters this expression is "
                    "compiled with"
                )
            pos = self.parameters.add(node)
        atom = self.param_atom.get(pos)
        if atom is None:
            atom = self.param_atom[pos] = self._new_atom("param", {}, float(pos))
        return {(atom,): 1.0}

    # ------------------------------------------------------------ handlers
    def _named(self, node, kids) -> dict:
        return self._use(kids[0])

    def _sum(self, node, kids) -> dict:
        out: dict = {}
        get = out.get
        memo_get = self.memo.get
        for kid in kids:
            ent = memo_get(id(kid))
            if ent is None or (ent[1] and len(ent[0]) > _SHARE_LIMIT):
                p = self._use(kid)
            else:
                ent[1] += 1
                p = ent[0]
            for m, c in p.items():
                v = get(m, 0.0) + c
                if v == 0.0:
                    out.pop(m, None)
                else:
                    out[m] = v
        return out

    def _product(self, node, kids) -> dict:
        return self.mul(self._use(kids[0]), self._use(kids[1]))

    def _negation(self, node, kids) -> dict:
        return self.scale(self._use(kids[0]), -1.0)

    def _division(self, node, kids) -> dict:
        num, den = self._use(kids[0]), self._use(kids[1])
        if len(den) == 1 and () in den:
            return self.scale(num, 1.0 / den[()])
        return self.mul(num, self.power(den, -1.0))

    def _pow(self, node, kids) -> dict:
        base, expo = self._use(kids[0]), self._use(kids[1])
        if not expo or (len(expo) == 1 and () in expo):  # a constant exponent
            return self.power(base, expo.get((), 0.0))
        # an exponent that varies (a variable or a parameter): np.power(base, exponent atom)
        (e_atom,), = self.atomize(expo)
        key = ("powv", float(e_atom), frozenset(base.items()))
        atom = self.aux_key.get(key)
        if atom is None:
            atom = self.aux_key[key] = self._new_atom("powv", base, float(e_atom))
        return {(atom,): 1.0}

    def _unary(self, node, kids) -> dict:
        name = node.getname()
        if name not in UNARY:
            raise ValueError(f"unsupported function {name!r} in expression {node}")
        arg = self._use(kids[0])
        if not arg or (len(arg) == 1 and () in arg):
            with np.errstate(all="ignore"):
                return _const(float(UNARY[name](arg.get((), 0.0))))
        return self.aux(name, arg)
