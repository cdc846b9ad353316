"""The ``slsqp`` and ``trust-region`` methods: SciPy's optimisers over the leader's variables with
the equilibrium oracle inside and finite-difference gradients, run in a child process stopped at
the deadline (``isolate``).
"""
from .method import SLSQP, TrustRegion

__all__ = ["SLSQP", "TrustRegion"]
