"""The Theorem-1 example: equilibria enumerated by code, and the three selection rules."""
import itertools
import math

import numpy as np
import pytest

from stackopt.models.theorem1 import (
    FOLLOWER_PAYOFFS,
    leader_payoffs,
    pure_nash_equilibria,
    strategy_outcomes,
    theorem1_report,
)


def test_each_strategy_has_three_pure_equilibria_on_its_permutation():
    for P in FOLLOWER_PAYOFFS:
        eqs = pure_nash_equilibria(P, P)
        assert len(eqs) == 3
        assert sorted(eqs) == sorted(zip(*np.nonzero(P)))


def test_enumeration_on_known_games():
    # prisoner's dilemma: only (defect, defect)
    A = np.array([[3.0, 0.0], [5.0, 1.0]])
    assert pure_nash_equilibria(A, A.T) == [(1, 1)]
    # matching pennies: none
    M = np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert pure_nash_equilibria(M, -M) == []
    # ties count as best responses
    Z = np.zeros((2, 3))
    assert len(pure_nash_equilibria(Z, Z)) == 6


def test_report_matches_the_paper():
    C, eps = 100.0, 1.0
    rep = theorem1_report(C, eps)
    assert set(rep) == {"optimistic", "pessimistic", "stochastic"}
    assert rep["optimistic"] == {"strategy": 1, "anticipated": C, "expected": pytest.approx(0.0)}
    assert rep["pessimistic"] == {"strategy": 2, "anticipated": 0.0, "expected": 0.0}
    assert rep["stochastic"]["strategy"] == 3
    assert rep["stochastic"]["expected"] == pytest.approx(2 * C / 3 - eps)
    assert rep["stochastic"]["anticipated"] == rep["stochastic"]["expected"]
    for r in rep.values():
        assert isinstance(r["strategy"], int)
        assert isinstance(r["anticipated"], float) and isinstance(r["expected"], float)


def test_leader_values_at_the_enumerated_equilibria():
    out = strategy_outcomes(10.0, 2.0)
    assert [sorted(o["leader_values"]) for o in out] == [[-10.0, 0.0, 10.0], [0.0, 0.0, 0.0],
                                                          [-2.0, 8.0, 8.0]]


GRID = [0.01, 0.1, 0.5, 1.0, 1.5, 1.6, 2.0, 3.0, 10.0, 100.0, 1e4]


@pytest.mark.parametrize("C,eps", list(itertools.product(GRID, GRID)))
def test_stochastic_aware_strictly_better_iff_C_above_1_5_epsilon(C, eps):
    rep = theorem1_report(C, eps)
    stoch = rep["stochastic"]["expected"]
    others = max(rep["optimistic"]["expected"], rep["pessimistic"]["expected"])
    # the stochastic-aware leader maximises the true expectation: never worse
    assert stoch >= others - 1e-12
    assert stoch == pytest.approx(max(2 * C / 3 - eps, 0.0), abs=1e-9 * max(C, eps))
    if C > 1.5 * eps:
        assert stoch > rep["optimistic"]["expected"] + 1e-12 * C
        assert stoch > rep["pessimistic"]["expected"] + 1e-12 * C
        assert rep["stochastic"]["strategy"] == 3
    else:
        assert not stoch > others + 1e-9 * max(C, eps)
    assert rep["optimistic"]["strategy"] == 1 and rep["optimistic"]["anticipated"] == C
    assert rep["pessimistic"]["strategy"] == 2


@pytest.mark.parametrize("kw,match", [
    ({"C": -1.0}, r"C must be a finite number > 0, got -1.0"),
    ({"C": 0.0}, r"C must be a finite number > 0, got 0.0"),
    ({"C": float("nan")}, r"C must be a finite number > 0, got nan"),
    ({"epsilon": float("inf")}, r"epsilon must be a finite number > 0, got inf"),
    ({"epsilon": -2}, r"epsilon must be a finite number > 0, got -2"),
    ({"epsilon": "x"}, r"epsilon must be a finite number > 0, got 'x'"),
    ({"C": True}, r"C must be a finite number > 0, got True"),
])
def test_bad_constants(kw, match):
    with pytest.raises(ValueError, match=match):
        theorem1_report(**kw)
    with pytest.raises(ValueError, match=match):
        leader_payoffs(**kw)


def test_bad_payoff_matrices():
    with pytest.raises(ValueError, match=r"equal shape, got \(2, 2\) and \(2, 3\)"):
        pure_nash_equilibria(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="must be finite"):
        pure_nash_equilibria(np.array([[math.nan]]), np.zeros((1, 1)))
