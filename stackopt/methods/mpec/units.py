"""The single-level model in its own units: the same model for a game and any positive multiple
of its objectives or constraints.

Ipopt's tolerances, the continuation parameter ``eps`` of the regularisation (a bound on
products ``lambda * s``), ``complementarity_tol`` and SCIP's feasibility tolerances are
absolute numbers. Written in the game's units, the single-level model of a game whose
leader objective is multiplied by 1e-9 looks optimal almost anywhere to them, and one whose
followers' objectives are multiplied by 1e-9 has multipliers a billion times smaller, so
every complementarity product is "small". :func:`build_single_level
<stackopt.methods.mpec.pipeline.build_single_level>` with ``scale=True`` therefore writes

- the leader's objective divided by its magnitude :attr:`Units.objective`;
- each leader constraint ``body <= 0`` divided by its magnitude (:attr:`Units.constraints`);
- every follower's objective copy divided by the followers' common scale
  :attr:`Units.followers` before Pyomo's ``core.kkt`` differentiates it, so the
  stationarity conditions are in the followers' units and each multiplier on the model
  is ``lambda / Units.followers`` (``lambda`` the multiplier in the game's units): the
  products ``lambda * s`` that ``eps`` bounds do not change when the followers'
  objectives are multiplied by any positive number. One common scale for all followers
  (not one each) leaves every equilibrium concept as it is: a shared constraint's common
  multiplier stays common.

A magnitude is taken at the model's values when the solve starts, like the gradient
methods' :class:`~stackopt.leader.scale.Scales`: the larger of the function's absolute
value there and its largest change over one scale of a variable (its partial derivative
times the scale: a leader variable's box width, or ``max(1, |value|)`` without a finite
box, as :func:`~stackopt.leader.scale.variable_scale`; ``max(1, |value|)`` for the
followers' variables, whose boxes are often only wide safety bounds); one where both
vanish or cannot be evaluated. The followers' scale is the equilibrium oracle's
(:func:`~stackopt.oracle.oracle.follower_scale`: the followers' curvature in their own
variables at the initial values), so the MPEC methods and the oracle measure the
followers in the same units. Each of these is a positively homogeneous function of the
objective or constraint it measures, which is what makes the scaled model the same for
every positive multiple.

The solvers report in the game's units: a claimed objective and SCIP's bound are the
scaled ones times :attr:`Units.objective`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pyomo.environ as pyo
from pyomo.core.expr.calculus.derivatives import Modes, differentiate
from pyomo.core.expr.visitor import identify_variables


@dataclass(frozen=True)
class Units:
    """What the single-level model's functions are divided by: the leader's objective by
    ``objective``, leader constraint ``i`` by ``constraints[i]``, every follower's objective
    by ``followers``. ``Units()`` is the game's own units (nothing divided)."""

    objective: float = 1.0
    constraints: tuple = ()
    followers: float = 1.0

    def objective_value(self, scaled):
        """An objective value of the scaled model (or None) in the game's units."""
        return None if scaled is None else float(scaled) * self.objective

    def constraint(self, i: int) -> float:
        return self.constraints[i] if i < len(self.constraints) else 1.0


def magnitude(expr, scales: dict) -> float:
    """``max(|expr|, max_j |d expr / d v_j| * scale_j)`` at the variables' values (a variable
    missing from ``scales`` has ``max(1, |value|)``); one where that is zero or not finite."""
    if not hasattr(expr, "is_expression_type") or not expr.is_potentially_variable():
        value = pyo.value(expr, exception=False)
        return _positive(abs(value) if value is not None else 0.0)
    variables = [v for v in identify_variables(expr, include_fixed=False)]
    saved = [(v, v.value) for v in variables if v.value is None]
    for v, _ in saved:  # a variable without a value is at 0 (as Ipopt's start takes it)
        v.set_value(0.0, skip_validation=True)
    try:
        value = abs(float(pyo.value(expr)))
        grads = differentiate(expr, wrt_list=variables, mode=Modes.reverse_numeric) \
            if variables else []
        m = value
        for v, g in zip(variables, grads):
            m = max(m, abs(float(g)) * scales.get(id(v), max(1.0, abs(v.value or 0.0))))
    except (ArithmeticError, ValueError, TypeError):
        m = 0.0
    finally:
        for v, val in saved:
            v.set_value(val, skip_validation=True)
    return _positive(m)


def _positive(m: float) -> float:
    return float(m) if math.isfinite(m) and m > 0 else 1.0

