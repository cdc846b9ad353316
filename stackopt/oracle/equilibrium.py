"""What the equilibrium oracle returns: the equilibrium, and the work of the solve that found it;
which of several equilibria drawn are the same (:func:`distinct`)."""
from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields

import numpy as np

from stackopt.core import Status


@dataclass(frozen=True)
class OracleCounters:
    """The work of oracle solves (a value: solves return theirs, callers add them up).

    ``cold_starts``: solves run by the cold-start dynamics (a random or given
    start, or a warm start that fell back to them); ``warm_solves``: solves
    from a previous equilibrium; ``newton_iterations``; ``dynamics_steps``
    (gradient-play steps or best-response sweeps); ``best_responses`` solved
    and ``best_response_failures`` (the solver did not report success);
    ``deviations``: local Nash equilibria left because a follower gained by
    deviating, and ``deviation_responses`` the best responses the searches for
    such deviations solved (:mod:`stackopt.oracle.deviation`); ``failures``: solves that returned unconverged.
    ``clock_stops``: solves that ended past their deadline, so that a check of the clock may
    have cut them short (an answer built on them depends on the machine's speed:
    :func:`stackopt.solve` then says ``time_limit``). ``a + b`` adds two counts field by field.
    """

    cold_starts: int = 0
    warm_solves: int = 0
    newton_iterations: int = 0
    dynamics_steps: int = 0
    best_responses: int = 0
    best_response_failures: int = 0
    deviations: int = 0
    deviation_responses: int = 0
    failures: int = 0
    clock_stops: int = 0

    def __add__(self, other: OracleCounters) -> OracleCounters:
        return OracleCounters(*map(operator.add, _counts(self), _counts(other)))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def solves(self) -> dict:
        """The cold starts, warm solves and clock stops (what :attr:`Result.oracle_solves`
        reports)."""
        return {"cold_starts": self.cold_starts, "warm_solves": self.warm_solves,
                "clock_stops": self.clock_stops}


_COUNTER_NAMES = tuple(f.name for f in fields(OracleCounters))  # in the order of __init__
_counts = operator.attrgetter(*_COUNTER_NAMES)  # a count's fields as a tuple, in that order


@dataclass
class Equilibrium:
    """Primal and dual values of all followers at an equilibrium (or the best point found).

    ``residual`` is the KKT residual's infinity norm at ``(x, nu, lam, w)`` and
    ``p``; ``status`` is ``CONVERGED`` when it met the oracle's tolerance;
    ``counters`` is the work of the solve that returned it and ``message`` what
    it has to say. The oracle solves the game with every follower's objective divided by
    ``scale`` (:class:`~stackopt.oracle.oracle.FollowerUnits`): ``nu``, ``lam``, ``w`` and
    ``residual`` are in those units, the multipliers times ``scale`` in the game's own
    (:meth:`multipliers`). ``system`` and ``solver`` are the KKT residual and linear
    solver the oracle used: :func:`stackopt.oracle.implicit.sensitivity` factorises the
    KKT matrix here with them and returns the factorisation to its caller.
    """

    x: np.ndarray
    nu: np.ndarray
    lam: np.ndarray
    w: np.ndarray
    p: np.ndarray
    residual: float
    status: Status
    newton_iterations: int = 0
    relaxation_iterations: int = 0  # damped best-response sweeps, or gradient-play steps
    message: str = ""
    counters: OracleCounters = field(default_factory=OracleCounters, compare=False)
    scale: float = 1.0
    system: object = field(default=None, repr=False, compare=False)
    solver: object = field(default=None, repr=False, compare=False)

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    def multipliers(self) -> tuple:
        """``(nu, lam, w)`` in the game's own units (each times :attr:`scale`)."""
        return self.nu * self.scale, self.lam * self.scale, self.w * self.scale


def distinct(xs, distance: float) -> list[tuple[int, int]]:
    """The distinct equilibria among the followers' values ``xs`` (one array per draw), most
    frequent first (ties in the order of their first draw): ``(first draw, count)`` each. A
    draw is the equilibrium of the first earlier group whose first draw it is within
    ``distance`` of in every follower variable."""
    reps: list[list] = []  # [x, count, first draw]
    for i, x in enumerate(xs):
        for r in reps:
            if np.max(np.abs(r[0] - x), initial=0.0) <= distance:
                r[1] += 1
                break
        else:
            reps.append([np.asarray(x), 1, i])
    return [(i, c) for _, c, i in sorted(reps, key=lambda r: (-r[1], r[2]))]
