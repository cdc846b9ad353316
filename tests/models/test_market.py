"""The electricity market with shared transmission constraints: its data, its equilibrium
against an independent QP, its input checks, and the methods against a certified optimum."""
import numpy as np
import pytest

import stackopt
from stackopt import Status
from stackopt.models import build_game
from stackopt.models.market import market_data, market_equilibrium


@pytest.mark.parametrize("nodes", [3, 5, 8])
def test_transfer_factors_route_each_injection_to_the_load_centre(nodes):
    """A MW injected at bus n and withdrawn at bus 0 leaves the ring through bus 0's two
    lines: flow on (N-1, 0) minus flow on (0, 1) is 1 (Kirchhoff's current law), and the
    flows around the ring satisfy Kirchhoff's voltage law (sum of x_l f_l is 0)."""
    d = market_data(seed=3, firms=2 * (nodes - 1), nodes=nodes)
    H = np.array(d["ptdf"])
    x = np.array(d["reactance"])
    for i in range(H.shape[1]):
        assert H[-1, i] - H[0, i] == pytest.approx(1.0, abs=1e-12)
        assert np.dot(x, H[:, i]) == pytest.approx(0.0, abs=1e-12)
    assert d["bus"].tolist() == [1 + i % (nodes - 1) for i in range(2 * (nodes - 1))]


def test_instances_are_a_function_of_seed_and_size():
    a, b = market_data(1, 6, 4), market_data(1, 6, 4)
    assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)
    assert not np.array_equal(a["c"], market_data(2, 6, 4)["c"])
    g0, g1 = build_game("market", seed=1, firms=6, nodes=4), build_game("market", seed=1, firms=6,
                                                                          nodes=4, budget=500.0)
    assert g0.data["limit"] == g1.data["limit"]  # the budget changes the leader's constraint only
    s = g0.structure()
    assert len(s.followers) == 6 and len(s.leader_variables) == 3
    assert [sc.name for sc in s.shared] == ["line0", "line1", "line2", "line3"]
    assert s.concept == "variational"
    assert not any(g0.method_options.values())  # nothing tuned per game


@pytest.mark.parametrize("seed,firms,nodes", [(1, 4, 3), (2, 6, 4), (3, 12, 6)])
def test_equilibrium_is_the_potentials_maximiser(seed, firms, nodes):
    """stackopt.equilibrium reproduces the normalized equilibrium found independently (the
    potential's maximiser: HiGHS's QP, then the KKT system on its active set) to 1e-6, lines
    binding, with the line multipliers; the firms' objectives are provably concave, so no
    deviation search runs."""
    g = build_game("market", seed=seed, firms=firms, nodes=nodes, congestion=0.8)
    d = market_data(seed, firms, nodes, congestion=0.8)
    rng = np.random.default_rng(seed)
    binding = 0
    for t in (np.zeros(nodes - 1), rng.uniform(-20.0, 20.0, nodes - 1)):
        e = stackopt.equilibrium(g, t)
        assert e.converged and not e.searched
        q, mult = market_equilibrium(d, t)
        got = np.array([e.follower_values[f"gen{i + 1}.q"] for i in range(firms)])
        np.testing.assert_allclose(got, q, atol=1e-6)
        for line, m in enumerate(mult):
            lower, upper = e.multipliers[f"line{line} (lower)"], e.multipliers[f"line{line} (upper)"]
            assert upper - lower == pytest.approx(m, abs=1e-6)
        binding += int(np.count_nonzero(np.abs(mult) > 1e-6))
    assert binding >= 1


@pytest.mark.parametrize("kw,match", [
    (dict(nodes=2), r"nodes must be an integer >= 3, got 2"),
    (dict(firms=0), r"firms must be an integer >= 1, got 0"),
    (dict(budget=-1.0), r"budget must be a finite number >= 0, got -1.0"),
    (dict(congestion=0.0), r"congestion must be a finite number > 0, got 0.0"),
])
def test_bad_parameters_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        build_game("market", seed=1, **kw)


def test_methods_reach_the_certified_optimum():
    """6 generators, 4 buses, budget 300: mpec-scip certifies the optimum (its bound); the
    gradient methods and the MPEC with Ipopt reach it from the leader's initial charges."""
    game = build_game("market", seed=1, firms=6, nodes=4, budget=300.0)
    scip = stackopt.solve(game, "mpec-scip", time_limit=120)
    assert scip.status is Status.OPTIMAL and scip.gap <= 1e-4
    best = scip.bound
    initial = stackopt.solve(game, "initial").leader_objective
    assert best > initial + 50.0  # the regulator gains
    for method, tol in (("gradient", 1e-3), ("implicit-ipopt", 1e-4), ("mpec-ipopt", 1e-4)):
        res = stackopt.solve(game, method, time_limit=120)
        assert res.status is Status.CONVERGED, (method, res.message)
        assert res.constraint_violation <= 1e-5  # within the equilibrium's precision on a budget of 300
        assert res.leader_objective == pytest.approx(best, rel=tol), method
        assert res.leader_objective <= best + 1e-6 * abs(best)


@pytest.mark.parametrize("optimizer", ["adam", "radam"])
def test_gradient_ends_where_its_augmented_lagrangian_cannot_move(optimizer):
    """Budget 1000: at the optimum a line and the budget bind (a kink of the reduced
    objective). The gradient method's projected-gradient rule holds the charges on the
    kink, where its stationarity measure is 0 while the tracked point is a hair infeasible;
    it ends (not_converged, not a loop until the time limit) with a feasible strategy
    within 1e-5 of the certified optimum (4695.2394). From RAdam's steps, inner solves that
    stop at once (solved, the penalty at its cap) alternated with failed searches and the
    run went on to 5000 outer iterations (max_iterations): the ones that do not move no
    longer end a run of failed searches."""
    game = build_game("market", seed=1, firms=6, nodes=4, budget=1000.0)
    res = stackopt.solve(game, "gradient", time_limit=600, optimizer=optimizer)
    assert res.status is Status.NOT_CONVERGED, res.message
    assert res.wall_time_s < 300
    assert res.constraint_violation == 0.0
    assert res.leader_objective == pytest.approx(4695.2394, rel=1e-5)
