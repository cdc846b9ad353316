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

import numpy as np

from stackopt.core import Result, Status
from stackopt.core.blas import blas_threads as blas_scope
from stackopt.core.blas import check_threads
from stackopt.methods import MethodOutput, get_method, method_config
from stackopt.oracle import WORK, work_since


def solve(game, method: str = "gradient", seed: int = 0, *, time_limit: float | None = None,
          blas_threads: int | None = 1, **options) -> Result:
    """Solve ``game`` with a registered ``method``; options are the method's keyword options
    (over the game's recommended ``game.method_options[method]``).

    ``blas_threads``: BLAS and LAPACK threads of the solve (one by default, whatever the
    environment says; ``None``: as the process has it; see :mod:`stackopt.core.blas`).
    Bad input (an invalid game, unknown method or option) raises ``ValueError``.
    Anything that goes wrong inside the method is reported in the result's
    ``status`` and ``message``; no exception escapes.
    """
    from stackopt.scoring import score

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real)
                                   or not time_limit > 0):
        raise ValueError(f"time_limit must be a number of seconds > 0 (or None), got {time_limit!r}")
    if time_limit is not None and not math.isfinite(time_limit):
        time_limit = None
    threads = check_threads(blas_threads)
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
    with blas_scope(threads):
        try:
            out = method_obj.run(game, config, int(seed), time_limit)
        except Exception as exc:  # a failing solver must not crash a sweep
            from stackopt.game import initial_leader

            out = MethodOutput(leader=initial_leader(game), status=Status.ERROR,
                               message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        elapsed, by_method, scored = time.perf_counter() - start, work_since(before), dict(WORK)
        deadline = None if time_limit is None else start + time_limit + scoring_grace(time_limit)
        result = score(game, out, method=method, seed=int(seed), deadline=deadline)
    result.wall_time_s = elapsed
    result.oracle_solves = {"method": by_method, "scoring": work_since(scored)}
    result.options = {k: _plain(v) for k, v in config.value().items()}
    return result


def scoring_grace(time_limit: float) -> float:
    """Seconds past ``time_limit`` that scoring may take (the initial and the final
    strategy's equilibria): the larger of two seconds and a tenth of the limit.
    ``solve`` returns within limit + grace (preparing the game counts as the method's)."""
    return max(2.0, 0.1 * time_limit)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
