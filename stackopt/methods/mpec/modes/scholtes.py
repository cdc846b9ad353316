"""Mode ``regularization`` (alias ``scholtes``): the complementarity product held below eps."""
from __future__ import annotations

import pyomo.environ as pyo

from ..registry import Reformulation, continuation_options, register_mode


@register_mode("regularization", "scholtes")
class Regularization(Reformulation):
    """Regularised complementarity (Scholtes 2001).

    Each pair ``0 <= lambda _|_ s(x) >= 0`` becomes

        lambda >= 0,   s(x) >= 0   (already in the model),   lambda * s(x) <= eps,

    a smooth NLP whose feasible set satisfies the constraint qualifications an
    interior-point solver needs (for eps > 0). ``eps`` is a mutable ``Param``
    in the constraints' upper bound, so a compiled NLP re-reads it without
    recompiling.

    The MPEC methods write the multipliers in the followers' units
    (:mod:`~stackopt.methods.mpec.units`), so ``eps`` bounds the same products
    whatever the units of the followers' objectives.

    Options: ``eps_initial`` (0.1), ``eps_final`` (1e-8), ``eps_factor`` (0.1):
    Ipopt solves at eps_initial, eps_initial * eps_factor, ... down to
    eps_final, each warm-started from the previous solution; SCIP solves once
    at eps_final (the regularised problem is a relaxation of the MPEC, so its
    global optimum bounds the MPEC's).
    """

    CONFIG = continuation_options("regularization")
    continuation = True

    def setup(self, block, sl) -> None:
        block.eps = pyo.Param(mutable=True, initialize=self.config.eps_initial)
        block.products = pyo.ConstraintList()

    def add_pair(self, block, k: int, pair) -> None:
        block.products.add(pair.multiplier * pair.slack <= block.eps)

    def set_parameter(self, block, value: float) -> None:
        block.eps = float(value)
