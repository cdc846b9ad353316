"""Compile Pyomo expressions once into flat, vectorised NumPy evaluators.

Expressions of this field are mostly sums of products of variables and data
with a few unary functions. A compiled :class:`Program` keeps them in that
form: every expression becomes a polynomial (coefficient, atoms) over *atoms*,
which are the variables plus auxiliary nodes for whatever is not polynomial
(``log``, ``exp``, ``sqrt``, non-integer powers, ...) and for shared
subexpressions. Evaluation gathers atom values with index arrays, multiplies
the factors of all monomials of one degree at once, and sums monomials into
outputs with ``np.bincount``; auxiliary nodes are evaluated level by level,
each level one batched polynomial and one NumPy call per function. No Pyomo
expression is walked after compilation.

Derivatives are taken symbolically by Pyomo (``reverse_sd``) and compiled the
same way (:func:`compile_jacobian`). Fixed variables and Params are constants
with their values at compile time.
"""
from __future__ import annotations

import sys
from typing import Iterable, Sequence

import numpy as np
from pyomo.core.base.var import VarData
from pyomo.core.expr import numeric_expr as ne
from pyomo.core.expr.calculus.diff_with_pyomo import DifferentiationException, reverse_sd
from pyomo.core.expr.numvalue import native_numeric_types, value

_UNARY = {
    "log": np.log, "log10": np.log10, "exp": np.exp, "sqrt": np.sqrt,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
    "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor,
}
_EXPAND_LIMIT = 4  # largest product of term counts expanded into monomials
_SHARE_LIMIT = 1  # a shared subexpression with more terms becomes one auxiliary atom
_MAX_POWER = 4  # integer powers up to this are expanded


def _accumulate(poly: dict, mono: tuple, coef: float) -> None:
    """Add ``coef * mono`` to ``poly``, dropping the monomial where it cancels."""
    v = poly.get(mono, 0.0) + coef
    if v == 0.0:
        poly.pop(mono, None)
    else:
        poly[mono] = v


class _Builder:
    """Turns expression trees into polynomials over atoms, recording auxiliary nodes."""

    def __init__(self, variables: Sequence):
        self.n_vars = len(variables)
        self.index = {id(v): i for i, v in enumerate(variables)}
        if len(self.index) != self.n_vars:
            raise ValueError("the variable list contains a variable twice")
        self.aux_kind: list[str] = []
        self.aux_arg: list[dict] = []
        self.aux_param: list[float] = []
        self.aux_level: list[int] = []
        self.aux_key: dict = {}
        self.memo: dict[int, dict] = {}
        self.seen: dict[int, int] = {}
        self.keep: list = []  # nodes referenced by memo keys stay alive

    # ---------------------------------------------------------------- atoms
    def level(self, atom: int) -> int:
        return 0 if atom < self.n_vars else self.aux_level[atom - self.n_vars]

    def aux(self, kind: str, arg: dict, param: float = 0.0) -> dict:
        key = (kind, param, frozenset(arg.items()))
        atom = self.aux_key.get(key)
        if atom is None:
            lvl = 1 + max((self.level(a) for mono in arg for a in mono), default=0)
            atom = self.n_vars + len(self.aux_kind)
            self.aux_kind.append(kind)
            self.aux_arg.append(arg)
            self.aux_param.append(param)
            self.aux_level.append(lvl)
            self.aux_key[key] = atom
        return {(atom,): 1.0}

    def atomize(self, poly: dict) -> dict:
        if len(poly) == 1:
            (mono, coef), = poly.items()
            if len(mono) == 1 and coef == 1.0:
                return poly
        return self.aux("id", poly)

    # ------------------------------------------------------------- algebra
    @staticmethod
    def add(a: dict, b: dict, scale: float = 1.0) -> dict:
        out = dict(a)
        for m, c in b.items():
            _accumulate(out, m, scale * c)
        return out

    @staticmethod
    def scale(a: dict, s: float) -> dict:
        if s == 0.0:
            return {}
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
        out: dict = {}
        for ma, ca in a.items():
            for mb, cb in b.items():
                _accumulate(out, tuple(sorted(ma + mb)) if ma and mb else (ma or mb), ca * cb)
        return out

    def power(self, base: dict, e: float) -> dict:
        if e == 0:
            return {(): 1.0}
        if e == 1:
            return base
        if not base:
            return {} if e > 0 else {(): float("inf")}
        if len(base) == 1 and () in base:
            return {(): base[()] ** e}
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

    # ---------------------------------------------------------------- walk
    def poly(self, node) -> dict:
        if node.__class__ in native_numeric_types:
            return {(): float(node)} if node != 0 else {}
        key = id(node)
        hit = self.memo.get(key)
        if hit is not None:
            if len(hit) > _SHARE_LIMIT:
                hit = self.atomize(hit)
                self.memo[key] = hit
            return hit
        out = self._poly(node)
        self.memo[key] = out
        self.keep.append(node)
        return out

    def _poly(self, node) -> dict:
        if isinstance(node, VarData):
            if node.fixed:
                return self._const(node.value, node)
            i = self.index.get(id(node))
            if i is None:
                raise ValueError(
                    f"variable {node.name!r} is not among the variables this expression is "
                    "compiled over"
                )
            return {(i,): 1.0}
        if not node.is_expression_type():
            return self._const(value(node), node)
        if node.is_named_expression_type():
            return self.poly(node.expr)
        if not node.is_potentially_variable():
            return self._const(value(node), node)
        cls = node.__class__
        if cls in (ne.SumExpression, ne.LinearExpression):
            out: dict = {}
            for arg in node.args:
                out = self.add(out, self.poly(arg))
            return out
        if cls in (ne.ProductExpression, ne.MonomialTermExpression):
            a, b = node.args
            return self.mul(self.poly(a), self.poly(b))
        if cls is ne.NegationExpression:
            return self.scale(self.poly(node.args[0]), -1.0)
        if cls is ne.DivisionExpression:
            num, den = node.args
            d = self.poly(den)
            if len(d) == 1 and () in d:
                return self.scale(self.poly(num), 1.0 / d[()])
            return self.mul(self.poly(num), self.power(d, -1.0))
        if cls is ne.PowExpression:
            base, expo = node.args
            if expo.__class__ in native_numeric_types or not expo.is_potentially_variable():
                return self.power(self.poly(base), float(value(expo)))
            logb = self.aux("log", self.poly(base))
            return self.aux("exp", self.mul(self.poly(expo), logb))
        if cls is ne.UnaryFunctionExpression or cls is ne.AbsExpression:
            name = node.getname()
            if name not in _UNARY:
                raise ValueError(f"unsupported function {name!r} in expression {node}")
            arg = self.poly(node.args[0])
            if not arg or (len(arg) == 1 and () in arg):
                return self._const(_UNARY[name](arg.get((), 0.0)), node)
            return self.aux(name, arg)
        raise ValueError(f"unsupported expression type {cls.__name__} in {node}")

    @staticmethod
    def _const(val, node) -> dict:
        if val is None:
            raise ValueError(f"{getattr(node, 'name', node)!r} has no value")
        val = float(val)
        return {(): val} if val != 0.0 else {}


class _PolyBatch:
    """Several polynomials over atoms, evaluated together into an output vector."""

    def __init__(self, polys: Sequence[dict]):
        self.n_out = len(polys)
        self.const = np.zeros(self.n_out)
        by_degree: dict[int, list] = {}
        for row, p in enumerate(polys):
            for mono, coef in p.items():
                if not mono:
                    self.const[row] += coef
                else:
                    by_degree.setdefault(len(mono), []).append((row, coef, mono))
        self.groups = []
        rows = []
        for d in sorted(by_degree):
            items = by_degree[d]
            idx = np.array([m for _, _, m in items], dtype=np.intp).reshape(len(items), d)
            coef = np.array([c for _, c, _ in items])
            self.groups.append((coef, [np.ascontiguousarray(idx[:, k]) for k in range(d)]))
            rows.extend(r for r, _, _ in items)
        self.rows = np.array(rows, dtype=np.intp)
        self.n_terms = len(rows)
        self.has_const = bool(np.any(self.const))

    def __call__(self, v: np.ndarray) -> np.ndarray:
        if not self.n_terms:
            return self.const.copy()
        parts = []
        for coef, cols in self.groups:
            t = coef * v[cols[0]]
            for c in cols[1:]:
                t *= v[c]
            parts.append(t)
        terms = parts[0] if len(parts) == 1 else np.concatenate(parts)
        out = np.bincount(self.rows, weights=terms, minlength=self.n_out)
        if self.has_const:
            out += self.const
        return out


class Program:
    """A compiled list of expressions: ``program(values) -> array`` of their values.

    ``values`` is a 1-D array ordered like the variables the program was
    compiled over.
    """

    def __init__(self, builder: _Builder, outputs: Sequence[dict]):
        self.n_vars = builder.n_vars
        self.n_aux = len(builder.aux_kind)
        self.n_out = len(outputs)
        self.levels = []
        order = sorted(range(self.n_aux), key=lambda k: builder.aux_level[k])
        for lvl in sorted(set(builder.aux_level)):
            members = [k for k in order if builder.aux_level[k] == lvl]
            batch = _PolyBatch([builder.aux_arg[k] for k in members])
            target = np.array([self.n_vars + k for k in members], dtype=np.intp)
            funcs = []
            kinds = [builder.aux_kind[k] for k in members]
            for kind in sorted(set(kinds)):
                pos = np.array([j for j, kk in enumerate(kinds) if kk == kind], dtype=np.intp)
                param = np.array([builder.aux_param[members[j]] for j in pos])
                funcs.append((kind, pos, param))
            self.levels.append((batch, target, funcs))
        self.out = _PolyBatch(outputs)
        self.n_terms = self.out.n_terms + sum(b.n_terms for b, _, _ in self.levels)

    def atoms(self, values: np.ndarray) -> np.ndarray:
        v = np.empty(self.n_vars + self.n_aux)
        v[: self.n_vars] = values
        for batch, target, funcs in self.levels:
            u = batch(v)
            for kind, pos, param in funcs:
                if kind == "id":
                    continue
                if kind == "pow":
                    u[pos] = np.power(u[pos], param)
                else:
                    u[pos] = _UNARY[kind](u[pos])
            v[target] = u
        return v

    def __call__(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.out(self.atoms(np.asarray(values, dtype=float)))


class SparseJacobian:
    """Structural nonzeros ``(rows, cols)`` of d expressions / d variables, and their values."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, shape: tuple, program: Program):
        self.rows, self.cols, self.shape, self.program = rows, cols, shape, program

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return self.program(values)

    def dense(self, values: np.ndarray) -> np.ndarray:
        flat = np.bincount(self.rows * self.shape[1] + self.cols, weights=self.program(values).astype(float),
                           minlength=self.shape[0] * self.shape[1])
        return flat.reshape(self.shape)

    def sparse(self, values: np.ndarray):
        import scipy.sparse as sp

        return sp.csr_matrix((self.program(values), (self.rows, self.cols)), shape=self.shape)


def _deep_enough():
    if sys.getrecursionlimit() < 20000:
        sys.setrecursionlimit(20000)


def compile_exprs(exprs: Iterable, variables: Sequence) -> Program:
    """Compile ``exprs`` (Pyomo expressions or numbers) over ``variables`` into a Program."""
    _deep_enough()
    b = _Builder(list(variables))
    outputs = [b.poly(e) for e in exprs]
    return Program(b, outputs)


def derivatives(expr, wrt: Sequence) -> dict[int, object]:
    """Pyomo's symbolic derivatives of ``expr``: position in ``wrt`` -> derivative expression."""
    if expr.__class__ in native_numeric_types:
        return {}
    pos = {id(v): j for j, v in enumerate(wrt)}
    if isinstance(expr, VarData):
        return {pos[id(expr)]: 1.0} if id(expr) in pos and not expr.fixed else {}
    if not expr.is_potentially_variable():
        return {}
    try:
        ders = reverse_sd(expr)
    except DifferentiationException as exc:
        raise ValueError(f"Pyomo cannot differentiate the expression {expr}: {exc}") from None
    out = {}
    for leaf, d in ders.items():
        j = pos.get(id(leaf))
        if j is not None and not leaf.fixed:
            out[j] = d
    return out


def compile_sparse(entries: Iterable[tuple], variables: Sequence, shape: tuple) -> SparseJacobian:
    """Compile ``(row, col, expression)`` entries into a sparse matrix over ``variables``.

    Entries whose expression compiles to zero are dropped from the structure.
    """
    _deep_enough()
    b = _Builder(list(variables))
    rows, cols, outputs = [], [], []
    for i, j, e in entries:
        p = b.poly(e)
        if p:
            rows.append(i)
            cols.append(j)
            outputs.append(p)
    return SparseJacobian(np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp),
                          tuple(shape), Program(b, outputs))


def compile_jacobian(exprs: Iterable, variables: Sequence, wrt: Sequence | None = None) -> SparseJacobian:
    """Sparse Jacobian of ``exprs`` with respect to ``wrt`` (default: ``variables``).

    Derivatives are Pyomo's symbolic ones, compiled over ``variables`` (which
    must contain every variable the expressions use).
    """
    variables = list(variables)
    wrt = variables if wrt is None else list(wrt)
    exprs = list(exprs)
    entries = ((i, j, d) for i, e in enumerate(exprs) for j, d in sorted(derivatives(e, wrt).items()))
    return compile_sparse(entries, variables, (len(exprs), len(wrt)))
