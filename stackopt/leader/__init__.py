"""The leader's problem through the followers' equilibria ``x*(p)``: its objective and constraints
as functions of its own variables, with implicit or finite-difference derivatives, one point cache
and warm start (:class:`LeaderProblem` at a :class:`Point`), its own set (bounds and linear
constraints, :class:`LeaderSet`, :func:`spread_starts`), the choice of an answer among the
strategies a run saw (:class:`Answers`), and the scales in which methods measure its variables
and functions.
"""
from .answers import SAME_OBJECTIVE, Answers
from .leaderset import LeaderSet, spread_starts
from .problem import LeaderProblem, Point, TimeUp, declare_sampling, fixed_seed
from .scale import FIRST_MOVE, Scales, function_scales, problem_scales, variable_scale

__all__ = ["FIRST_MOVE", "SAME_OBJECTIVE", "Answers", "LeaderProblem", "LeaderSet", "Point", "Scales",
           "TimeUp", "declare_sampling", "fixed_seed", "function_scales", "problem_scales", "spread_starts",
           "variable_scale"]
