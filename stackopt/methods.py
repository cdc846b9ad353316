"""Registered solution methods and the one entry point, :func:`solve`.

Every method receives the same :class:`~stackopt.game.StackelbergGame` and
proposes a leader strategy; :func:`solve` then scores that strategy with the
same equilibrium oracle for every method (see :mod:`stackopt.scoring`), so
results are comparable like for like.
"""
from __future__ import annotations

import math
import numbers
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
from pyomo.common.config import ConfigDict

from .equilibrium import WORK, work_since
from .options import check, domain_of, registrar
from .result import Result, Status

_METHODS: dict[str, type["Method"]] = {}
# modules whose import registers the built-in methods; imported on the registry's first use
_BUILTIN_MODULES = ("stackopt.blackbox", "stackopt.initial", "stackopt.gradient", "stackopt.reduced_ipopt", "stackopt.mpec")
_builtins_loaded = False


def _load_builtin_methods() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first, so that a module importing the registry does not recurse
        import importlib

        try:
            for module in _BUILTIN_MODULES:
                importlib.import_module(module)
        except BaseException:
            _builtins_loaded = False
            raise


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


class Method:
    """Base of registered methods: a ``CONFIG`` of typed options and :meth:`run`."""

    name: str = ""
    CONFIG = ConfigDict()
    honours_integers = False  # True: the method checks integer and binary domains itself

    def check(self, config) -> None:
        """Raise ``ValueError`` for options that contradict each other (before any work)."""

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        raise NotImplementedError


def register_method(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator registering a :class:`Method` under ``name`` (and aliases)."""
    return registrar(_METHODS, "method", name, aliases)


def available_methods() -> list[str]:
    _load_builtin_methods()
    return sorted({cls.name for cls in _METHODS.values()})


def get_method(name: str) -> type[Method]:
    _load_builtin_methods()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {available_methods()}")
    return _METHODS[name]


def method_config(name: str, options: dict[str, Any]):
    """Validate ``options`` against the method's CONFIG; raise ValueError naming the bad one."""
    cls = get_method(name)
    cfg = cls.CONFIG()
    for key, val in options.items():
        if key not in cfg:
            raise ValueError(
                f"unknown option {key!r} for method {name!r}; expected one of {sorted(cfg.keys())}"
            )
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


def solve(game, method: str = "gradient", seed: int = 0, *, time_limit: float | None = None,
          **options) -> Result:
    """Solve ``game`` with a registered ``method``; options are the method's keyword options
    (over the game's recommended ``game.method_options[method]``).

    Bad input (an invalid game, unknown method or option) raises ``ValueError``.
    Anything that goes wrong inside the method is reported in the result's
    ``status`` and ``message``; no exception escapes.
    """
    from .scoring import score

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real)
                                   or not time_limit > 0):
        raise ValueError(f"time_limit must be a number of seconds > 0 (or None), got {time_limit!r}")
    if time_limit is not None and not math.isfinite(time_limit):
        time_limit = None
    cls = get_method(method)
    recommended = game.method_options.get(cls.name, {})
    config = method_config(method, {**recommended, **options})
    game.refresh()  # what the user changed on the model since the last solve
    structure = game.structure()
    if not cls.honours_integers:
        for v in list(structure.leader_variables) + list(structure.follower_variables):
            if not v.is_continuous():
                raise ValueError(
                    f"variable {v.name!r} has the domain {v.domain.name}; method {method!r} treats "
                    "every variable as continuous (give it domain=pyo.Reals and bounds, or use mpec-scip "
                    "for integer leader variables)")
    method_obj = cls()
    method_obj.check(config)
    start, before = time.perf_counter(), dict(WORK)
    try:
        out = method_obj.run(game, config, int(seed), time_limit)
    except Exception as exc:  # a failing solver must not crash a sweep
        from .game import initial_leader

        out = MethodOutput(leader=initial_leader(game), status=Status.ERROR,
                           message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
    elapsed, by_method, scored = time.perf_counter() - start, work_since(before), dict(WORK)
    out = past_limit(out, elapsed, time_limit, "the method", by_method["clock_stops"])
    deadline = None if time_limit is None else start + time_limit + scoring_grace(time_limit)
    result = score(game, out, method=method, seed=int(seed), deadline=deadline)
    result = past_limit(result, time.perf_counter() - start,  # scoring cut short by the clock
                        None if time_limit is None else time_limit + scoring_grace(time_limit),
                        "the method with its scoring", work_since(scored)["clock_stops"])
    result.wall_time_s = elapsed
    result.oracle_solves = {"method": by_method, "scoring": work_since(scored)}
    result.options = {k: _plain(v) for k, v in config.value().items()}
    return result


# what a method or scoring reports where it may have been cut short by the clock
_CLOCKED = (Status.OPTIMAL, Status.CONVERGED, Status.MAX_ITERATIONS, Status.NOT_CONVERGED,
            Status.EQUILIBRIUM_NOT_FOUND)


def past_limit(out, elapsed: float, limit: float | None, who: str, clock_stops: int = 0):
    """``out`` (a MethodOutput or Result) with status ``TIME_LIMIT`` where it took longer than
    ``limit`` seconds, or ``clock_stops`` equilibrium solves ended at their own time limit
    (the oracle's per-call one, 60 s by default), and its status does not already say why
    it stopped otherwise.

    The deadlines a method and scoring check end at most ``limit`` seconds after they
    began, so an answer returned within its limit, without an oracle call stopped by its
    own limit, was computed without any clock check firing: it is the same on any
    machine, loaded or not. Otherwise some check may have cut work that changes the
    answer (a skipped confirmation, an oracle call stopped early), so the answer is
    labelled as depending on the clock, whatever its own status said (kept in the message).
    """
    if out.status not in _CLOCKED:
        return out
    if limit is not None and elapsed > limit:
        note = f"{who} ran {elapsed:.3g} s, past its limit of {limit:.3g} s"
    elif clock_stops:
        note = (f"{clock_stops} equilibrium solve{'s' if clock_stops > 1 else ''} of {who} ended "
                "at the oracle's time limit")
    else:
        return out
    note += f" (status {out.status.value} before that): the answer may depend on the machine's speed"
    return replace(out, status=Status.TIME_LIMIT, message=f"{out.message}\n{note}".strip())


def scoring_grace(time_limit: float) -> float:
    """Seconds past ``time_limit`` that scoring may take (the initial and the final
    strategy's equilibria): the larger of two seconds and a tenth of the limit.
    ``solve`` returns within limit + grace (preparing the game counts as the method's)."""
    return max(2.0, 0.1 * time_limit)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
