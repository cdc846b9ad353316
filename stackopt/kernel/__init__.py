"""The compiled numeric form of a game (:class:`GameKernel`, built once per game by
:func:`kernel_of`): the followers' stacked gradients and their Jacobians, the leader's objective
and constraints with their derivatives, the followers' linear rows and bounds, and the same
evaluators at many follower points at once; ``refresh`` re-reads the model's values.
"""
from .kernel import GameKernel, kernel_of
from .rows import LinearRows, linear_rows

__all__ = ["GameKernel", "LinearRows", "kernel_of", "linear_rows"]
