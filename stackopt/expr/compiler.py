"""Compile Pyomo expressions once into flat, vectorised NumPy evaluators.

Expressions of this field are mostly sums of products of variables and data
with a few unary functions. A compiled :class:`Program` keeps them in that
form: every expression becomes a polynomial (coefficient, atoms) over *atoms*,
which are the variables, the parameters, and auxiliary nodes for whatever is
not polynomial (``log``, ``exp``, ``sqrt``, non-integer powers, ...) and for
shared subexpressions (:mod:`stackopt.expr.poly`). Evaluation gathers atom
values with index arrays, multiplies the factors of all monomials of one
degree at once, and sums monomials into outputs with ``np.bincount``;
auxiliary nodes are evaluated level by level (:mod:`stackopt.expr.program`).
No Pyomo expression is walked after compilation.

Mutable Params and fixed variables are *parameters*: inputs read at call
time (:mod:`stackopt.expr.params`), so changing a Param's value or the value
of a fixed variable needs no recompilation. Immutable Params and numbers are
constants. Pass one :class:`Parameters` (from :func:`parameters_of`) to
several compilations to share one parameter vector between their programs.

Derivatives are taken symbolically with Pyomo's differentiation rules (the
expressions ``reverse_sd`` builds, swept only where they are wanted:
:mod:`stackopt.expr.diff`), never with respect to parameters, and compiled
the same way (:func:`compile_jacobian`).
Preparation is linear in the size of the expressions and their derivatives;
every walk is iterative, so no recursion limit is changed.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pyomo.common.gc_manager import PauseGC
from pyomo.core.expr.numvalue import native_numeric_types

from .diff import derivatives, differentiable, jacobian_entries
from .params import Parameters, parameters_of
from .poly import PolyBuilder, compilable
from .program import PolyBatch, Program, SparseJacobian

__all__ = [
    "Parameters", "Program", "SparseJacobian", "PolyBatch", "compile_exprs", "compile_sparse",
    "compile_jacobian", "derivatives", "jacobian_entries", "parameters_of", "scan", "Scan",
]


@dataclass(frozen=True, eq=False)
class Scan:
    """What one walk of an expression found (see :func:`scan`)."""

    variables: tuple  # every variable, fixed or not, in order of first appearance
    named: tuple  # every named expression (``pyo.Expression`` elements, objectives) entered
    nonfinite: float | None  # the first number that is NaN or infinite
    unsupported: str | None  # the first node that cannot be compiled and differentiated, described


def scan(expr) -> Scan:
    """Walk ``expr`` once (iteratively, each node once, named expressions entered): its
    variables, its named expressions, its first non-finite number and its first node that
    this module cannot compile or Pyomo cannot differentiate (``Expr_if``, a relation inside
    a sum, a function such as ``sinh``), described with the text of the node."""
    variables, named, seen = [], [], set()
    nonfinite = unsupported = None
    stack = [expr]
    while stack:
        node = stack.pop()
        if node.__class__ in native_numeric_types:
            if nonfinite is None and not math.isfinite(node):
                nonfinite = node
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.is_variable_type():
            variables.append(node)
        elif node.is_expression_type():
            if node.is_named_expression_type():
                named.append(node)
            elif unsupported is None:
                why = compilable(node) or differentiable(node)
                if why is not None:
                    text = str(node)
                    unsupported = f"{why} (`{text if len(text) <= 120 else text[:117] + '...'}`)"
            stack.extend(reversed(node.args))
    return Scan(variables=tuple(variables), named=tuple(named), nonfinite=nonfinite,
                unsupported=unsupported)


def compile_exprs(exprs: Iterable, variables: Sequence,
                  parameters: Parameters | None = None) -> Program:
    """Compile ``exprs`` (Pyomo expressions or numbers) over ``variables`` into a Program.

    ``parameters``: the mutable Params and fixed variables the program reads
    at call time, in this order; ``None`` collects those of ``exprs``. A
    parameter of ``exprs`` missing from a given ``parameters`` raises
    ``ValueError``, or is appended to it if it grows
    (``Parameters(grow=True)``: one collection shared by several programs).
    """
    with PauseGC():
        b = PolyBuilder(list(variables), parameters)
        outputs = [b.poly(e) for e in exprs]
        return Program(b, outputs)


def compile_sparse(entries: Iterable[tuple], variables: Sequence, shape: tuple,
                   parameters: Parameters | None = None) -> SparseJacobian:
    """Compile ``(row, col, expression)`` entries into a sparse matrix over ``variables``.

    Entries whose expression compiles to zero are dropped from the structure
    (an entry that is zero only for the current parameter values is kept).
    ``parameters`` as for :func:`compile_exprs`.
    """
    with PauseGC():
        b = PolyBuilder(list(variables), parameters)
        rows, cols, outputs = [], [], []
        for i, j, e in entries:
            p = b.poly(e)
            if p:
                rows.append(i)
                cols.append(j)
                outputs.append(p)
        return SparseJacobian(np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp),
                              tuple(shape), Program(b, outputs))


def compile_jacobian(exprs: Iterable, variables: Sequence, wrt: Sequence | None = None,
                     parameters: Parameters | None = None) -> SparseJacobian:
    """Sparse Jacobian of ``exprs`` with respect to ``wrt`` (default: ``variables``).

    Derivatives are Pyomo's symbolic ones, compiled over ``variables`` (which
    must contain every variable the expressions use); ``parameters`` as for
    :func:`compile_exprs`.
    """
    variables = list(variables)
    wrt = variables if wrt is None else list(wrt)
    exprs = list(exprs)
    return compile_sparse(jacobian_entries(exprs, wrt), variables, (len(exprs), len(wrt)), parameters)
