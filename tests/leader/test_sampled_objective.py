"""The leader's objective over sampled equilibria: the sample average over fixed draws (those of
scoring, the same at every strategy) or the worst sampled equilibrium, for both methods of the
leader's problem written once (``gradient``, ``implicit-ipopt``)."""
import numpy as np
import pytest
from games import two_equilibria

import stackopt
from stackopt.kernel import kernel_of
from stackopt.leader import LeaderProblem, fixed_seed
from stackopt.oracle import EquilibriumOracle

SEED = 1  # scoring's first four draws at this seed reach B, the unstable one, A and A


def _problem(fixed=SEED, objective="mean", samples=4):
    k = kernel_of(two_equilibria(samples))
    return LeaderProblem(k, EquilibriumOracle(k, tol=1e-10), np.random.default_rng(SEED),
                         samples=samples, objective=objective, fixed_seed=fixed)


def _scoring_draws(seed=SEED, samples=4):
    """x_0 at scoring's first ``samples`` draws (the followers' equilibria do not depend on p)."""
    ev = stackopt.evaluate(two_equilibria(samples), [0.0], seed=seed, samples=samples)
    return np.array([e.x[0] for e in ev.equilibria])


def test_fixed_draws_are_scorings_and_the_same_at_every_strategy():
    x0 = _scoring_draws()
    assert len(set(np.round(x0, 6))) >= 2  # the draws reach different equilibria
    prob = _problem()
    a, b, again = prob.draw([0.2]), prob.draw([0.9]), prob.draw([0.2])
    for pt in (a, b, again):
        assert pt.fresh and pt.converged
        np.testing.assert_allclose([e.x[0] for e in pt.equilibria], x0, atol=1e-8)
    # a deterministic function of the leader's variables: the same value to the last digit
    assert again.f == a.f and again.objective == a.objective
    assert a.objective == pytest.approx(np.mean((0.2 - x0) ** 2 + 2 * x0), abs=1e-8)
    # without fixed draws every evaluation on fresh draws is a new sample
    fresh = _problem(fixed=None)
    seen = {tuple(np.round([e.x[0] for e in fresh.draw([0.2]).equilibria], 6)) for _ in range(4)}
    assert len(seen) > 1


def test_worst_objective_and_its_gradient():
    x0 = _scoring_draws()
    assert np.max(x0) == pytest.approx(1.0, abs=1e-8)  # a draw reached B: it is the worst
    mean, worst = _problem(), _problem(objective="worst")
    p = 0.3
    pm, pw = mean.draw([p]), worst.draw([p])
    assert pw.objective == pytest.approx((p - 1) ** 2 + 2, abs=1e-8)
    assert pm.objective == pytest.approx(np.mean((p - x0) ** 2 + 2 * x0), abs=1e-8)
    # d/dp: 2 (p - 1) at B alone; 2 (p - mean x_0) for the mean (the equilibria do not move)
    assert worst.jacobian(pw)[0][0] == pytest.approx(2 * (p - 1), abs=1e-6)
    assert mean.jacobian(pm)[0][0] == pytest.approx(2 * (p - np.mean(x0)), abs=1e-6)
    assert worst.gradient(pw, np.zeros(0))[0] == pytest.approx(2 * (p - 1), abs=1e-6)


@pytest.mark.parametrize("method", ["gradient", "implicit-ipopt"])
def test_mean_and_worst_give_their_own_answers(method):
    """Over the fixed draws (scoring's first four at the seed) the mean objective is least at
    ``p = mean x_0`` and the worst (B's) at ``p = 1``: two different answers, both right."""
    game = two_equilibria()
    x0 = _scoring_draws()
    w = float(np.mean(x0))
    assert 0.2 < w < 0.8
    r_mean = stackopt.solve(game, method, seed=SEED, samples_per_step=4, draws="fixed")
    r_worst = stackopt.solve(game, method, seed=SEED, samples_per_step=4, draws="fixed",
                             objective="worst")
    assert r_mean.leader_values["p"] == pytest.approx(w, abs=1e-4)
    assert r_mean.claimed_objective == pytest.approx(np.mean((w - x0) ** 2 + 2 * x0), abs=1e-7)
    assert r_worst.leader_values["p"] == pytest.approx(1.0, abs=1e-4)
    assert r_worst.claimed_objective == pytest.approx(2.0, abs=1e-7)
    # same seed, same result
    again = stackopt.solve(game, method, seed=SEED, samples_per_step=4, draws="fixed")
    assert again.leader_values == r_mean.leader_values
    assert again.leader_objective == r_mean.leader_objective


def test_draws_default_and_bad_values():
    from stackopt.methods import method_config

    assert fixed_seed("fixed", 7) == 7 and fixed_seed("fresh", 7) is None
    for method in ("gradient", "implicit-ipopt"):
        config = method_config(method, {})
        assert config.draws == "fresh" and config.objective == "mean"
    with pytest.raises(ValueError, match="draws must be one of .* got 'some'"):
        fixed_seed("some", 7)
    with pytest.raises(ValueError, match="objective .* 'mean' or 'worst', got 'best'"):
        _problem(objective="best")
    game = two_equilibria()
    for method in ("gradient", "implicit-ipopt"):
        with pytest.raises(ValueError, match="option 'objective' of method .* got 'best'"):
            stackopt.solve(game, method, seed=0, objective="best")
        with pytest.raises(ValueError, match="option 'draws' of method"):
            stackopt.solve(game, method, seed=0, draws="sometimes")
