"""The leader's variables and functions measured in their own scales, shared by the methods
of the leader's variables.

A step of one scale unit moves a variable across its box, or by ``max(1, |value|)``
where no box says how far it may go; the first move of a method's step rule is
``FIRST_MOVE`` scale units at most. The leader's objective and each constraint are
measured in their magnitude at the start (:class:`Scales`, :func:`problem_scales`), so
that a problem and its copy with a function multiplied by any positive factor are the same
scaled problem.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIRST_MOVE = 0.1  # the first trial moves a variable by at most this many scale units


def variable_scale(kernel, p=None) -> np.ndarray:
    """Box width where both bounds are finite (and apart), else ``max(1, |p|)`` (``p``
    defaults to the leader's initial values): steps relative to the value itself where
    no box says how far a variable may go."""
    width = kernel.p_ub - kernel.p_lb
    bounded = np.isfinite(width) & (width > 0)
    return np.where(bounded, width, np.maximum(1.0, np.abs(kernel.p0 if p is None else p)))


@dataclass(frozen=True)
class Scales:
    """The leader's problem's own scales at its start: the objective's magnitude
    ``objective`` and each (equilibrium-dependent) constraint's ``constraints``, each the
    larger of the function's absolute value there and the largest change of it over one
    scale of a leader variable (its gradient in scaled variables); one where both vanish.
    Tolerances on objectives and violations are relative to them."""

    objective: float
    constraints: np.ndarray

    def violation(self, cons) -> float:
        """The largest violation of constraint values ``cons`` (``<= 0`` feasible), each in
        its own scale."""
        return float((np.asarray(cons) / self.constraints).max(initial=0.0))

    def magnitude(self, f: float) -> float:
        """What an objective value ``f`` is compared with: ``max(m_f, |f|)``."""
        return max(self.objective, abs(f))


def _magnitude(value, gradient) -> np.ndarray:
    m = np.maximum(np.abs(value), np.max(np.abs(gradient), axis=-1, initial=0.0))
    return np.where(np.isfinite(m) & (m > 0), m, 1.0)


def function_scales(f: float, cons, gf, J, scale) -> Scales:
    """The :class:`Scales` of an objective value ``f`` and constraint values ``cons`` whose
    derivatives in the leader's variables are ``gf`` and ``J`` (variables in ``scale``)."""
    return Scales(objective=float(_magnitude(f, gf * scale)),
                  constraints=_magnitude(cons, J * scale).reshape(np.size(cons)))


def problem_scales(prob, pt, scale) -> Scales:
    """The :class:`Scales` of ``prob``'s coupled constraints and objective at its starting
    point ``pt`` (variables in ``scale``), from their implicit derivatives."""
    gf, J = prob.jacobian(pt)
    return function_scales(pt.f, pt.cons, gf, J, scale)
