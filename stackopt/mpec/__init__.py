"""MPEC reformulations of a Stackelberg game: the leader plus every follower's KKT conditions.

:mod:`~stackopt.mpec.pipeline` builds one single-level model with
complementarity conditions; the registered methods turn it into something a
solver accepts:

- ``mpec-ipopt`` (alias ``scholtes``): regularised complementarity solved by Ipopt;
- ``mpec-scip`` (alias ``fortuny-amat-mccarl``): big-M / SOS1 / indicator MINLP
  solved globally by SCIP.

Both are optimistic: among the followers' equilibria they choose the one best
for the leader.
"""
from .pipeline import DEFAULT_BLOCK, Pair, SingleLevel, build_single_level

__all__ = ["DEFAULT_BLOCK", "Pair", "SingleLevel", "build_single_level"]
from . import scholtes  # noqa: E402,F401  (registers mpec-ipopt)
from . import scip  # noqa: E402,F401  (registers mpec-scip)
