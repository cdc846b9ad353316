"""What the equilibrium oracle returns, and the counters it keeps."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .result import Status


@dataclass
class Equilibrium:
    """Primal and dual values of all followers at an equilibrium (or the best point found).

    ``residual`` is the KKT residual's infinity norm at ``(x, nu, lam, w)`` and
    ``p``; ``status`` is ``CONVERGED`` when it met the oracle's tolerance.
    ``system`` and ``solver`` are the KKT residual and linear solver the oracle
    used: :meth:`linearization` factorises the KKT matrix here with them, once.
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
    system: object = field(default=None, repr=False, compare=False)
    solver: object = field(default=None, repr=False, compare=False)
    _linearization: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def linearized(self) -> bool:
        """Whether :meth:`linearization` has been computed."""
        return self._linearization is not None

    def linearization(self, reuse=None):
        """The reduced KKT system factorised at this equilibrium (computed on the first
        call, then kept); ``reuse`` as in :meth:`KKTResidual.linearize`, first call only."""
        if self._linearization is None:
            if self.system is None or self.solver is None:
                raise ValueError("this Equilibrium carries no KKT system: build it with an "
                                 "EquilibriumOracle (or pass system= and solver=)")
            self._linearization = self.system.linearize(self.x, self.lam, self.w, self.p,
                                                        self.solver, reuse=reuse)
        return self._linearization


@dataclass
class OracleCounters:
    """What an oracle has done since it was made (or since :meth:`reset`).

    ``cold_starts``: solves run by the cold-start dynamics (a random or given
    start, or a warm start that fell back to them); ``warm_solves``: solves
    from a previous equilibrium; ``newton_iterations``; ``dynamics_steps``
    (gradient-play steps or best-response sweeps); ``best_responses`` solved
    and ``best_response_failures`` (the solver did not report success);
    ``deviations``: local Nash equilibria left because a follower gained by
    deviating, and ``deviation_responses`` the best responses the searches for
    such deviations solved (:mod:`stackopt.deviation`); ``failures``: solves that returned unconverged.
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

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Every oracle's solves in this process (children run by :mod:`stackopt.isolate` add
# theirs): :func:`stackopt.solve` reports the method's and the scoring's share.
# ``clock_stops``: solves that ended past their time limit, so that a check of the clock
# may have cut them short (an answer built on them depends on the machine's speed:
# solve then says time_limit).
WORK = {"cold_starts": 0, "warm_solves": 0, "clock_stops": 0}


def work_since(before: dict) -> dict:
    """The solves counted in :data:`WORK` since the snapshot ``before``."""
    return {key: WORK[key] - before.get(key, 0) for key in WORK}

