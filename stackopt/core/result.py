"""The result every method returns, and the statuses it may carry."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """How a method or the equilibrium oracle ended.

    ``OPTIMAL`` is only used where a solver certified global optimality (a closed
    gap); a local method that met its stopping rule says ``CONVERGED``. Either is
    reported only where scoring also found the followers' equilibrium at the
    method's final strategy; where it did not, the status is
    ``EQUILIBRIUM_NOT_FOUND``.
    """

    OPTIMAL = "optimal"
    CONVERGED = "converged"
    MAX_ITERATIONS = "max_iterations"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    NOT_CONVERGED = "not_converged"
    EQUILIBRIUM_NOT_FOUND = "equilibrium_not_found"
    SOLVER_ERROR = "solver_error"
    ERROR = "error"

    def __str__(self) -> str:  # JSON and tables show the plain value
        return self.value


@dataclass
class Result:
    """Outcome of :func:`stackopt.solve`.

    ``leader_objective`` is the leader's objective expression, in its own sense,
    at the equilibrium the oracle reached for the final leader strategy (the mean
    over equilibrium samples where several were drawn); ``claimed_objective`` is
    what the method itself believed (for a reformulation, its single-level
    objective). ``constraint_violation`` is the largest positive part over the
    leader's constraints; ``equilibrium_residual`` the largest KKT residual of any
    follower at the reported equilibrium.

    ``claimed_objective`` and ``claimed_violation`` are what the method saw at the
    equilibrium it tracked (or, for a reformulation, in its single-level model);
    ``claim_gap`` is the largest of the differences between those and the scored
    values, where the method claimed any: where several equilibria exist, a
    method can hold one that the followers' own dynamics from fresh starts do not
    reach, and the message then says how far apart the two are.

    ``oracle_solves`` counts the equilibrium oracle's work: ``{"method": {...},
    "scoring": {...}}``, each with ``cold_starts`` (solves by the followers'
    dynamics from a start) and ``warm_solves`` (from a nearby equilibrium).

    What the scoring's draws of the followers' equilibrium showed
    (:mod:`stackopt.scoring`): ``draws`` (1 where the equilibrium is provably
    unique), ``objective_stderr`` (the standard error of the mean objective: 0 for a
    unique equilibrium, NaN for a single draw of one that may not be) and
    ``objective_interval`` (its 95 % interval, ``(low, high)``); ``pessimistic`` and
    ``optimistic``: the worst and best draw for the leader, ``{"objective": ...,
    "violation": ...}``; ``equilibria``: the distinct equilibria the draws reached,
    most frequent first, each ``{"count", "frequency", "objective", "violation"}``;
    ``worst_violation``: the largest violation of any draw (``constraint_violation``
    is the violation of the mean, the paper's expectation). ``optimistic_claim``: the
    method chose the followers' equilibrium together with its strategy (a
    single-level reformulation), so its ``claimed_objective`` is an optimistic value,
    not the expectation it is scored on.
    """

    game: str
    method: str
    status: Status
    leader_objective: float = float("nan")
    initial_objective: float = float("nan")
    constraint_violation: float = float("nan")
    equilibrium_residual: float = float("nan")
    wall_time_s: float = 0.0
    seed: int | None = None
    leader_values: dict[str, float] = field(default_factory=dict)
    follower_values: dict[str, float] = field(default_factory=dict)
    claimed_objective: float | None = None
    claimed_violation: float | None = None
    claim_gap: float | None = None
    bound: float | None = None
    gap: float | None = None
    singular_kkt: bool = False
    message: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    oracle_solves: dict[str, dict[str, int]] = field(default_factory=dict)
    draws: int = 0
    objective_stderr: float = float("nan")
    objective_interval: tuple[float, float] | None = None
    worst_violation: float = float("nan")
    pessimistic: dict[str, float] = field(default_factory=dict)
    optimistic: dict[str, float] = field(default_factory=dict)
    equilibria: list[dict[str, float]] = field(default_factory=list)
    optimistic_claim: bool = False

    def __post_init__(self) -> None:  # a projection's -0.0 is shown, stored and printed as 0
        for name in ("leader_objective", "initial_objective", "constraint_violation",
                     "equilibrium_residual", "claimed_objective", "bound", "gap",
                     "objective_stderr", "worst_violation"):
            setattr(self, name, _unsigned(getattr(self, name)))
        if self.objective_interval is not None:  # a stored list reads back as the pair
            low, high = self.objective_interval
            self.objective_interval = (_unsigned(low), _unsigned(high))
        self.leader_values = {k: _unsigned(v) for k, v in self.leader_values.items()}
        self.follower_values = {k: _unsigned(v) for k, v in self.follower_values.items()}

    def __repr__(self) -> str:
        return (f"Result(game={self.game!r}, method={self.method!r}, status={self.status.value!r}, "
                f"leader_objective={_g(self.leader_objective)}, "
                f"constraint_violation={_g(self.constraint_violation)}, seed={self.seed!r})")

    def __str__(self) -> str:
        lines = [f"{self.method} on {self.game}" + (f" (seed {self.seed})" if self.seed is not None
                                                    else "") + f": {self.status.value}"]

        def row(label: str, text: str) -> None:
            lines.append(f"  {label:21s} {text}")

        row("leader objective", f"{_g(self.leader_objective)} (initial {_g(self.initial_objective)})")
        if self.draws:
            row("draws", self._draws_text())
        row("constraint violation", _g(self.constraint_violation)
            + (f" (worst draw {_g(self.worst_violation)})"
               if self.draws > 1 and self.worst_violation != self.constraint_violation else ""))
        row("equilibrium residual", _g(self.equilibrium_residual))
        row("wall time", f"{_g(self.wall_time_s, 3)} s")
        for label, v in (("claimed objective", self.claimed_objective), ("bound", self.bound),
                         ("gap", self.gap)):
            if v is not None:
                row(label, _g(v))
        if self.singular_kkt:
            row("singular KKT", "yes: the gradient fell back to least squares")
        row("leader values", _values(self.leader_values))
        row("follower values", _values(self.follower_values))
        if self.message.strip():
            row("message", self.message.strip().replace("\n", "\n" + " " * 24))
        return "\n".join(lines)

    def _draws_text(self) -> str:
        n = self.draws
        if n == 1 and self.objective_stderr == 0:
            return "1 (a unique equilibrium)"
        text = f"{n}"
        if self.objective_interval is not None and n > 1:
            low, high = self.objective_interval
            text += f", 95 % interval [{_g(low)}, {_g(high)}] (s.e. {_g(self.objective_stderr, 3)})"
        if self.equilibria:
            k = len(self.equilibria)
            text += f", {k} distinct equilibri{'um' if k == 1 else 'a'}"
        if n > 1 and self.pessimistic and self.optimistic:
            text += (f"; worst draw {_g(self.pessimistic['objective'])}, "
                     f"best {_g(self.optimistic['objective'])}")
        return text

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a JSON-ready dict (no values, no history, no equilibria)."""
        d = asdict(self)
        for k in ("leader_values", "follower_values", "history", "options", "equilibria"):
            d.pop(k)
        d["status"] = self.status.value
        return d

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


def _unsigned(v):
    return v + 0.0 if isinstance(v, float) else v  # -0.0 + 0.0 == +0.0; NaN stays NaN


def _g(v, digits: int = 6) -> str:
    """A number in ``digits`` significant figures; -0 as 0."""
    if v is None:
        return "none"
    if isinstance(v, float) and v == 0:
        return "0"
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) else str(v)


def _values(values: dict[str, float], shown: int = 8) -> str:
    if not values:
        return "-"
    items = list(values.items())
    text = ", ".join(f"{k} = {_g(v, 5)}" for k, v in items[:shown])
    return text + (f", ... ({len(items)} values)" if len(items) > shown else "")
