"""The game a user writes: :class:`StackelbergGame` (a Pyomo model, the followers as blocks, the
leader's variables, objective and constraints), its checked :class:`GameStructure` read from the
model, and the convexity analysis of each follower's objective in its own variables.
"""
from .convexity import convex_constraint, convex_in_own
from .game import StackelbergGame, initial_leader
from .structure import GameStructure, build_structure

__all__ = ["GameStructure", "StackelbergGame", "build_structure", "convex_constraint", "convex_in_own",
           "initial_leader"]
