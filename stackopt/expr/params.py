"""Parameters of compiled programs: mutable Params and fixed variables, read at call time.

A compiled :class:`~stackopt.expr.program.Program` treats every mutable
``Param`` and every fixed ``Var`` of its expressions as an *input*, so a user
who changes a Param's value or fixes a variable at a new value evaluates the
edited model without recompiling. :class:`Parameters` is the ordered list of
those inputs; :meth:`Parameters.values` reads their current values into one
array (a few hundred nanoseconds per parameter), which callers read once per
solve and pass to every call. Immutable Params and numbers stay constants.
Derivatives are never taken with respect to parameters.

Fixing or unfixing a variable changes the structure (a variable becomes a
parameter or back): programs compiled before that change must be rebuilt.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pyomo.core.base.var import VarData
from pyomo.core.expr.numvalue import native_numeric_types


def is_parameter(node) -> bool:
    """True for a mutable Param or a fixed variable (a leaf that is read at call time)."""
    if isinstance(node, VarData):
        return bool(node.fixed)
    return bool(node.is_parameter_type() and not node.is_constant())


class Parameters:
    """Ordered mutable Params and fixed variables; ``values()`` reads them now.

    ``grow=True``: compilations given this collection append the parameters
    they meet (positions never change, so programs compiled earlier stay
    valid); otherwise a parameter missing from it is an error.
    """

    def __init__(self, items: Iterable = (), grow: bool = False):
        self.grow = bool(grow)
        self.items: list = []
        self._pos: dict[int, int] = {}
        self._vars: list = []  # the fixed variables among the items
        for item in items:
            self.add(item)

    def add(self, item) -> int:
        """Position of ``item``, appending it if new; raises for anything but a parameter."""
        pos = self._pos.get(id(item))
        if pos is not None:
            return pos
        if item.__class__ in native_numeric_types or not hasattr(item, "is_parameter_type") \
                or not is_parameter(item):
            raise ValueError(
                f"{getattr(item, 'name', item)!r} is not a parameter; expected a mutable Param "
                "or a fixed variable"
            )
        self._pos[id(item)] = len(self.items)
        self.items.append(item)
        if isinstance(item, VarData):
            self._vars.append(item)
        return self._pos[id(item)]

    def position(self, item) -> int | None:
        return self._pos.get(id(item))

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.items]

    def values(self) -> np.ndarray:
        """Current values, in order.

        Raises ``ValueError`` naming a parameter without a finite value, or a
        variable that was fixed at compilation and has been unfixed since
        (a structural change: the programs must be compiled again).
        """
        if self._vars and not all(v.fixed for v in self._vars):
            v = next(v for v in self._vars if not v.fixed)
            raise ValueError(
                f"variable {v.name!r} was fixed when these expressions were compiled and is not "
                "fixed now; compile them again to treat it as a variable"
            )
        try:
            out = np.array([p.value for p in self.items], dtype=float)
        except (ValueError, TypeError):
            out = np.array([_value_or_nan(p) for p in self.items], dtype=float)
        if out.size and not np.isfinite(out).all():
            k = int(np.flatnonzero(~np.isfinite(out))[0])
            p = self.items[k]
            what = "fixed variable" if isinstance(p, VarData) else "mutable Param"
            raise ValueError(
                f"{what} {p.name!r} has value {_value_or_nan(p)!r}; compiled expressions need "
                "a finite value for every parameter"
            )
        return out

    def __repr__(self) -> str:
        return f"Parameters({self.names})"


def _value_or_nan(p):
    try:
        v = p.value
    except ValueError:
        return None
    return v


def leaves(exprs: Iterable):
    """Every leaf of ``exprs`` (numbers, variables, parameters), each object once, in order
    of first appearance; named expressions are entered and the walk is iterative."""
    seen: set[int] = set()
    for root in exprs:
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.__class__ not in native_numeric_types and node.is_expression_type():
                kids = (node.expr,) if node.is_named_expression_type() else node.args
                stack.extend(reversed(kids))  # first appearance order
            else:
                yield node


def parameters_of(exprs: Iterable, variables: Sequence = ()) -> Parameters:
    """Mutable Params and fixed variables of ``exprs``, in order of first appearance.

    Variables listed in ``variables`` are inputs of their own and are not
    collected even when fixed.
    """
    skip = {id(v) for v in variables}
    out = Parameters()
    for node in leaves(exprs):
        if node.__class__ not in native_numeric_types and id(node) not in skip and is_parameter(node):
            out.add(node)
    return out
