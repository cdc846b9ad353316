"""Solvers of the single-level model: Ipopt with a continuation in the mode's parameter
(``nlp``, ``nlp_steps``) and SCIP reading Pyomo's NL file in a subprocess (``scip``,
``scip_process``); importing a module registers its solver.
"""
from . import nlp, scip  # noqa: F401  (importing a solver registers it)
