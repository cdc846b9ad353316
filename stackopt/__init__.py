"""stackopt: Stackelberg games with one leader and several followers in Nash equilibrium.

Write the game once in Pyomo (:class:`StackelbergGame`), then :func:`solve` it
with any registered method; every result is scored by the same equilibrium
oracle.
"""
import os as _os


def _source_checkout() -> None:
    """In a source checkout, ``models/`` and ``comparisons/`` sit beside ``stackopt/``;
    installed, they are ``stackopt.models`` and ``stackopt.comparisons``. Let the
    package find them in the checkout too (e.g. ``python -m pytest`` from its root)."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    if not _os.path.isdir(_os.path.join(here, "models")) and all(
            _os.path.isfile(_os.path.join(root, d, "__init__.py")) for d in ("models", "comparisons")) \
            and _os.path.isfile(_os.path.join(root, "pyproject.toml")):
        for d in ("models", "comparisons"):
            import importlib.util as _u
            import sys as _sys
            name = f"{__name__}.{d}"
            if name not in _sys.modules:
                spec = _u.spec_from_file_location(name, _os.path.join(root, d, "__init__.py"),
                                                  submodule_search_locations=[_os.path.join(root, d)])
                mod = _u.module_from_spec(spec)
                _sys.modules[name] = mod
                spec.loader.exec_module(mod)
            globals()[d] = _sys.modules[name]


_source_checkout()

from .game import StackelbergGame  # noqa: E402
from .methods import Method, MethodOutput, available_methods, register_method, solve  # noqa: E402
from .result import Result, Status  # noqa: E402
from .checks import check_gradient
from .scoring import evaluate
from .stochastic import equilibria
from . import blackbox as _blackbox  # noqa: F401  (these imports register the methods)
from . import gradient as _gradient  # noqa: F401
from . import reduced_ipopt as _reduced_ipopt  # noqa: F401
from . import mpec as _mpec  # noqa: F401

__all__ = [
    "StackelbergGame", "solve", "Result", "Status", "Method", "MethodOutput",
    "register_method", "available_methods", "check_gradient", "evaluate",
    "equilibria",
]
__version__ = "0.1.0"
