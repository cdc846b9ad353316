"""Distinct equilibria and their frequencies from seeded random starts."""
import pyomo.environ as pyo
import pytest

from stackopt import StackelbergGame, equilibria


def coordination_game():
    """Two followers choose x_i in [0, 1] and like to match: f_i = -(x_i - 0.5)^2 ... with a double well.

    Each follower maximises 2 x_i x_j - x_i^2 + eps*(x_i) on [0,1]: best response x_i = x_j (+eps/2),
    so the equilibria are the matched points; with bounds, x = 0 and x = 1 attract.
    """
    g = StackelbergGame("coord", samples=5)
    m = g.model
    m.pi = pyo.Var(bounds=(-1, 1), initialize=0.0)
    f = [g.add_follower(f"f{i}") for i in range(2)]
    for b in f:
        b.x = pyo.Var(bounds=(0, 1), initialize=0.5)
    for i, b in enumerate(f):
        other = f[1 - i].x
        # concave in own x: the unique best response to x_j is clip(x_j + (x_j - 0.5) + pi)
        b.u = pyo.Objective(expr=-(b.x - other - (other - 0.5) - m.pi) ** 2, sense=pyo.maximize)
    g.set_leader([m.pi], f[0].x + f[1].x)
    return g


def test_two_equilibria_with_frequencies():
    # damped best response moves away from the unstable interior equilibrium (0.5, 0.5)
    found = equilibria(coordination_game(), samples=30, seed=1, cold_start="relaxation")
    xs = sorted(round(c.follower_values["f0.x"], 6) for c in found)
    assert xs == [0.0, 1.0]
    assert sum(c.count for c in found) == 30
    assert abs(sum(c.frequency for c in found) - 1) < 1e-12
    assert all(0 < c.frequency < 1 for c in found)
    assert {round(c.leader_objective, 6) for c in found} == {0.0, 2.0}
    again = equilibria(coordination_game(), samples=30, seed=1, cold_start="relaxation")
    assert [c.count for c in again] == [c.count for c in found]


def test_bad_samples():
    with pytest.raises(ValueError, match="samples must be a positive integer, got 0"):
        equilibria(coordination_game(), samples=0)
