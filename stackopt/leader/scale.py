"""The leader's variables measured in their own scales, shared by the gradient methods.

A step of one scale unit moves a variable across its box, or by ``max(1, |value|)``
where no box says how far it may go; the first move of a method's step rule is
``FIRST_MOVE`` scale units at most.
"""
from __future__ import annotations

import numpy as np

FIRST_MOVE = 0.1  # the first trial moves a variable by at most this many scale units


def variable_scale(kernel, p=None) -> np.ndarray:
    """Box width where both bounds are finite (and apart), else ``max(1, |p|)`` (``p``
    defaults to the leader's initial values): steps relative to the value itself where
    no box says how far a variable may go."""
    width = kernel.p_ub - kernel.p_lb
    bounded = np.isfinite(width) & (width > 0)
    return np.where(bounded, width, np.maximum(1.0, np.abs(kernel.p0 if p is None else p)))
