"""The paper's Theorem-1 example: optimistic or pessimistic equilibrium selection can be arbitrarily bad.

Two followers (row and column player) and a leader with three strategies
(paper, Theorem 1 and Figure 2; docs/games.md). Each leader strategy
``k`` fixes a 3x3 coordination game in which both followers receive the same
payoff, a permutation matrix (Figure 2a-c):

* strategy 1: the identity, equilibria on the diagonal;
* strategy 2: ``[[0,1,0],[0,0,1],[1,0,0]]``;
* strategy 3: ``[[0,0,1],[1,0,0],[0,1,0]]``.

Each has three pure Nash equilibria, which the followers reach uniformly at
random. After they play ``(row, col)`` the leader receives entry ``(row, col)``
of Figure 2d,

    [[C,      0,      -eps],
     [C - eps, 0,      0   ],
     [0,      C - eps, -C  ]],

whatever strategy she chose. The equilibria are enumerated by
:func:`pure_nash_equilibria`; then, per selection rule, the leader picks the
strategy maximising what that rule anticipates (ties to the lowest strategy):
optimistic the best equilibrium, pessimistic the worst, stochastic the mean
over the uniformly drawn equilibria. Under uniform selection the optimistic
leader picks strategy 1 (anticipates ``C``, receives 0), the pessimistic one
strategy 2 (0), the stochastic-aware one strategy 3 (``2C/3 - eps``), strictly
better than both whenever ``C > 1.5 eps``. As in the paper, only the pure
equilibria are drawn (each game also has mixed equilibria, which are ignored).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

FOLLOWER_PAYOFFS = (
    np.eye(3),
    np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
    np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
)
SELECTIONS = ("optimistic", "pessimistic", "stochastic")


def leader_payoffs(C: float = 100.0, epsilon: float = 1.0) -> np.ndarray:
    """Figure 2d: the leader's payoff for each pair of follower actions (row, col)."""
    C, eps = _check(C, epsilon)
    return np.array([[C, 0.0, -eps], [C - eps, 0.0, 0.0], [0.0, C - eps, -C]])


def pure_nash_equilibria(row_payoff: Any, col_payoff: Any) -> list[tuple[int, int]]:
    """All pure Nash equilibria ``(row, col)`` (0-based) of the bimatrix game.

    A cell is an equilibrium when neither player gains by a unilateral deviation:
    the row player's payoff is a maximum of its column and the column player's a
    maximum of its row.
    """
    A = np.asarray(row_payoff, dtype=float)
    B = np.asarray(col_payoff, dtype=float)
    if A.ndim != 2 or A.shape != B.shape:
        raise ValueError(f"payoff matrices must be 2-D of equal shape, got {A.shape} and {B.shape}")
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
        raise ValueError("payoff matrices must be finite")
    best_row = A >= A.max(axis=0, keepdims=True)
    best_col = B >= B.max(axis=1, keepdims=True)
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(best_row & best_col))]


def strategy_outcomes(C: float = 100.0, epsilon: float = 1.0) -> list[dict]:
    """Per leader strategy: the followers' equilibria and the leader's payoff at each."""
    payoff = leader_payoffs(C, epsilon)
    out = []
    for k, P in enumerate(FOLLOWER_PAYOFFS, start=1):
        eqs = pure_nash_equilibria(P, P)  # both followers receive the same payoff
        out.append({"strategy": k, "equilibria": eqs,
                    "leader_values": [float(payoff[r, c]) for r, c in eqs]})
    return out


def theorem1_report(C: float = 100.0, epsilon: float = 1.0) -> dict[str, dict[str, float]]:
    """Strategy chosen, payoff anticipated and true expected payoff for each selection rule.

    Returns ``{"optimistic" | "pessimistic" | "stochastic": {"strategy": int
    (1-based), "anticipated": float, "expected": float}}``; ``expected`` is the
    leader's payoff averaged over the uniformly random equilibrium.
    """
    outcomes = strategy_outcomes(C, epsilon)
    expected = [float(np.mean(o["leader_values"])) for o in outcomes]
    anticipate = {
        "optimistic": [max(o["leader_values"]) for o in outcomes],
        "pessimistic": [min(o["leader_values"]) for o in outcomes],
        "stochastic": expected,
    }
    report = {}
    for rule in SELECTIONS:
        values = anticipate[rule]
        k = int(np.argmax(values))  # first maximiser: ties go to the lowest strategy
        report[rule] = {"strategy": k + 1, "anticipated": float(values[k]), "expected": expected[k]}
    return report


def _check(C: Any, epsilon: Any) -> tuple[float, float]:
    vals = []
    for name, v in (("C", C), ("epsilon", epsilon)):
        if isinstance(v, bool):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}") from None
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        vals.append(f)
    return vals[0], vals[1]
