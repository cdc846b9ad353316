"""The equilibrium oracle: the followers' Nash equilibrium at a leader strategy
(:class:`EquilibriumOracle`, returning an :class:`Equilibrium`). It owns the stacked KKT residual
and its linear solves, semismooth Newton, the followers' own dynamics from cold starts (gradient
play, damped best responses: ``responses``), the deviation check, the followers' sets, and the
implicit derivatives of an equilibrium in the leader's variables (tangent, adjoint gradients).
"""
from .equilibrium import Equilibrium, OracleCounters, distinct
from .implicit import equilibrium_jacobian, game_jacobians, leader_gradients, sensitivity, tangent
from .oracle import EquilibriumOracle
from .residual import KKTResidual, Linearization

__all__ = [
    "Equilibrium", "EquilibriumOracle", "KKTResidual", "Linearization", "OracleCounters",
    "distinct", "equilibrium_jacobian", "game_jacobians", "leader_gradients", "sensitivity", "tangent",
]
