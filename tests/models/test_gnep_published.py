"""Generalized Nash games with published or closed-form equilibria, reproduced to 1e-6 by
stackopt.equilibrium; the expected values are checked independently of stackopt here too."""
import json

import numpy as np
import pytest
from scipy.optimize import minimize

import stackopt
from stackopt.cli import main
from stackopt.models import build_game
from stackopt.models.gnep import (
    KNOWN_EQUILIBRIA,
    disk_budget_equilibrium,
    harker_equilibrium,
    price_budget_equilibrium,
    river_basin_data,
    river_basin_equilibria,
)
from stackopt.oracle import sensitivity


@pytest.mark.parametrize("name", sorted(KNOWN_EQUILIBRIA))
@pytest.mark.parametrize("seed", [0, 1])
def test_published_equilibrium_is_reproduced(name, seed):
    r = stackopt.equilibrium(build_game("gnep", problem=name), seed=seed)
    assert r.converged and r.residual <= 1e-6
    for key, value in KNOWN_EQUILIBRIA[name].values.items():
        assert r.follower_values[key] == pytest.approx(value, abs=1e-6), key


def _best_response(cost, j, x, bounds, constraints):
    """Player j's best response at x by SciPy's SLSQP (independent of stackopt)."""
    def f(v):
        y = x.copy()
        y[j] = v[0]
        return cost(j, y)
    cons = [{"type": "ineq", "fun": (lambda v, c=c: c(np.concatenate([x[:j], v, x[j + 1:]])))}
            for c in constraints]
    res = minimize(f, x[j:j + 1], bounds=[bounds], constraints=cons, method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 500})
    return res.x[0]


def test_harker_variational_equilibrium_is_every_players_best_response():
    """Independently: at (5, 9) each player's best response (the other held, the shared cap
    x1 + x2 <= 15 in its set) is its own value; the published figure is (5, 9)."""
    x = np.array([5.0, 9.0])

    def cost(j, y):
        return y[0] ** 2 + 8 / 3 * y[0] * y[1] - 34 * y[0] if j == 0 else y[1] ** 2 + 1.25 * y[0] * y[1] - 24.25 * y[1]
    for j in (0, 1):
        assert _best_response(cost, j, x, (0, 10), [lambda y: 15 - y[0] - y[1]]) == pytest.approx(x[j], abs=1e-6)
    assert harker_equilibrium(0.0) == (5.0, 9.0, 0.0)


def test_river_basin_equilibrium_is_every_firms_best_response():
    """Independently: the enumerated equilibrium is each firm's best response (SLSQP, the
    others held, both stations' standards in its set); it agrees with the published
    (21.1448, 16.0279, 2.7258) to 1e-4 in the first two firms' outputs and differs by
    1.6e-4 in the third (exact: 2.725963)."""
    (x, lam, _), = river_basin_equilibria()
    M, q, A, K = river_basin_data()
    from stackopt.models.gnep import _RIVER
    c1, c2, d1, d2 = np.array(_RIVER["c1"]), np.array(_RIVER["c2"]), _RIVER["d1"], _RIVER["d2"]

    def cost(j, y):
        return (c1[j] + c2[j] * y[j]) * y[j] - (d1 - d2 * y.sum()) * y[j]
    cons = [lambda y, r=r: K[r] - A[r] @ y for r in range(2)]
    for j in range(3):
        assert _best_response(cost, j, x, (0, 100), cons) == pytest.approx(x[j], abs=1e-5)
    np.testing.assert_allclose(x[:2], [21.1448, 16.0279], atol=1e-4)
    assert abs(x[2] - 2.7258) == pytest.approx(1.6e-4, abs=1e-5)
    assert lam[0] > 0 and lam[1] == 0.0 and A[0] @ x == pytest.approx(100.0)
    # Rosen's multiplier: the same for every firm (variational)
    r = stackopt.equilibrium(build_game("gnep", problem="river_basin"))
    assert r.multipliers["station1"] == pytest.approx(lam[0], abs=1e-8) and r.multipliers["station2"] == 0.0


@pytest.mark.parametrize("p", [0.7, 1.0, 1.4])
def test_closed_form_equilibria_at_other_leader_values(p):
    r = stackopt.equilibrium(build_game("gnep", problem="disk_budget"), leader_values={"p": p})
    ref = disk_budget_equilibrium(p)
    assert r.converged
    for key in ("player1.u[1]", "player1.u[2]", "player2.u[1]", "player2.u[2]"):
        assert r.follower_values[key] == pytest.approx(ref[key], abs=1e-6)
    assert r.multipliers["player1.disk"] == pytest.approx(ref["multiplier"], abs=1e-5)
    r = stackopt.equilibrium(build_game("gnep", problem="price_budget"), leader_values=np.array([p]))
    for key, value in price_budget_equilibrium(p).items():
        assert r.follower_values[key] == pytest.approx(value, abs=1e-6)


def test_harker_generalized_equilibria_form_a_segment_with_a_singular_kkt_matrix():
    """With one multiplier per player (shared='any') the equilibria are (5, 9) and every
    (t, 15 - t), t in [9, 10]; inside the segment the KKT matrix is singular, and the
    result says so."""
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle
    g = build_game("gnep", problem="harker", shared="any")
    o = EquilibriumOracle(kernel_of(g))
    seen_segment = False
    for start in ([9.5, 5.5], [9.3, 5.6], [10, 5], [0, 0], [3, 3]):
        e = o.solve(np.array([0.0]), x0=np.array(start, dtype=float))
        assert e.converged
        x1, x2 = e.x
        if abs(x1 - 5) < 1e-6:
            assert x2 == pytest.approx(9.0, abs=1e-6)
        else:
            assert x1 + x2 == pytest.approx(15.0, abs=1e-6) and 9 - 1e-6 <= x1 <= 10 + 1e-6
            if 9 + 1e-6 < x1 < 10 - 1e-6:
                seen_segment = True
                assert sensitivity(o.kernel, e).singular
    assert seen_segment
    r = stackopt.equilibrium(g, seed=0)
    assert r.converged and r.concept == "any"
    assert set(r.multipliers["capacity"]) == {"player1", "player2"}


def test_command_line_equilibrium(capsys):
    assert main(["equilibrium", "gnep", "--problem", "river_basin", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "converged" and out["concept"] == "variational"
    assert out["follower_values"]["firm3.x"] == pytest.approx(2.725963, abs=1e-6)
    assert main(["equilibrium", "gnep", "--problem", "harker", "--leader", '{"tau": 1.04}']) == 0
    text = capsys.readouterr().out
    assert "player1.x = 9.48" in text and "capacity: 0.32" in text  # the cap binds: s = 8 tau - 8
    assert main(["equilibrium", "gnep", "--problem", "harker", "--leader", '{"t": 1}']) == 2
    assert "argument --leader: leader_values names 't'; the leader's variables are ['tau']" in capsys.readouterr().err


def test_check_gradient_with_an_active_disk_and_an_active_shared_cap(capsys):
    """disk_cap: the disk (nonlinear in a's variables) and the shared cap bind at the check's
    seeded random leader strategy; the implicit gradient matches finite differences."""
    assert main(["check-gradient", "gnep", "--problem", "disk_cap", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["max_relative_error"] <= 1e-6
    g = build_game("gnep", problem="disk_cap")
    r = stackopt.equilibrium(g, leader_values={"p": 0.95})
    assert r.multipliers["a.disk"] > 1.0 and r.multipliers["cap"] > 1.0  # both bind


def test_mpec_pipeline_writes_shared_constraints():
    """The shared capacity once, one multiplier (variational): harker_tax's optimum."""
    res = stackopt.solve(build_game("library", problem="harker_tax"), "mpec-ipopt")
    assert res.status is stackopt.Status.CONVERGED
    assert res.leader_objective == pytest.approx(156.25 - 150 ** 2 / 144.01, rel=1e-8)
