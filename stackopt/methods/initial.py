"""The do-nothing baseline: the leader's initial values."""
from __future__ import annotations

from pyomo.common.config import ConfigDict

from stackopt.core import Status
from stackopt.game import initial_leader

from .registry import Method, MethodOutput, register_method


@register_method("initial")
class Initial(Method):
    """The leader's initial values (``None`` read as 0, clipped to the bounds)."""

    CONFIG = ConfigDict()

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        return MethodOutput(leader=initial_leader(game), status=Status.CONVERGED,
                            message="the leader's initial values")
