"""The followers' linear sets: which followers have no feasible point at a leader strategy."""
import numpy as np
import pyomo.environ as pyo
import pytest

from stackopt import StackelbergGame, Status
from stackopt.kernel import kernel_of
from stackopt.oracle import EquilibriumOracle
from stackopt.oracle.sets import _row_meets_box

INF = np.inf


@pytest.mark.parametrize("a, lo, hi, lb, ub, meets", [
    ([1.0, 1.0, 1.0], 1.0, 1.0, [0, 0, 0], [1, 1, 1], True),          # a simplex
    ([1.0, 1.0, 1.0], 1.0, 1.0, [0, 0, 0], [0.2, 0.2, 0.2], False),  # at most 0.6
    ([1.0, 1.0, 1.0], 0.7, 1.0, [0.3, 0.3, 0.3], [1, 1, 1], True),   # from 0.9 to 3
    ([1.0, 1.0, 1.0], 0.5, 0.8, [0.3, 0.3, 0.3], [1, 1, 1], False),  # at least 0.9
    ([1.0, -1.0], -5.0, -5.0, [0, 0], [INF, INF], True),             # x2 = x1 + 5
    ([1.0, 1.0], -INF, -1.0, [0, 0], [INF, INF], False),             # a sum of non-negatives
    ([0.0, 2.0], 1.0, INF, [-INF, 0], [INF, 1], True),               # x1 not in the row
    ([np.nan, 1.0], 0.0, 1.0, [0, 0], [1, 1], False),                # not a clear yes
])
def test_one_row_meets_its_box(a, lo, hi, lb, ub, meets):
    args = [np.array(v, dtype=float) for v in (a, lb, ub)]
    assert _row_meets_box(args[0], lo, hi, args[1], args[2]) is meets


def _game(cap: float) -> StackelbergGame:
    game = StackelbergGame("one-row")
    m = game.model
    m.p = pyo.Var(bounds=(0.0, 1.0), initialize=0.5)
    f = game.add_follower("f")
    f.x = pyo.Var(range(2), bounds=(0.0, cap), initialize=0.0)
    f.total = pyo.Constraint(expr=f.x[0] + f.x[1] == 1.5)
    f.obj = pyo.Objective(expr=(f.x[0] - m.p) ** 2 + f.x[1] ** 2)
    game.set_leader(variables=[m.p], objective=m.p, sense=pyo.minimize)
    return game


def test_a_follower_whose_one_row_its_box_cannot_meet_is_infeasible():
    eq = EquilibriumOracle(kernel_of(_game(cap=0.5))).solve(np.array([0.5]), rng=0)
    assert eq.status is Status.INFEASIBLE and "has no feasible point" in eq.message


def test_a_follower_whose_one_row_its_box_meets_is_solved():
    eq = EquilibriumOracle(kernel_of(_game(cap=1.0))).solve(np.array([0.5]), rng=0)
    assert eq.converged and abs(eq.x.sum() - 1.5) < 1e-9


def test_the_projection_on_tiled_blocks_is_the_general_ones_to_the_last_bit():
    """Every follower of a security game has one row and its blocks are x in order: the
    projection runs on reshaped views and gives what the gathers give, multipliers included."""
    from stackopt.kernel import kernel_of
    from stackopt.models import build_game
    from stackopt.oracle.sets import FollowerSets

    for kw in (dict(targets=60, coverable=30, resources=6.0), dict(targets=12, coverable=6, resources=2.0)):
        k = kernel_of(build_game("ssg", seed=3, defenders=5, **kw))
        sets = FollowerSets(k)
        assert sets._tiled
        rng = np.random.default_rng(1)
        for scale in (0.1, 1.0, 10.0):
            u = scale * rng.normal(size=k.n_x)
            fast = sets.project(u, k.p0)
            sets._tiled = False
            slow = sets.project(u, k.p0)
            sets._tiled = True
            for a, b in ((fast.x, slow.x), (fast.nu, slow.nu), (fast.lam, slow.lam), (fast.w, slow.w)):
                assert np.array_equal(a, b)
            assert fast.ok and slow.ok
