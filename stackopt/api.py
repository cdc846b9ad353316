"""The one entry point, :func:`solve`: validate, refresh the game, run a method, score its answer.

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
from dataclasses import replace

import numpy as np

from stackopt.core import Result, Status, make_progress
from stackopt.core.blas import blas_threads as blas_scope
from stackopt.core.blas import check_threads
from stackopt.methods import MethodOutput, get_method, method_config


def solve(game, method: str = "gradient", seed: int = 0, *, time_limit: float | None = None,
          progress: bool | None = None, blas_threads: int | None = 1,
          precision: float | None = None, max_draws: int | None = None, **options) -> Result:
    """Solve ``game`` with a registered ``method``; options are the method's keyword options
    (over the game's recommended ``game.method_options[method]``).

    ``progress`` shows the method's steps while it runs: ``True`` a bar on a terminal and
    a line every few seconds elsewhere, ``False`` nothing, ``None`` (default) a bar on a
    terminal only (see :mod:`stackopt.core.progress`). ``blas_threads``: BLAS and LAPACK
    threads of the solve (one by default, whatever the environment says; ``None``: as the
    process has it; see :mod:`stackopt.core.blas`). ``precision`` and ``max_draws``: how
    precisely scoring estimates the leader's expected objective over the followers'
    equilibria (a standard error relative to the objective's scale, and a cap on the
    draws; defaults :data:`stackopt.scoring.PRECISION` and :data:`stackopt.scoring.MAX_DRAWS`;
    see :mod:`stackopt.scoring`).

    Bad input (an invalid game, unknown method or option) raises ``ValueError``.
    Anything that goes wrong inside the method is reported in the result's
    ``status`` and ``message``; no exception escapes.
    """
    from stackopt.scoring import MAX_DRAWS, PRECISION, check_precision, score

    cls = get_method(method)  # a process's first call imports the methods, not counted below
    entered = time.perf_counter()  # time_limit bounds the whole call, reading the model included
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real)
                                   or not time_limit > 0):
        raise ValueError(f"time_limit must be a number of seconds > 0 (or None), got {time_limit!r}")
    if time_limit is not None and not math.isfinite(time_limit):
        time_limit = None
    threads = check_threads(blas_threads)
    precision = PRECISION if precision is None else precision
    max_draws = MAX_DRAWS if max_draws is None else max_draws
    check_precision(precision, max_draws)
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
    display = make_progress(progress, f"{cls.name} on {game.name}", _step_budget(config))
    method_obj = cls(progress=display)
    method_obj.check(config)
    start = time.perf_counter()
    # the method gets what is left of the limit after reading the game (at least a millisecond)
    left = None if time_limit is None else max(time_limit - (start - entered), 1e-3)
    with blas_scope(threads):
        try:
            out = method_obj.run(game, config, int(seed), left)
        except Exception as exc:  # a failing solver must not crash a sweep
            from stackopt.game import initial_leader

            out = MethodOutput(leader=initial_leader(game), status=Status.ERROR,
                               message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        finally:
            display.close()
        elapsed = time.perf_counter() - start
        out = past_limit(out, time.perf_counter() - entered, time_limit, "the method", out.work.clock_stops)
        deadline = None if time_limit is None else entered + time_limit + scoring_grace(time_limit)
        result = score(game, out, method=method, seed=int(seed), deadline=deadline,
                       precision=precision, max_draws=max_draws)
        result = past_limit(result, time.perf_counter() - entered,  # scoring cut short by the clock
                            None if time_limit is None else time_limit + scoring_grace(time_limit),
                            "the method with its scoring", result.oracle_solves["scoring"]["clock_stops"])
    result.history = list(result.history)  # the records, without the display they went to
    result.wall_time_s = elapsed
    result.options = {k: _plain(v) for k, v in config.value().items()}
    return result


# what a method or scoring reports where it may have been cut short by the clock
_CLOCKED = (Status.OPTIMAL, Status.CONVERGED, Status.MAX_ITERATIONS, Status.NOT_CONVERGED,
            Status.EQUILIBRIUM_NOT_FOUND)


def past_limit(out, elapsed: float, limit: float | None, who: str, clock_stops: int = 0):
    """``out`` (a MethodOutput or Result) with status ``TIME_LIMIT`` where it took longer than
    ``limit`` seconds, or ``clock_stops`` equilibrium solves ended past their deadline (the
    oracle's per-call limit, 600 s by default, or the method's), and its status does not
    already say why it stopped otherwise.

    The deadlines a method and scoring check end at most ``limit`` seconds after ``solve``
    began, so an answer returned within its limit, without an oracle call stopped by a
    clock, was computed without any clock check firing: it does not depend on the clock,
    the same on a machine loaded or not. Otherwise some check may have cut work that
    changes the answer (a skipped confirmation, an oracle call stopped early), so the
    answer is labelled as depending on the clock, whatever its own status said (kept in
    the message).
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


def _step_budget(config) -> int | None:
    """The method's largest number of steps, where it has an option for one (the bar's length)."""
    for key in ("steps", "maxiter", "max_iter"):
        if key in config and isinstance(config[key], int):
            return config[key]
    return None


def scoring_grace(time_limit: float) -> float:
    """Seconds past ``time_limit`` that scoring may take (the initial and the final
    strategy's equilibria): the larger of two seconds and a tenth of the limit.
    ``solve`` returns within limit + grace, counted from its call (once the methods
    are imported, which a process's first call does): reading the model,
    preparing the game, building a reformulation and any process a method starts
    count as the method's."""
    return max(2.0, 0.1 * time_limit)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
