"""stackopt: Stackelberg games with one leader and several followers in Nash equilibrium.

Write the game once in Pyomo (:class:`StackelbergGame`), then :func:`solve` it
with any registered method; every result is scored by the same equilibrium
oracle.
"""
from .game import StackelbergGame
from .methods import MethodOutput, Method, available_methods, register_method, solve
from .result import Result, Status
from .checks import check_gradient
from .scoring import evaluate
from .stochastic import equilibria
from . import blackbox as _blackbox  # noqa: F401  (these imports register the methods)
from . import gradient as _gradient  # noqa: F401
from . import mpec as _mpec  # noqa: F401

__all__ = [
    "StackelbergGame", "solve", "Result", "Status", "Method", "MethodOutput",
    "register_method", "available_methods", "check_gradient", "evaluate",
    "equilibria",
]
__version__ = "0.1.0"
