"""Nonlinear slacks of complementarity pairs as bounded auxiliary variables.

A follower's constraint that is nonlinear in the model's variables gives a
complementarity pair ``0 <= lambda _|_ s(x) >= 0`` with a nonlinear slack: a
disk ``1 - u1^2 - u2^2``, or a budget with the leader's price as coefficient
``2 - p * x`` (bilinear in the leader's and the follower's variables). A mode
that needs a linear slack (the big-M disjunction takes its bound from interval
arithmetic on a linear form; an SOS1 set needs a variable) gets it through
:func:`linear_pairs`: each nonlinear slack becomes an auxiliary variable
``t`` with the defining constraint ``t == s(x)`` on the mode's block, and the
pair ``0 <= lambda _|_ t >= 0`` takes its place, as
:mod:`~stackopt.methods.mpec.linking` does for the arguments of singular terms.
The bounds of ``t`` are implied by the model, so its feasible set is
unchanged: ``t >= 0`` (the follower's constraint itself, which stays in the
model) and the upper bound that interval arithmetic gives for ``s`` over the
variables' boxes (Pyomo's ``compute_bounds_on_expr``; none where a variable
it needs is unbounded). Linear slacks are left as they are.
"""
from __future__ import annotations

import dataclasses
import math

import pyomo.environ as pyo
from pyomo.contrib.fbbt.fbbt import compute_bounds_on_expr
from pyomo.repn.standard_repn import generate_standard_repn


def is_linear(expr) -> bool:
    """Whether ``expr`` is linear (or constant) in the model's unfixed variables."""
    if not hasattr(expr, "is_expression_type") or not expr.is_potentially_variable():
        return True
    return generate_standard_repn(expr, compute_values=True, quadratic=False).is_linear()


def linear_pairs(block, pairs) -> list:
    """``pairs`` with every nonlinear slack replaced by a bounded auxiliary variable defined
    on ``block`` (``slack_link[k] == slack``); linear slacks are kept."""
    out = []
    for pair in pairs:
        if is_linear(pair.slack):
            out.append(pair)
            continue
        if block.component("slack_link") is None:
            block.slack_link = pyo.VarList()
            block.slack_link_definition = pyo.ConstraintList()
        t = block.slack_link.add()
        _, hi = compute_bounds_on_expr(pair.slack)
        t.setlb(0.0)
        t.setub(hi if hi is not None and math.isfinite(hi) else None)
        value = pyo.value(pair.slack, exception=False)
        if value is not None:
            t.set_value(min(max(value, 0.0), t.ub if t.ub is not None else value),
                        skip_validation=True)
        block.slack_link_definition.add(t == pair.slack)
        out.append(dataclasses.replace(pair, slack=t, linked=pair.slack))
    return out
