"""The leader's problem through the followers' equilibria ``x*(p)``: its objective and constraints
as functions of its own variables over tracked equilibria (:class:`ReducedProblem`, and
:class:`LeaderBlackBox` for the black-box methods), its own set (bounds and linear constraints,
:class:`LeaderSet`, :func:`spread_starts`), the choice of an answer among the strategies a run
saw (:class:`Answers`), and the scale in which the gradient methods measure its variables.
"""
from .answers import SAME_OBJECTIVE, Answers
from .leaderbox import LeaderBlackBox
from .leaderset import LeaderSet, spread_starts
from .reduced import ReducedProblem
from .scale import FIRST_MOVE, variable_scale

__all__ = ["FIRST_MOVE", "SAME_OBJECTIVE", "Answers", "LeaderBlackBox", "LeaderSet", "ReducedProblem",
           "spread_starts", "variable_scale"]
