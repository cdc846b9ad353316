"""The augmented Lagrangian gradient method on problems with known answers."""
import numpy as np
import pytest

from stackopt import Status, solve
from stackopt.models import build_game
from conftest import make_duopoly


def test_duopoly_reaches_known_optimum():
    # max -(x1-3)^2-(x2-1)^2 s.t. x1+x2 <= 3, pi in [0,10]^2 with x = M^{-1} pi:
    # optimum x = (2.25, 0.75), pi = (4.875, 0), value -0.625 (both constraints active)
    r = solve(make_duopoly(), "gradient", steps=1000, lr=0.05)
    assert r.status is Status.CONVERGED
    assert r.leader_objective == pytest.approx(-0.625, abs=1e-3)
    assert r.constraint_violation <= 1e-3
    assert r.leader_values["pi[1]"] == pytest.approx(4.875, abs=5e-3)
    assert r.equilibrium_residual <= 1e-6


def test_nfg_budget_met_and_welfare_improves():
    g = build_game("nfg", seed=2, players=2, actions=4, budget=1.0)
    r = solve(g, "gradient", seed=2, steps=800)
    assert r.constraint_violation <= 1e-3
    assert r.leader_objective > r.initial_objective + 0.05
    assert len(r.history) == 801 and r.history[-1]["violation"] >= 0


def test_nfg_zero_budget_stays_at_initial_value():
    g = build_game("nfg", seed=2, players=2, actions=4, budget=0.0)
    r = solve(g, "gradient", seed=2, steps=400)
    assert r.constraint_violation <= 1e-4
    assert r.leader_objective == pytest.approx(r.initial_objective, abs=1e-3)


def test_same_seed_same_result():
    g = build_game("nfg", seed=4, players=2, actions=3, budget=0.5)
    a = solve(g, "gradient", seed=4, steps=100)
    b = solve(build_game("nfg", seed=4, players=2, actions=3, budget=0.5), "gradient", seed=4, steps=100)
    assert a.leader_values == b.leader_values and a.leader_objective == b.leader_objective


def test_sgd_and_sampled_equilibria_run():
    g = build_game("nfg", seed=4, players=2, actions=3, budget=0.5)
    r = solve(g, "gradient", steps=50, optimizer="sgd", samples_per_step=2, resample_every=10)
    assert r.status is Status.CONVERGED and np.isfinite(r.leader_objective)


def test_time_limit_is_a_status():
    g = build_game("nfg", seed=4, players=3, actions=4, budget=0.5)
    r = solve(g, "gradient", steps=10**6, time_limit=1.0)
    assert r.status is Status.TIME_LIMIT
    assert r.wall_time_s < 10 and np.isfinite(r.leader_objective)


def test_failure_inside_a_method_is_a_result(monkeypatch):
    import stackopt.gradient as gm

    def boom(*a, **k):
        raise FloatingPointError("synthetic failure")

    monkeypatch.setattr(gm, "leader_gradients", boom)
    r = solve(make_duopoly(), "gradient", steps=10)
    assert r.status is Status.ERROR and "synthetic failure" in r.message
    assert np.isfinite(r.leader_objective)  # the initial strategy is still scored


def test_constraint_aggregates_over_sampled_equilibria():
    from stackopt.gradient import _aggregate
    cons = np.array([[0.1, -2.0], [0.3, -1.0], [-0.1, -3.0]])  # 3 draws, 2 constraints
    mean, share = _aggregate(cons, "mean")
    assert np.allclose(mean, [0.1, -2.0]) and np.all(share == 1)
    worst, share = _aggregate(cons, "worst")
    assert np.allclose(worst, [0.3, -1.0])
    # the gradient loop averages over the draws: the worst draw carries each constraint alone
    assert share.tolist() == [[0, 0], [3, 3], [0, 0]]


class _Draw:
    def __init__(self, x, converged=True):
        self.x, self.converged = np.asarray(x, float), converged


class _StubOracle:
    """Fresh draws at a leader value p: x = p[0] (so the constraint x - 1 <= 0 holds
    only below 1); warm starts fail beyond a step of `reach` from where they were."""

    def __init__(self, reach=np.inf):
        self.reach, self.calls = reach, []

    def solve(self, p, *, warm=None, x0=None, rng=None, fallback=True):
        self.calls.append("warm" if isinstance(warm, _Draw) else "cold")
        if isinstance(warm, _Draw) and abs(p[0] - warm.x[0]) > self.reach:
            return _Draw(warm.x, converged=False)
        return _Draw([p[0]])


def test_choice_is_confirmed_on_fresh_draws():
    from types import SimpleNamespace
    from stackopt.gradient import GradientMethod
    k = SimpleNamespace(n_c=1, leader_all=lambda x, p: (float(p[0]), np.array([x[0] - 1.0])))
    config = SimpleNamespace(samples_per_step=3, constraints="worst", feasibility_tol=1e-6)
    # the best candidate looked feasible on its own draws but is not on fresh ones
    cands = [(-2.0, np.array([2.0]), 2.0, 0.0, None), (-0.5, np.array([0.5]), 0.5, 0.0, None)]
    best = ((0, -2.0), np.array([2.0]), 2.0, 0.0, None)
    (key, p, obj, viol, _), msg = GradientMethod._confirm(_StubOracle(), k, cands, best, None, config)
    assert p[0] == 0.5 and viol == 0.0 and "1 rejected" in msg
    # none confirmed: the original choice stays, and the message says so
    out, msg = GradientMethod._confirm(_StubOracle(), k, cands[:1], best, None, config)
    assert out is best and "not confirmed" in msg


def test_lost_branch_halves_then_re_adjusts():
    from stackopt.gradient import GradientMethod
    parts = [_Draw([0.0]), _Draw([0.0])]
    # a step of 1 cannot be followed warm even at a quarter: the branches re-adjust there
    oracle = _StubOracle(reach=0.1)
    p, new, halvings, jumps = GradientMethod._advance(oracle, np.array([0.0]), np.array([1.0]), parts, None)
    assert p[0] == 0.25 and halvings == 2 and jumps == 2 and all(e.converged for e in new)
    assert oracle.calls.count("cold") == 2
    # a step within reach is taken whole, warm
    oracle = _StubOracle(reach=2.0)
    p, new, halvings, jumps = GradientMethod._advance(oracle, np.array([0.0]), np.array([1.0]), parts, None)
    assert p[0] == 1.0 and halvings == 0 and jumps == 0 and oracle.calls == ["warm", "warm"]
