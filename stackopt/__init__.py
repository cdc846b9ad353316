"""stackopt: Stackelberg games with one leader and several followers in Nash equilibrium.

Write the game once in Pyomo (:class:`StackelbergGame`), then :func:`solve` it
with any registered method; every result is scored by the same equilibrium
oracle. :func:`equilibrium` is the followers' (generalized) Nash equilibrium at
given leader values.

The games: one leader, whose objective and constraints are evaluated at the
followers' equilibrium; followers with objectives and constraints in any smooth
form, each constraint binding its own follower (nonlinear in its own variables,
``u1**2 + u2**2 <= 1``; the leader's variable as a coefficient, ``p * x <= 2``;
other followers' variables as data), and constraints shared by several followers
declared once (``game.add_shared_constraint("cap", f.q + g.q <= 30)``) under the
game's equilibrium concept (``shared="variational"``, ``"weighted"`` or ``"any"``).

The public names below are imported on first use (PEP 562), so that
``import stackopt`` and the command line's ``--help`` do not pay for Pyomo,
NumPy, SciPy and the methods until something needs them. The game models and
the comparison harness are the subpackages ``stackopt.models`` and
``stackopt.comparisons`` (the folders ``models/`` and ``comparisons/`` of a
checkout, mapped into the package by the install; develop with
``pip install -e .``).
"""
from __future__ import annotations

import importlib as _importlib
import sys as _sys

__version__ = "0.1.0"


def _scipy_without_pyomo_extras() -> None:
    """Keep Pyomo from importing ``scipy.stats`` (and ``integrate``, ``spatial``) whenever
    anything imports SciPy.

    Pyomo registers an import hook that runs its ``_finalize_scipy`` callback as soon as
    ``scipy`` is imported by anyone; the callback imports ``scipy.stats``, half a second
    of every process that uses stackopt (a command, a harness worker), which stackopt
    never uses. The hook is dropped once Pyomo has set it up (before SciPy is imported);
    Pyomo's own uses of SciPy still import those modules, on Pyomo's first use (its
    deferred ``scipy`` module runs the same callback when resolved). Where Pyomo's hook is
    not found (another Pyomo version) or SciPy is already imported, nothing changes.
    """
    if "scipy" in _sys.modules:
        return
    try:
        from pyomo.common.dependencies import DeferredImportCallbackFinder
    except ImportError:  # Pyomo absent or laid out differently: nothing to undo
        return
    callbacks = getattr(DeferredImportCallbackFinder, "_callbacks", None)
    if isinstance(callbacks, dict):
        callbacks.pop("scipy", None)


class _AfterPyomoDependencies:
    """A one-shot import hook: runs :func:`_scipy_without_pyomo_extras` right after Pyomo's
    ``pyomo.common.dependencies`` is imported, whoever imports it (``import stackopt``
    itself stays free of Pyomo), then leaves ``sys.meta_path``."""

    def find_spec(self, name, path=None, target=None):
        if name != "pyomo.common.dependencies":
            return None
        if self in _sys.meta_path:
            _sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return None  # not a plain module: let the other finders import it untouched
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _scipy_without_pyomo_extras()

        loader.exec_module = exec_module
        return spec


if "pyomo.common.dependencies" in _sys.modules:
    _scipy_without_pyomo_extras()
elif not any(isinstance(f, _AfterPyomoDependencies) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _AfterPyomoDependencies())

# public name -> the submodule defining it
_LAZY = {
    "StackelbergGame": ".game",
    "solve": ".api", "Method": ".methods", "MethodOutput": ".methods",
    "register_method": ".methods", "available_methods": ".methods",
    "Result": ".core", "Status": ".core",
    "check_gradient": ".checks", "GradientCheck": ".checks",
    "evaluate": ".scoring",
    "equilibria": ".stochastic",
    "equilibrium": ".nash", "NashEquilibrium": ".nash",
    "plot_history": ".plotting",
    "blas_threads": ".core.blas",
}
_SUBPACKAGES = ("models", "comparisons", "methods")

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))

