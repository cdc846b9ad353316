"""Reformulation modes: how one complementarity pair becomes Pyomo components (Scholtes
regularisation, big-M/SOS1 disjunctions, Fischer-Burmeister smoothing); importing a module
registers its mode, in this order.
"""
from . import scholtes, disjunctive, smoothing  # noqa: F401, I001  (importing a mode registers it)
