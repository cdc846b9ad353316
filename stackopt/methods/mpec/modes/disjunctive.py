"""Mode ``disjunctive`` (aliases ``big-m``, ``fortuny-amat-mccarl``): each pair as a disjunction
with a binary variable or an SOS1 set, for a branch-and-bound solver."""
from __future__ import annotations

import pyomo.environ as pyo
from pyomo.common.config import ConfigDict, ConfigValue, In
from pyomo.repn.standard_repn import generate_standard_repn

from ..options import optional_positive
from ..registry import Reformulation, register_mode

FORMULATIONS = ("bigm", "sos1")


@register_mode("disjunctive", "big-m", "fortuny-amat-mccarl")
class Disjunctive(Reformulation):
    """Complementarity as a disjunction ``lambda = 0  or  s(x) = 0`` (Fortuny-Amat & McCarl 1981).

    For a pair ``0 <= lambda _|_ s(x) >= 0`` with ``s`` linear (a nonlinear
    slack, such as a disk's or ``2 - p * x`` with the leader's price ``p``, is
    first linked through a bounded auxiliary variable ``t == s(x)``,
    :mod:`~stackopt.methods.mpec.slacks`, so ``t`` takes its place):

    - ``formulation='bigm'``: a binary ``z`` (1: the constraint is active);
      ``s(x) <= M_s (1 - z)``, with ``M_s`` the largest value of ``s`` over the
      variables' bounds (interval arithmetic on the linear slack; a needed
      bound that is missing is a ``ValueError`` naming the variable and the
      bound). The multiplier side is ``lambda <= multiplier_bound * z`` when
      ``multiplier_bound`` is given; otherwise (multipliers have no natural
      bound) the SOS1 set ``{lambda, w}`` with ``w = 1 - z``: ``lambda > 0``
      forces ``z = 1``. (The bilinear ``lambda * (1 - z) <= 0`` is as exact but
      took 3 to 250 times more nodes on the gnash library problems.)
    - ``formulation='sos1'``: an auxiliary ``t = s(x)``, bounded by ``M_s``
      where that exists, and the SOS1 set ``{lambda, t}``; no bound is needed.

    Options: ``formulation`` (``'bigm'``), ``multiplier_bound`` (None; only
    with ``'bigm'``; a bound on the multipliers in the game's units). Solver:
    ``scip`` (binaries and SOS1 sets). Indicator constraints are not offered:
    the route to SCIP is Pyomo's NL writer, and the NL format has no indicator
    constraints.
    """

    CONFIG = ConfigDict("disjunctive")
    CONFIG.declare("formulation", ConfigValue(
        default="bigm", domain=In(FORMULATIONS),
        doc="how a complementarity pair becomes a disjunction: bigm (binary and big-M) or sos1"))
    CONFIG.declare("multiplier_bound", ConfigValue(
        default=None, domain=optional_positive,
        doc="big-M on the multipliers for formulation='bigm' (None: an SOS1 set {lambda, 1 - z})"))
    solvers = ("scip",)
    linear_slacks = True

    def setup(self, block, sl) -> None:
        if self.config.multiplier_bound is not None and self.config.formulation != "bigm":
            raise ValueError(
                f"multiplier_bound applies to formulation='bigm', not {self.config.formulation!r}")
        block.binary = pyo.VarList(domain=pyo.Binary)
        block.aux = pyo.VarList(bounds=(0, None))
        block.slack_side = pyo.ConstraintList()
        block.multiplier_side = pyo.ConstraintList()
        block.aux_definition = pyo.ConstraintList()
        self._sets = []
        # the model's multipliers are the game's divided by the followers' scale
        bound = self.config.multiplier_bound
        self._multiplier_bound = None if bound is None else bound / sl.units.followers

    def add_pair(self, block, k: int, pair) -> None:
        lam = pair.multiplier
        if self.config.formulation == "sos1":
            t = block.aux.add()
            t.setub(slack_upper_bound(pair, required=False))
            block.aux_definition.add(t == pair.slack)
            self._sets.append([lam, t])
            return
        z = block.binary.add()
        m_s = max(slack_upper_bound(pair, required=True), 0.0)
        block.slack_side.add(pair.slack + m_s * z <= m_s)  # s <= M_s (1 - z)
        if self._multiplier_bound is not None:
            block.multiplier_side.add(lam - self._multiplier_bound * z <= 0)
        else:
            w = block.aux.add()
            w.setub(1.0)
            block.aux_definition.add(w + z == 1)
            self._sets.append([lam, w])

    def finish(self, block) -> None:
        sets = self._sets
        if sets:
            block.sos1 = pyo.SOSConstraint(range(len(sets)), sos=1,
                                           rule=lambda b, k: (sets[k], [1, 2]))


def slack_upper_bound(pair, required: bool):
    """Largest value of the linear slack over the variables' bounds (None if unbounded)."""
    repn = generate_standard_repn(pair.slack, compute_values=True, quadratic=False)
    if not repn.is_linear():
        raise ValueError(f"the slack of the {pair.name} is not linear: {pair.slack}")
    total = float(pyo.value(repn.constant))
    for v, c in zip(repn.linear_vars, repn.linear_coefs):
        c = float(pyo.value(c))
        bound = v.ub if c > 0 else v.lb
        if bound is None:
            if not required:
                return None
            if pair.linked is not None:
                raise ValueError(
                    f"big-M for the {pair.name} needs an upper bound on its slack {pair.linked}, "
                    "which interval arithmetic over the variables' bounds does not give; give its "
                    "variables bounds or use formulation='sos1'")
            side = "an upper" if c > 0 else "a lower"
            raise ValueError(
                f"big-M for the {pair.name} needs {side} bound on variable {v.name!r}, which has "
                "none; give the variable bounds or use formulation='sos1'"
            )
        total += c * float(bound)
    return total
