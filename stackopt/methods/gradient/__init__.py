"""The ``gradient`` method: the leader's scaled augmented Lagrangian (``merit``) minimised by Adam,
then spectral projected gradient steps (``steps``), with multiplier updates and the choice of an
answer in the outer loop (``lagrangian``); gradients by implicit differentiation of the tracked
equilibria.
"""
from .method import GradientMethod, Options

__all__ = ["GradientMethod", "Options"]
