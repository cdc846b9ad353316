"""The leader's starts spread over its box: one seeded Latin hypercube for every method."""
import numpy as np

from stackopt.leader import spread_starts
from stackopt.methods.mpec.solvers.nlp_steps import nlp_starts


def test_every_coordinate_takes_one_value_in_each_slice_of_its_range():
    lb, ub = np.array([0.0, -np.inf, 2.0]), np.array([10.0, np.inf, np.inf])
    p0 = np.array([1.0, 3.0, -4.0])
    starts = np.array(spread_starts(p0, lb, ub, 5, np.random.default_rng(0)))
    assert starts.shape == (5, 3)
    # a side without a finite bound: the start -/+ max(1, |start|)
    lo, hi = np.array([0.0, 0.0, 2.0]), np.array([10.0, 6.0, -4.0 + 4.0])
    slices = np.floor((starts - lo) / (hi - lo) * 5)
    for j in range(3):
        assert sorted(slices[:, j]) == [0, 1, 2, 3, 4], j
    again = np.array(spread_starts(p0, lb, ub, 5, np.random.default_rng(0)))
    np.testing.assert_array_equal(starts, again)
    assert spread_starts(p0, lb, ub, 0, np.random.default_rng(0)) == []


class _Problem:
    """An NLP's bounds as Ipopt has them (|bound| >= 1e19 is infinite)."""

    def __init__(self, xl, xu):
        self.xl, self.xu = np.asarray(xl, dtype=float), np.asarray(xu, dtype=float)

    def bounds(self):
        return self.xl, self.xu, None, None


def test_the_mpec_starts_are_the_leader_sets_at_the_leaders_positions():
    # NLP variables: follower, leader a, follower, leader b; one leader variable not in the NLP
    x_first = np.array([7.0, 1.0, 8.0, 3.0])
    problem = _Problem([-5, 0, -5, -1e20], [5, 10, 5, 1e20])
    starts = nlp_starts(x_first, problem, [1, None, 3], 4, np.random.default_rng(3))
    leader = spread_starts(np.array([1.0, 3.0]), np.array([0.0, -np.inf]), np.array([10.0, np.inf]), 4,
                           np.random.default_rng(3))
    assert len(starts) == 4
    for x, p in zip(starts, leader):
        np.testing.assert_array_equal(x[[1, 3]], p)
        np.testing.assert_array_equal(x[[0, 2]], [7.0, 8.0])  # the followers' values stay
