"""Registered solution methods: :class:`Method`, :class:`MethodOutput`, :func:`register_method`.

Every method receives the same :class:`~stackopt.game.StackelbergGame` and
proposes a leader strategy; :func:`stackopt.solve` (:mod:`stackopt.api`) looks it up here
by name, validates its options against its ``CONFIG`` (:func:`method_config`) and
then scores that strategy with the
same equilibrium oracle for every method (see :mod:`stackopt.scoring`), so
results are comparable like for like.
"""
from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyomo.common.config import ConfigDict

from stackopt.core import Status, check, did_you_mean, domain_of, registrar
from stackopt.oracle import OracleCounters

_METHODS: dict[str, type[Method]] = {}
# the built-in methods: name -> (the module whose import registers it, its aliases). A method is
# looked up by importing its module alone (the others, e.g. SciPy's optimisers or the MPEC
# reformulations, stay unimported); a listing or an unknown name imports them all
_BUILTINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "slsqp": ("stackopt.methods.blackbox", ()),
    "trust-region": ("stackopt.methods.blackbox", ("trust-constr",)),
    "initial": ("stackopt.methods.initial", ()),
    "gradient": ("stackopt.methods.gradient", ("augmented-lagrangian",)),
    "implicit-ipopt": ("stackopt.methods.implicit_ipopt", ("reduced-ipopt",)),
    "mpec": ("stackopt.methods.mpec", ()),
    "mpec-ipopt": ("stackopt.methods.mpec", ("scholtes",)),
    "mpec-scip": ("stackopt.methods.mpec", ("fortuny-amat-mccarl",)),
}
_BUILTIN_MODULE = {n: module for name, (module, aliases) in _BUILTINS.items() for n in (name, *aliases)}


def _load_builtin_methods() -> None:
    """Import every built-in method's module (an import already made, or under way, is
    Python's own: nothing is imported twice)."""
    for module in dict.fromkeys(_BUILTIN_MODULE.values()):
        importlib.import_module(module)


def _load_method(name: str) -> None:
    """Register ``name``: import its built-in module, or every built-in one for another name."""
    if name not in _METHODS and name in _BUILTIN_MODULE:
        importlib.import_module(_BUILTIN_MODULE[name])
    if name not in _METHODS:
        _load_builtin_methods()


@dataclass
class MethodOutput:
    """What a method proposes; :func:`solve` turns it into a scored :class:`Result`."""

    leader: np.ndarray  # leader values, in the order of structure().leader_variables
    status: Status
    claimed_objective: float | None = None
    claimed_violation: float | None = None  # the violation the method saw at its own equilibrium
    bound: float | None = None
    gap: float | None = None
    singular_kkt: bool = False
    message: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    follower_hint: np.ndarray | None = None  # an equilibrium the method already holds
    work: OracleCounters = field(default_factory=OracleCounters)  # the method's oracle solves


class Method:
    """Base of registered methods: a ``CONFIG`` of typed options and :meth:`run`.

    ``progress`` is called with each record a method adds to its history while it runs
    (``solve(..., progress=...)`` passes a display; by default nothing).
    """

    name: str = ""
    CONFIG = ConfigDict()
    honours_integers = False  # True: the method checks integer and binary domains itself

    def __init__(self, progress: Callable[[dict], None] | None = None):
        self.progress = progress if progress is not None else _ignore

    def check(self, config) -> None:
        """Raise ``ValueError`` for options that contradict each other (before any work)."""

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        raise NotImplementedError


def _ignore(record: dict) -> None:
    pass


class ReportedHistory(list):
    """A method's history that passes each record appended to it to ``progress`` as well."""

    def __init__(self, progress: Callable[[dict], None] | None = None):
        super().__init__()
        self.progress = progress if progress is not None else _ignore

    def append(self, record: dict) -> None:
        super().append(record)
        self.progress(record)

    def __reduce__(self):  # pickles as the plain list of records
        return list, (list(self),)


def register_method(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator registering a :class:`Method` under ``name`` (and aliases)."""
    enter = registrar(_METHODS, "method", name, aliases)

    def deco(cls):
        for n in (name, *aliases):  # a built-in name: its method first, so that the clash is told
            module = _BUILTIN_MODULE.get(n)
            if module is not None and cls.__module__ != module and not cls.__module__.startswith(module + "."):
                importlib.import_module(module)
        return enter(cls)

    return deco


def available_methods() -> list[str]:
    _load_builtin_methods()
    return sorted({cls.name for cls in _METHODS.values()})


def method_names(aliases: bool = False) -> list[str]:
    """The names :func:`available_methods` lists (with ``aliases``, their aliases too), without
    importing a method (for help texts and choices)."""
    names = {cls.name for cls in _METHODS.values()} | set(_BUILTINS)
    if aliases:
        names |= set(_METHODS) | set(_BUILTIN_MODULE)
    return sorted(names)


def get_method(name: str) -> type[Method]:
    _load_method(name)
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}{did_you_mean(name, _METHODS)}; expected one of "
                         f"{available_methods()}")
    return _METHODS[name]


def method_config(name: str, options: dict[str, Any]):
    """Validate ``options`` against the method's CONFIG; raise ValueError naming the bad one."""
    cls = get_method(name)
    cfg = cls.CONFIG()
    for key, val in options.items():
        if key not in cfg:
            raise ValueError(f"unknown option {key!r} for method {name!r}"
                             f"{did_you_mean(key, cfg.keys())}; expected one of {sorted(cfg.keys())}")
        default = cfg.get(key).value()
        numeric = isinstance(default, numbers.Real) and not isinstance(default, bool)
        if numeric and isinstance(val, bool):
            raise ValueError(f"option {key!r} of method {name!r}: expected a number, got {val!r}")
        if isinstance(val, numbers.Real) and not isinstance(val, bool) and not math.isfinite(val):
            raise ValueError(f"option {key!r} of method {name!r}: expected a finite number, got {val!r}")
        try:
            cfg[key] = check(domain_of(cfg.get(key)), val)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"option {key!r} of method {name!r}: {exc}") from None
    return cfg
