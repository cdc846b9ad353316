"""Distinct equilibria and their frequencies from seeded random starts."""
import pytest
from games import coordination

from stackopt import equilibria


def test_two_equilibria_with_frequencies():
    # damped best response moves away from the unstable interior equilibrium (0.5, 0.5)
    found = equilibria(coordination(), samples=30, seed=1, cold_start="relaxation")
    xs = sorted(round(c.follower_values["f0.x"], 6) for c in found)
    assert xs == [0.0, 1.0]
    assert sum(c.count for c in found) == 30
    assert abs(sum(c.frequency for c in found) - 1) < 1e-12
    assert all(0 < c.frequency < 1 for c in found)
    assert {round(c.leader_objective, 6) for c in found} == {0.0, 2.0}
    again = equilibria(coordination(), samples=30, seed=1, cold_start="relaxation")
    assert [c.count for c in again] == [c.count for c in found]


def test_bad_samples():
    with pytest.raises(ValueError, match="samples must be a positive integer, got 0"):
        equilibria(coordination(), samples=0)
