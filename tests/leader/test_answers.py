"""The answer of a sampled run holds its constraints in expectation over as many equilibria as
scoring's first stage draws: a class of equilibria that a few confirmation draws miss and that
overspends the budget makes the candidate fail, and the next one (or the start) is returned."""
from types import SimpleNamespace

import numpy as np

from stackopt.leader import Answers, Scales
from stackopt.leader.answers import CONFIRM_EQUILIBRIA
from stackopt.leader.problem import SEEN_EQUILIBRIA
from stackopt.scoring import MIN_DRAWS

GOOD, BAD = np.array([0.0]), np.array([1.0])  # the followers' values at the two equilibria


class TwoClasses:
    """A stub of the leader's problem with one follower variable and one constraint. At a
    strategy ``p > 0`` the followers reach equilibrium GOOD (objective ``-1 - p``, constraint
    -0.1) except at every ``every``-th fresh draw there after the first ``CONFIRM_EQUILIBRIA``,
    where they reach BAD (the same objective, constraint +1: over budget); ``every = 0``:
    never. At the start ``p = 0`` they reach GOOD with objective 0 and constraint -1."""

    def __init__(self, every: int, convex: bool = False):
        self.every, self.samples, self.fixed_seed, self.sense = every, 1, None, 1.0
        self.k = SimpleNamespace(convex_followers=lambda: [convex])
        self.draws_at: dict[float, int] = {}

    def point(self, p, f, c, x):
        eq = SimpleNamespace(x=x)
        return SimpleNamespace(p=np.array([p]), f=f, cons=np.array([c]), equilibria=[eq],
                               converged=True, fresh=True)

    def draw(self, p):
        p = float(np.asarray(p)[0])
        n = self.draws_at[p] = self.draws_at.get(p, 0) + 1
        if p == 0.0:
            return self.point(0.0, 0.0, -1.0, GOOD)
        late = n > CONFIRM_EQUILIBRIA and self.every and n % self.every == 0
        return self.point(p, -1.0 - p, 1.0 if late else -0.1, BAD if late else GOOD)


def chosen(prob, strategies=(1.0,)):
    answers = Answers(prob, np.inf, Scales(1.0, np.ones(1)), feasibility_tol=1e-9)
    answers.checkpoint(prob.draw([0.0]), first=True)
    for p in strategies:
        answers.checkpoint(prob.draw([p]))
    best, note = answers.select(None)
    return float(best.p[0]), note


def test_the_check_draws_as_many_equilibria_as_scoring_s_first_stage():
    assert SEEN_EQUILIBRIA == MIN_DRAWS == 29


def test_a_candidate_whose_equilibria_all_hold_is_returned_after_the_wider_check():
    prob = TwoClasses(every=0)
    p, note = chosen(prob)
    assert p == 1.0 and f"held on {SEEN_EQUILIBRIA} equilibria" in note
    assert prob.draws_at[1.0] == SEEN_EQUILIBRIA  # its own draw, the confirmation's, the rest


def test_a_rare_overspending_class_fails_the_candidate_and_the_next_is_returned():
    # one draw in four from the sixth on overspends: the mean constraint over 29 is
    # (6 * 1 - 23 * 0.1) / 29 > 0; the first six draws alone all meet the budget
    prob = TwoClasses(every=4)
    p, note = chosen(prob)
    assert p == 0.0 and "held on 29 equilibria (1 with a better mean did not)" in note


def test_where_no_better_candidate_holds_the_start_is_checked_and_returned():
    prob = TwoClasses(every=4)
    p, note = chosen(prob, strategies=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0))  # the start ranks 7th
    assert p == 0.0 and "the start" in note and "5 tried" in note
    assert all(prob.draws_at[q] == SEEN_EQUILIBRIA for q in (2.0, 3.0, 4.0, 5.0, 6.0))


def test_provably_convex_followers_at_one_equilibrium_are_not_drawn_again():
    prob = TwoClasses(every=0, convex=True)
    p, note = chosen(prob)
    # its own draw and one further draw, which reached its equilibrium again: no more
    assert p == 1.0 and prob.draws_at[1.0] == 2
