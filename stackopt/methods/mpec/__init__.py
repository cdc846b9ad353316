"""MPEC reformulations of a Stackelberg game: the leader plus every follower's KKT conditions.

:mod:`~stackopt.methods.mpec.pipeline` builds one single-level model with
complementarity conditions on a clone of the game's model; a **mode**
(:mod:`~stackopt.methods.mpec.registry`) writes each complementarity pair as Pyomo
components, and a **solver** solves the result:

- modes: one module each, imported below (importing one registers it), e.g.
  ``regularization`` (alias ``scholtes``, :mod:`~stackopt.methods.mpec.modes.scholtes`) and
  ``disjunctive`` (aliases ``big-m``, ``fortuny-amat-mccarl``,
  :mod:`~stackopt.methods.mpec.modes.disjunctive`); :data:`MODES` lists them all;
- solvers: ``ipopt`` (:mod:`~stackopt.methods.mpec.solvers.nlp`, through
  :class:`stackopt.solvers.nlp.NlpProblem`) and ``scip`` (:mod:`~stackopt.methods.mpec.solvers.scip`:
  Pyomo's NL writer, SCIP's NL reader in a subprocess, singular terms'
  linear arguments linked by :mod:`~stackopt.methods.mpec.linking`);
- generalized Nash games: shared constraints written once with the multipliers
  of the game's concept (:mod:`~stackopt.methods.mpec.shared`), nonlinear slacks
  linked through auxiliary variables for the modes that need linear ones
  (:mod:`~stackopt.methods.mpec.slacks`).

Registered methods (:mod:`~stackopt.methods.mpec.method`): ``mpec`` (``mode`` and
``solver`` as options), ``mpec-ipopt`` (alias ``scholtes``: regularization +
ipopt) and ``mpec-scip`` (alias ``fortuny-amat-mccarl``: disjunctive + scip).
All are optimistic: among the followers' equilibria they choose the one best
for the leader.
"""
from . import modes, solvers  # noqa: F401  (importing them registers the modes and solvers)
from .linking import link_linear_arguments
from .method import Mpec, MpecIpopt, MpecScip
from .options import DEFAULT_BLOCK
from .pipeline import Pair, SingleLevel, build_single_level
from .registry import MODES, SOLVERS, Reformulation, Solver, register_mode, register_solver

__all__ = [
    "DEFAULT_BLOCK", "Pair", "SingleLevel", "build_single_level", "link_linear_arguments",
    "Mpec", "MpecIpopt", "MpecScip", "MODES", "SOLVERS", "Reformulation", "Solver",
    "register_mode", "register_solver",
]
