"""Cyber insurance: structure, formulas against NumPy, the interconnection graph, bad input."""
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pyomo.environ as pyo
import pytest

from stackopt.models import available_games, build_game, game_spec
from stackopt.models.cyber import (
    cyber,
    default_interconnection,
    interconnection_matrix,
    ir_gaps,
    ir_violation,
)


def reference(data, x, comp, prem):
    """Cyber insurance of docs/games.md in NumPy: utilities with/without insurance, revenue."""
    W, L, c, r = data["interconnection"], data["losses"], data["costs"], data["risk_aversion"]
    q = 1.0 / (1.0 + np.exp(-(-(W @ x) + 0.01 * L)))
    s = np.sqrt(q * (1 - q))
    with_ins = -(L - comp) * q - c * x - prem - r * np.abs(L - comp) * s
    without = -L * q - c * x - r * L * s
    revenue = np.sum(prem - comp * q)
    return with_ins, without, revenue, q


def set_values(game, x, comp, prem):
    m = game.model
    for i in range(len(x)):
        game.follower(f"customer{i}").x.set_value(x[i])
        m.compensation[i].set_value(comp[i])
        m.premium[i].set_value(prem[i])


def test_registered_with_its_parameters():
    assert "cyber" in available_games()
    spec = game_spec("cyber")
    for p in ("customers", "risk_aversion", "max_effort", "interconnection", "losses", "costs"):
        assert p in spec.params
    assert spec.params["customers"].default == 10 and spec.params["risk_aversion"].default == 0.0


def test_structure():
    game = build_game("cyber", seed=1, risk_aversion=0.5)
    s = game.structure()
    assert [f.name for f in s.followers] == [f"customer{i}" for i in range(10)]
    assert all(len(f.variables) == 1 and not f.constraints for f in s.followers)
    assert all(f.variables[0].lb == 0.0 and f.variables[0].ub == 20.0 for f in s.followers)
    assert len(s.leader_variables) == 20
    assert all(v.lb is None and v.ub is None for v in s.leader_variables)  # unconstrained
    assert len(s.leader_constraints) == 10
    assert s.leader_sense == pyo.maximize
    for name in ("logit", "odds", "breach", "spread", "utility", "utility_uninsured"):
        assert isinstance(game.model.component(name), pyo.Expression)


def test_reference_data_distributions():
    d = cyber(seed=3, customers=30).data
    W = d["interconnection"]
    off = W[~np.eye(30, dtype=bool)]
    assert off.min() >= 0 and off.max() < 1
    assert np.all((np.diag(W) >= 1) & (np.diag(W) < 2))
    assert np.all((d["losses"] >= 50) & (d["losses"] < 100))
    assert np.all((d["costs"] >= 5) & (d["costs"] < 10))


@pytest.mark.parametrize("r", [0.0, 0.3])
def test_objectives_and_ir_match_the_definition(r):
    game = cyber(seed=5, customers=6, risk_aversion=r)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 3, 6)
    comp = rng.uniform(0, 150, 6)  # both signs of L - I
    prem = rng.uniform(0, 30, 6)
    set_values(game, x, comp, prem)
    with_ins, without, revenue, q = reference(game.data, x, comp, prem)
    s = game.structure()
    assert pyo.value(s.leader_objective) == pytest.approx(revenue, rel=1e-12)
    for i, f in enumerate(s.followers):
        assert f.sense == pyo.maximize
        assert pyo.value(f.objective) == pytest.approx(with_ins[i], rel=1e-12)
        assert pyo.value(game.model.breach[i]) == pytest.approx(q[i], rel=1e-12)
    bodies = np.array([pyo.value(c.body) for c in s.leader_constraints])
    assert bodies == pytest.approx(without - with_ins, abs=1e-10)
    # docs/games.md: IR at a common x reduces to rho <= I q + r (L - |L - I|) sqrt(q (1 - q))
    L = game.data["losses"]
    reduced = prem - comp * q - r * (L - np.abs(L - comp)) * np.sqrt(q * (1 - q))
    assert bodies == pytest.approx(reduced, abs=1e-10)


def test_ir_violation_sums_positive_parts():
    game = cyber(seed=2, customers=4, risk_aversion=0.2)
    m = game.model
    x = np.array([0.5, 1.0, 0.0, 2.0])
    comp = np.array([10.0, 0.0, 80.0, 50.0])
    prem = np.array([15.0, -1.0, 0.0, 30.0])
    result = SimpleNamespace(
        leader_values={**{m.compensation[i].name: comp[i] for i in range(4)},
                       **{m.premium[i].name: prem[i] for i in range(4)}},
        follower_values={game.follower(f"customer{i}").x.name: x[i] for i in range(4)},
    )
    with_ins, without, _, _ = reference(game.data, x, comp, prem)
    gaps = without - with_ins
    assert (gaps > 0).sum() >= 2 and (gaps < 0).any()
    assert ir_gaps(game, result.leader_values, result.follower_values) == pytest.approx(gaps)
    assert ir_violation(game, result) == pytest.approx(np.maximum(gaps, 0).sum())
    assert ir_violation(game, result) > np.maximum(gaps, 0).max()  # a sum, not the max
    del result.follower_values["customer3.x"]
    with pytest.raises(ValueError, match=r"values for variable 'customer3.x' are missing"):
        ir_violation(game, result)


def test_ir_violation_rejects_other_games():
    from stackopt.models.ssg import ssg
    g = ssg(seed=0, targets=4, defenders=1, coverable=2, resources=1.0)
    with pytest.raises(ValueError, match="ir_violation needs a game built by the 'cyber' model"):
        ir_violation(g, SimpleNamespace(leader_values={}, follower_values={}))


def test_stable_at_large_effort():
    game = cyber(seed=0, customers=5, risk_aversion=0.5, max_effort=1000.0)
    set_values(game, np.full(5, 1000.0), np.zeros(5), np.zeros(5))
    m = game.model
    for i in range(5):
        assert pyo.value(m.breach[i]) == 0.0 and pyo.value(m.spread[i]) == 0.0
        assert np.isfinite(pyo.value(m.utility[i]))


def test_same_seed_same_data_different_seed_differs():
    a, b, c = cyber(seed=8), cyber(seed=8), cyber(seed=9)
    for key in ("interconnection", "losses", "costs"):
        assert np.array_equal(a.data[key], b.data[key])
        assert not np.array_equal(a.data[key], c.data[key])


def test_default_graph_round_trips():
    d = cyber(seed=4, customers=5).data
    G = default_interconnection(d["interconnection"])
    assert isinstance(G, nx.DiGraph) and G.number_of_edges() == 25 and nx.number_of_selfloops(G) == 5
    assert np.array_equal(interconnection_matrix(G, 5), d["interconnection"])
    g = cyber(seed=4, customers=5, interconnection=G)
    assert np.array_equal(g.data["interconnection"], d["interconnection"])
    assert np.array_equal(g.data["losses"], d["losses"])


def test_user_graphs():
    G = nx.path_graph(4)
    nx.set_edge_attributes(G, 0.5, "weight")
    G.add_edges_from(((i, i) for i in range(4)), weight=1.0)
    W = cyber(seed=0, customers=4, interconnection=G).data["interconnection"]
    expected = np.eye(4) + 0.5 * (np.eye(4, k=1) + np.eye(4, k=-1))
    assert np.array_equal(W, expected)
    D = nx.DiGraph()
    D.add_edge("a", "b", weight=2.0)
    D.add_edge("b", "c", weight=3.0)
    W = cyber(seed=0, customers=3, interconnection=D).data["interconnection"]
    assert W[0, 1] == 2.0 and W[1, 2] == 3.0 and W[1, 0] == 0.0 and np.count_nonzero(W) == 2
    # a sparse graph gives sparse logits: customer 0 depends on customers 0, 1 only
    g = cyber(seed=0, customers=4, interconnection=G)
    from pyomo.core.expr.visitor import identify_variables
    names = sorted(v.name for v in identify_variables(g.model.logit[0].expr))
    assert names == ["customer0.x", "customer1.x"]


def test_overrides_keep_other_data():
    base = cyber(seed=6, customers=4)
    g = cyber(seed=6, customers=4, losses=[60.0, 70, 80, 90])
    assert g.data["losses"].tolist() == [60.0, 70, 80, 90]
    assert np.array_equal(g.data["costs"], base.data["costs"])
    assert np.array_equal(g.data["interconnection"], base.data["interconnection"])


def _graph_missing_weight():
    G = nx.complete_graph(4)
    nx.set_edge_attributes(G, 1.0, "weight")
    del G.edges[1, 2]["weight"]
    return G


def _graph_nan_weight():
    G = nx.complete_graph(4)
    nx.set_edge_attributes(G, 1.0, "weight")
    G.edges[0, 3]["weight"] = float("nan")
    return G


def _graph_negative(w):
    G = nx.complete_graph(4)
    nx.set_edge_attributes(G, w, "weight")
    return G


@pytest.mark.parametrize("kw,match", [
    (dict(risk_aversion=-0.1), r"risk_aversion must be a finite number >= 0.0, got -0.1"),
    (dict(risk_aversion=float("nan")), r"risk_aversion must be a finite number >= 0.0, got nan"),
    (dict(customers=0), r"customers must be an integer >= 1, got 0"),
    (dict(max_effort=0.0), r"max_effort must be a finite number > 0.0, got 0.0"),
    (dict(samples=-1), r"samples must be an integer >= 1, got -1"),
    (dict(seed=1.5), r"seed must be a non-negative integer, got 1.5"),
    (dict(losses=np.ones(3)), r"losses must have shape \(customers,\) = \(4,\), got shape \(3,\)"),
    (dict(losses=[50.0, np.nan, 60.0, 70.0]), r"losses must be finite, got nan at index 1"),
    (dict(costs=[5.0, 5.0, -5.0, 5.0]), r"costs must be >= 0, got -5.0 at index 2"),
    (dict(costs=np.ones((4, 1))), r"costs must have shape \(customers,\) = \(4,\), got shape \(4, 1\)"),
    (dict(interconnection=_graph_missing_weight()), r"interconnection edge \(1, 2\) has no 'weight' attribute"),
    (dict(interconnection=_graph_nan_weight()), r"interconnection edge \(0, 3\) has non-finite weight nan"),
    (dict(interconnection=nx.complete_graph(5)), r"interconnection graph has 5 nodes but customers=4"),
    (dict(interconnection=np.eye(4)), r"interconnection must be a networkx Graph or DiGraph, got ndarray"),
    (dict(interconnection=nx.MultiGraph(nx.complete_graph(4))), r"interconnection must not be a multigraph"),
    (dict(interconnection=_graph_negative(-100.0)), r"customer 0's attack logit can reach .* > 700"),
])
def test_bad_input(kw, match):
    args = dict(customers=4)
    args.update(kw)
    seed = args.pop("seed", 0)
    with pytest.raises(ValueError, match=match):
        cyber(seed=seed, **args)


def test_negative_weights_within_range_are_allowed():
    g = cyber(seed=0, customers=4, interconnection=_graph_negative(-1.0))
    assert g.data["interconnection"][0, 1] == -1.0


# ---------------------------------------------------------------- with the oracle
def test_implicit_gradient_matches_finite_differences():
    from stackopt.checks import check_gradient
    game = cyber(seed=1, customers=4, risk_aversion=0.5)
    rng = np.random.default_rng(3)
    leader = np.concatenate([rng.uniform(0, 40, 4), rng.uniform(0, 10, 4)])  # I < L: smooth |L - I|
    out = check_gradient(game, leader, seed=0)
    assert out.equilibrium_residual <= 1e-6
    assert out.max_relative_error < 1e-5


def test_full_insurance_is_individually_rational_with_revenue_r_L_spread():
    # docs/games.md: with I = L a customer has no reason to protect (x = 0), and IR allows
    # rho = L q + r L sqrt(q (1 - q)), so the revenue is sum_i r L_i sqrt(q_i (1 - q_i)) at x = 0.
    from stackopt.scoring import evaluate
    r = 0.5
    game = cyber(seed=2, customers=4, risk_aversion=r)
    L = game.data["losses"]
    q = 1.0 / (1.0 + np.exp(-0.01 * L))
    s = np.sqrt(q * (1 - q))
    leader = np.concatenate([L, L * q + r * L * s - 1e-9])
    ev = evaluate(game, leader, seed=0)
    assert ev.equilibrium_residual <= 1e-6
    assert max(abs(v) for v in ev.follower_values.values()) < 1e-6
    assert ev.leader_objective == pytest.approx(np.sum(r * L * s), abs=1e-5)
    names = [v.name for v in game.structure().leader_variables]
    res = SimpleNamespace(leader_values=dict(zip(names, leader)), follower_values=ev.follower_values)
    assert ir_violation(game, res) < 1e-5


def test_solve_result_feeds_ir_violation():
    import stackopt
    game = cyber(seed=3, customers=3, risk_aversion=0.3)
    res = stackopt.solve(game, "gradient", seed=0, steps=30, lr=0.5)
    assert res.status is not stackopt.Status.ERROR, res.message
    assert res.equilibrium_residual <= 1e-6
    total = ir_violation(game, res)
    assert total >= res.constraint_violation - 1e-12  # a sum of positive parts >= their max
    gaps = ir_gaps(game, res.leader_values, res.follower_values)
    assert total == pytest.approx(np.maximum(gaps, 0).sum())


def test_effort_bound_is_not_binding_even_for_a_huge_uninsured_loss():
    from stackopt.scoring import evaluate
    game = cyber(seed=1, customers=3, risk_aversion=0.5)
    leader = np.concatenate([np.full(3, -1e4), np.zeros(3)])  # L - I about 1e4
    ev = evaluate(game, leader, seed=0)
    assert ev.equilibrium_residual <= 1e-6
    efforts = np.array(list(ev.follower_values.values()))
    assert efforts.max() > 1.0 and efforts.max() < 0.5 * game.data["max_effort"]


def test_cold_equilibrium_is_a_best_response_for_every_customer():
    """Efforts have a local optimum at 0: at this strategy gradient play stops there with
    customers who would gain ~0.9 by deviating; the game's best-response dynamics reach a
    Nash equilibrium (checked on a fine grid of each customer's effort)."""
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle
    game = cyber(customers=10, seed=1, risk_aversion=0.5)
    assert game.dynamics == "best-response"
    k = kernel_of(game)
    W, L, c = (game.data[key] for key in ("interconnection", "losses", "costs"))
    share = np.array([0.775, 1.013, 0.999, 0.995, 0.764, 1.027, 1.0, 1.0, 0.735, 1.001])
    values = {f"compensation[{i}]": share[i] * L[i] for i in range(10)}
    values.update({f"premium[{i}]": 0.0 for i in range(10)})
    p = np.array([values[n] for n in k.p_names])
    I = share * L  # noqa: E741  (the paper's name for compensations)

    def utility(i, x):
        q = 1 / (1 + np.exp((W @ x)[i] - 0.01 * L[i]))
        return -(L[i] - I[i]) * q - c[i] * x[i] - 0.5 * abs(L[i] - I[i]) * np.sqrt(q * (1 - q))

    def regret(x):
        grid = np.linspace(0, 20, 4001)
        return max(max(utility(i, np.where(np.arange(10) == i, g, x)) for g in grid) - utility(i, x)
                   for i in range(10))

    e = EquilibriumOracle(k).solve(p, rng=np.random.default_rng(0))
    assert e.converged
    assert regret(e.x) <= 1e-6
    local = EquilibriumOracle(k, cold_start="gradient-play").solve(p, rng=np.random.default_rng(0))
    assert local.converged and regret(local.x) > 0.1  # a KKT point that is no equilibrium
