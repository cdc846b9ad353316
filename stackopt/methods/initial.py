"""The do-nothing baseline: the leader's initial values."""
from __future__ import annotations

from pyomo.common.config import ConfigDict

from stackopt.core import Status
from stackopt.game import initial_leader

from .registry import Method, MethodOutput, register_method


@register_method("initial")
class Initial(Method):
    """The leader's initial values (``None`` read as 0, clipped to the bounds).

    Scored like every method by the equilibrium oracle: in a generalized Nash game the
    equilibrium of the game's ``shared`` concept (Rosen's normalized equilibrium for
    ``"variational"`` and ``"weighted"``, the one the followers' dynamics reach for ``"any"``).
    """

    CONFIG = ConfigDict()

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        return MethodOutput(leader=initial_leader(game), status=Status.CONVERGED,
                            message="the leader's initial values")
