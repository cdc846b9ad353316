"""MPEC reformulations of a Stackelberg game: the leader plus every follower's KKT conditions.

:mod:`~stackopt.mpec.pipeline` builds one single-level model with
complementarity conditions on a clone of the game's model; the registered
methods turn it into something a solver accepts:

- ``mpec-ipopt`` (alias ``scholtes``, :mod:`~stackopt.mpec.scholtes`):
  regularised complementarity solved by Ipopt;
- ``mpec-scip`` (alias ``fortuny-amat-mccarl``, :mod:`~stackopt.mpec.scip`):
  big-M / SOS1 / indicator MINLP (:mod:`~stackopt.mpec.minlp`), its singular
  terms' linear arguments made bounded variables (:mod:`~stackopt.mpec.linking`),
  solved globally by SCIP in a guarded process.

Both are optimistic: among the followers' equilibria they choose the one best
for the leader.
"""
from .pipeline import DEFAULT_BLOCK, Pair, SingleLevel, build_single_level
from .minlp import FORMULATIONS, Minlp, reformulate
from .linking import link_linear_arguments
from .scholtes import ScholtesMpec
from .scip import ScipMpec, solve_guarded

__all__ = [
    "DEFAULT_BLOCK", "Pair", "SingleLevel", "build_single_level", "FORMULATIONS", "Minlp",
    "reformulate", "link_linear_arguments", "ScholtesMpec", "ScipMpec", "solve_guarded",
]
