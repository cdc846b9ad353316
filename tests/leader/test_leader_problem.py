"""The leader's problem written once: one point cache and one nearest-point warm start for the
methods that track their branches and for the black-box methods."""
from dataclasses import replace

import numpy as np
import pytest
from games import DUOPOLY_M, make_duopoly

from stackopt import Status
from stackopt.kernel import kernel_of
from stackopt.leader import LeaderProblem, TimeUp
from stackopt.oracle import EquilibriumOracle, sensitivity


def _problem(cache=32, deadline=float("inf")):
    k = kernel_of(make_duopoly())
    return LeaderProblem(k, EquilibriumOracle(k, tol=1e-12), np.random.default_rng(0), cache=cache,
                         deadline=deadline)


def test_evaluate_caches_every_point_and_warm_starts_from_the_nearest():
    prob = _problem()
    a = prob.evaluate([1.0, 2.0])
    assert prob.evaluate(np.array([1.0, 2.0])) is a and prob.calls == 1
    np.testing.assert_allclose(a.x, np.linalg.solve(DUOPOLY_M, [1.0, 2.0]), atol=1e-10)
    assert a.bodies.shape == (1,) and a.bodies[0] == pytest.approx(a.x.sum() - 3.0)
    b = prob.evaluate([1.1, 2.0])
    assert prob.nearest(np.array([1.09, 2.0])) is b
    assert prob.nearest(np.array([0.9, 2.0])) is a
    assert a.linearizations is not None  # b was warm-started from a along its tangent
    assert prob.work.warm_solves == 1 and prob.failed == 0


def test_the_cache_keeps_its_size_and_warm_starts_only_from_points_found():
    prob = _problem(cache=2)
    a, b, c = (prob.evaluate([v, 1.0]) for v in (1.0, 2.0, 3.0))
    assert prob.cached(a.p) is None and prob.cached(b.p) is b and prob.cached(c.p) is c
    lost = replace(c, equilibria=[replace(c.equilibria[0], status=Status.NOT_CONVERGED)])
    prob.remember(lost)  # the same strategy: it takes c's place
    assert prob.nearest(np.array([3.0, 1.0])) is b
    prob.forget(keep=a)
    assert prob.cached(b.p) is None and prob.nearest(np.array([3.0, 1.0])) is a


def test_track_follows_the_branch_of_the_nearest_cached_point():
    prob = _problem()
    anchor = prob.draw(np.array([1.0, 2.0]))
    prob.forget(keep=anchor)
    pt = prob.track([1.2, 2.1], anchor)
    assert pt.converged and prob.cached(pt.p) is pt and not pt.fresh
    np.testing.assert_allclose(pt.x, np.linalg.solve(DUOPOLY_M, [1.2, 2.1]), atol=1e-10)
    # outside the leader's box: clipped onto it
    assert prob.track([-1.0, 2.0], anchor).p.tolist() == [0.0, 2.0]


def test_fd_derivatives_match_the_implicit_ones():
    prob = _problem()
    p = np.array([4.0, 1.0])
    g, J = prob.fd_derivatives(p, 1e-7, "central")
    gf, Jc = prob.jacobian(prob.evaluate(p))
    np.testing.assert_allclose(g, gf, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(J, Jc, rtol=1e-6, atol=1e-7)
    assert prob.fd_derivatives(p, 1e-7, "central") is not None and prob.calls == 5  # kept


def test_evaluate_past_the_deadline_raises():
    prob = _problem(deadline=0.0)
    with pytest.raises(TimeUp):
        prob.evaluate([1.0, 1.0])


def test_several_equilibria_are_linearized_as_each_alone_to_the_last_bit():
    """A point's equilibria on a game of compiled loops get their game Jacobians in one pass
    (stackopt.oracle.game_jacobians); their linearizations and the leader's gradient are
    those of one equilibrium at a time."""
    from stackopt.models import build_game
    from stackopt.oracle import game_jacobians

    k = kernel_of(build_game("ssg", seed=2, targets=60, defenders=5, coverable=30, resources=6.0))
    assert k.uses_loops
    prob = LeaderProblem(k, EquilibriumOracle(k), np.random.default_rng(3), samples=3)
    pt = prob.draw(k.p0)
    assert pt.converged and game_jacobians(pt.equilibria) is not None
    weights = np.ones(k.n_c)
    together = prob.gradient(pt, weights)
    alone = [sensitivity(k, e) for e in pt.equilibria]
    for a, b in zip(prob.linearize(pt), alone):
        assert np.array_equal(a.J, b.J) and np.array_equal(a.jp, b.jp)
    pt.linearizations = alone
    assert np.array_equal(prob.gradient(pt, weights), together)
