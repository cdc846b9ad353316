"""Mode ``smoothing`` (alias ``fischer-burmeister``): each pair as a smoothed Fischer-Burmeister equation."""
from __future__ import annotations

import pyomo.environ as pyo

from ..registry import Reformulation, continuation_options, register_mode


@register_mode("smoothing", "fischer-burmeister")
class Smoothing(Reformulation):
    """Smoothed Fischer-Burmeister equations (Facchinei, Jiang & Qi 1999).

    Each pair ``0 <= lambda _|_ s(x) >= 0`` becomes the equation

        lambda + s(x) - sqrt(lambda^2 + s(x)^2 + 2 eps) = 0,

    which holds exactly when lambda > 0, s(x) > 0 and lambda * s(x) = eps (for
    eps = 0: exactly complementarity). Unlike the regularisation's
    inequality it pins the product to eps, and its gradient stays bounded
    away from zero, so the NLPs are well conditioned down to small eps.
    ``eps`` is a variable whose lower and upper bounds are both eps (a bound
    that a compiled NLP re-reads; Ipopt treats it as fixed).

    A nonlinear slack (a disk's, or ``2 - p * x`` with the leader's price) is
    linked through a bounded auxiliary variable ``t == s(x)`` first
    (:mod:`~stackopt.methods.mpec.slacks`): with the bilinear slack inside the
    square root, Ipopt needed thousands of iterations at eps <= 1e-7 and
    converged from one start in four on ``price_budget``; linked, from every
    start in a few dozen.

    Options: ``eps_initial`` (0.1), ``eps_final`` (1e-8), ``eps_factor`` (0.1):
    Ipopt solves at eps_initial, eps_initial * eps_factor, ... down to
    eps_final, each warm-started from the previous solution; SCIP solves once
    at eps_final. With SCIP, the bound is the smoothed problem's (its feasible
    set, lambda * s = eps, is not a relaxation of the MPEC), and it stays weak
    where the multipliers are unbounded (the square root's relaxation needs
    their bounds): SCIP finds the optimum as its incumbent but seldom closes
    the gap; prefer ``regularization`` with ``scip`` for a certificate.
    """

    CONFIG = continuation_options("smoothing")
    continuation = True
    linear_slacks = True

    def setup(self, block, sl) -> None:
        block.eps = pyo.Var(initialize=self.config.eps_initial)
        self.set_parameter(block, self.config.eps_initial)
        block.equations = pyo.ConstraintList()

    def add_pair(self, block, k: int, pair) -> None:
        lam, s = pair.multiplier, pair.slack
        block.equations.add(lam + s - pyo.sqrt(lam ** 2 + s ** 2 + 2 * block.eps) == 0)

    def set_parameter(self, block, value: float) -> None:
        block.eps.setlb(float(value))
        block.eps.setub(float(value))
        block.eps.set_value(float(value))
