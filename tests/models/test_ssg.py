"""Security game with multiple defenders: structure, formulas against NumPy, data, bad input."""
import networkx as nx
import numpy as np
import pyomo.environ as pyo
import pytest

from stackopt.models import available_games, build_game, game_spec
from stackopt.models.ssg import ssg

SMALL = dict(targets=12, defenders=3, coverable=5, resources=2.0)


def reference(data, X, PI, paid=None):
    """The security game of docs/games.md in NumPy: leader value, defender utilities, both budget spends.

    ``paid`` is the mask of reimbursed pairs (default: the coverable ones); off a
    defender's own targets its payoff is 0 and its coverage 0."""
    mask, a, U, Ui = data["coverage"], data["attractiveness"], data["leader_payoffs"], data["defender_payoffs"]
    paid = mask if paid is None else paid
    X = np.where(mask, X, 0.0)
    unprot = np.prod(1.0 - X, axis=0)
    cov = 1.0 - unprot
    w = np.exp(a - data["rationality"] * cov)
    p = w / w.sum()
    hit = p * (1.0 - cov)
    leader = hit @ U
    defenders = (paid * hit[None, :] * (np.where(mask, Ui, 0.0) + PI)).sum(axis=1)
    reimb = (paid * PI * (1.0 - X)).sum()
    expected = (paid * PI * hit[None, :]).sum()
    return leader, defenders, reimb, expected


def set_values(game, X, PI):
    mask = game.data["coverage"]
    for i in range(mask.shape[0]):
        b = game.follower(f"defender{i}")
        for t in b.x:
            b.x[t].set_value(X[i, t])
    for (i, t), v in game.model.reimbursement.items():
        v.set_value(PI[i, t])


def test_registered_with_its_parameters():
    assert "ssg" in available_games()
    spec = game_spec("ssg")
    for p in ("targets", "defenders", "coverable", "resources", "rationality", "budget",
              "budget_kind", "samples", "attractiveness", "coverage_graph", "reimburse",
              "reference_seed"):
        assert p in spec.params
    assert spec.params["budget_kind"].default == "reimbursement"
    assert spec.params["reimburse"].default == "coverable"
    assert spec.params["targets"].default == 100 and spec.params["defenders"].default == 5


def test_reference_size_structure():
    game = build_game("ssg", seed=1)
    s = game.structure()
    assert game.samples == 5
    assert [f.name for f in s.followers] == [f"defender{i}" for i in range(5)]
    assert [len(f.variables) for f in s.followers] == [50] * 5
    assert len(s.leader_variables) == 250
    assert len(s.leader_constraints) == 1
    assert game.data["coverage"].sum(axis=1).tolist() == [50] * 5
    assert game.data["resources"] == 10.0


@pytest.mark.parametrize("targets, coverable, resources", [
    (100, 50, 10.0), (20, 10, 2.0), (7, 4, 0.8), (1, 1, 0.2)])
def test_default_sizes_scale_with_the_targets(targets, coverable, resources):
    game = ssg(seed=4, targets=targets, defenders=3)
    assert game.data["coverage"].sum(axis=1).tolist() == [coverable] * 3
    assert game.data["resources"] == pytest.approx(resources)
    for f in game.structure().followers:
        (con,) = f.constraints
        assert pyo.value(con.upper) == pytest.approx(resources)


def test_default_resources_are_a_fifth_of_the_smallest_coverable_set():
    mask = np.zeros((2, 12), dtype=bool)
    mask[0, :10] = True
    mask[1, 4:9] = True
    assert ssg(seed=0, targets=12, defenders=2, coverage=mask).data["resources"] == 1.0
    assert ssg(seed=0, targets=12, defenders=2, coverage=mask, resources=3.0).data["resources"] == 3.0


def test_command_line_solves_a_small_game_with_the_defaults(capsys):
    import json

    from stackopt.cli import main
    assert main(["solve", "ssg", "--targets", "20", "--defenders", "3", "--method", "initial",
                 "--samples", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "converged" and out["equilibrium_residual"] <= 1e-6
    assert -10.0 < out["leader_objective"] < 0.0


def test_variables_only_on_coverable_targets():
    game = ssg(seed=3, **SMALL)
    mask = game.data["coverage"]
    s = game.structure()
    for i, f in enumerate(s.followers):
        assert sorted(f.block.x.keys()) == np.flatnonzero(mask[i]).tolist()
        assert all(v.lb == 0.0 and v.ub == 1.0 for v in f.variables)
        (con,) = f.constraints
        assert con.equality and pyo.value(con.upper) == 2.0
        assert pyo.value(con.body) == pytest.approx(2.0)  # initial point is feasible
    assert sorted(game.model.reimbursement.keys()) == [tuple(k) for k in np.argwhere(mask).tolist()]
    assert all(v.lb == 0.0 and v.ub is None for v in s.leader_variables)


@pytest.mark.parametrize("kind", ["reimbursement", "expected"])
def test_objectives_and_budget_match_the_definition(kind):
    game = ssg(seed=7, budget=0.6, budget_kind=kind, rationality=3.0, **SMALL)
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(3, 12))
    PI = rng.uniform(0, 4, size=(3, 12))
    set_values(game, X, PI)
    leader, defenders, reimb, expected = reference(game.data, X, PI)
    s = game.structure()
    assert s.leader_sense == pyo.maximize
    assert pyo.value(s.leader_objective) == pytest.approx(leader, rel=1e-12)
    for i, f in enumerate(s.followers):
        assert f.sense == pyo.maximize
        assert pyo.value(f.objective) == pytest.approx(defenders[i], rel=1e-12)
    spend = reimb if kind == "reimbursement" else expected
    assert pyo.value(s.leader_constraints[0].body) == pytest.approx(spend - 0.6, rel=1e-12)
    assert not np.isclose(reimb, expected)  # the two definitions really differ


@pytest.mark.parametrize("kind", ["reimbursement", "expected"])
def test_every_pair_reimbursed_matches_the_definition(kind):
    game = ssg(seed=7, budget=0.6, budget_kind=kind, rationality=3.0, reimburse="all", **SMALL)
    assert game.data["reimburse"] == "all"
    mask = game.data["coverage"]
    assert sorted(game.model.reimbursement.keys()) == [(i, t) for i in range(3) for t in range(12)]
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(3, 12))
    PI = rng.uniform(0, 4, size=(3, 12))
    set_values(game, X, PI)
    leader, defenders, reimb, expected = reference(game.data, X, PI, paid=np.ones_like(mask))
    s = game.structure()
    assert pyo.value(s.leader_objective) == pytest.approx(leader, rel=1e-12)
    for i, f in enumerate(s.followers):
        assert pyo.value(f.objective) == pytest.approx(defenders[i], rel=1e-12)
    spend = reimb if kind == "reimbursement" else expected
    assert pyo.value(s.leader_constraints[0].body) == pytest.approx(spend - 0.6, rel=1e-12)
    # an off-region reimbursement costs its full amount in the reference's budget
    off = (PI * ~mask).sum()
    assert reimb == pytest.approx((mask * PI * (1.0 - X)).sum() + off)
    # the drawn payoffs off a defender's targets do not enter its utility
    assert np.all(game.data["defender_payoffs"][~mask] < 0)


def test_reimbursing_every_pair_changes_the_fingerprint_only_when_chosen():
    from stackopt.comparisons.runner import fingerprint
    base = fingerprint(ssg(seed=3, **SMALL))
    assert fingerprint(ssg(seed=3, reimburse="coverable", **SMALL)) == base
    assert "reimburse" not in ssg(seed=3, **SMALL).data
    assert fingerprint(ssg(seed=3, reimburse="all", **SMALL)) != base


def test_shared_expressions_are_model_components():
    game = ssg(seed=2, **SMALL)
    m = game.model
    for name in ("unprotected", "coverage", "weight", "partition", "exposure", "attack", "hit"):
        assert isinstance(m.component(name), pyo.Expression)
    # the attack distribution is a probability vector
    assert sum(pyo.value(m.attack[t]) for t in range(12)) == pytest.approx(1.0)


def test_huge_attractiveness_does_not_overflow():
    a = np.linspace(0, 1000, 12)
    game = ssg(seed=0, attractiveness=a, **SMALL)
    X = np.full((3, 12), 0.3)
    set_values(game, X, np.zeros((3, 12)))
    assert np.isfinite(pyo.value(game.structure().leader_objective))


def test_uncovered_target_is_unprotected():
    mask = np.zeros((2, 6), dtype=bool)
    mask[0, :3] = True
    mask[1, 2:5] = True  # target 5 uncovered, target 2 shared
    game = ssg(seed=0, targets=6, defenders=2, resources=1.5, coverage=mask)
    m = game.model
    assert pyo.value(m.unprotected[5]) == 1.0
    X = np.full((2, 6), 0.5)
    set_values(game, X, np.zeros((2, 6)))
    assert pyo.value(m.coverage[2]) == pytest.approx(0.75)
    assert pyo.value(m.coverage[0]) == pytest.approx(0.5)


def test_same_seed_same_data_different_seed_differs():
    g1, g2, g3 = ssg(seed=4, **SMALL), ssg(seed=4, **SMALL), ssg(seed=5, **SMALL)
    for key in ("attractiveness", "leader_payoffs", "defender_payoffs", "coverage"):
        assert np.array_equal(g1.data[key], g2.data[key])
    for key in ("attractiveness", "leader_payoffs", "defender_payoffs"):
        assert not np.array_equal(g1.data[key], g3.data[key])
    assert not np.array_equal(g1.data["coverage"], g3.data["coverage"])


def test_overriding_one_array_keeps_the_others():
    base = ssg(seed=4, **SMALL)
    a = np.arange(12.0) / 12
    g = ssg(seed=4, attractiveness=a, **SMALL)
    assert np.array_equal(g.data["attractiveness"], a)
    for key in ("leader_payoffs", "defender_payoffs", "coverage"):
        assert np.array_equal(g.data[key], base.data[key])
    U = -np.ones(12)
    Ui = -2 * np.ones((3, 12))
    g = ssg(seed=4, leader_payoffs=U, defender_payoffs=Ui, **SMALL)
    assert np.array_equal(g.data["leader_payoffs"], U) and np.array_equal(g.data["defender_payoffs"], Ui)
    assert np.array_equal(g.data["attractiveness"], base.data["attractiveness"])


def test_coverage_as_index_lists_mask_and_bipartite_graph_agree():
    sets = [[0, 1, 2, 3], [3, 4, 5, 6, 7], [8, 9, 10, 11, 0]]
    mask = np.zeros((3, 12), dtype=bool)
    for i, s in enumerate(sets):
        mask[i, s] = True
    G = nx.Graph()
    G.add_nodes_from([f"d{i}" for i in range(3)], bipartite=0)
    G.add_nodes_from([f"t{t}" for t in range(12)], bipartite=1)
    G.add_edges_from((f"t{t}", f"d{i}") for i, s in enumerate(sets) for t in s)  # either orientation
    games = [ssg(seed=1, targets=12, defenders=3, resources=2.0, coverage=c)
             for c in (sets, mask)] + [ssg(seed=1, targets=12, defenders=3, resources=2.0, coverage_graph=G)]
    for g in games:
        assert np.array_equal(g.data["coverage"], mask)
        assert [len(f.variables) for f in g.structure().followers] == [4, 5, 5]


def test_networkx_bipartite_generator():
    G = nx.bipartite.random_graph(3, 12, 0.6, seed=1)
    g = ssg(seed=0, targets=12, defenders=3, resources=1.0, coverage_graph=G)
    expected = np.zeros((3, 12), dtype=bool)
    for u, v in G.edges():
        d, t = (u, v) if u < 3 else (v, u)
        expected[d, t - 3] = True
    assert np.array_equal(g.data["coverage"], expected)
    g = ssg(seed=0, targets=4, defenders=2, resources=1.0,
            coverage_graph=nx.complete_bipartite_graph(2, 4))
    assert g.data["coverage"].all()


def _graph(n_def, n_tar):
    return nx.complete_bipartite_graph(n_def, n_tar)


@pytest.mark.parametrize("kw,match", [
    (dict(budget=-1.0), r"budget must be a finite number >= 0.0, got -1.0"),
    (dict(budget=float("nan")), r"budget must be a finite number >= 0.0, got nan"),
    (dict(budget_kind="paid"), r"budget_kind must be one of \('reimbursement', 'expected'\), got 'paid'"),
    (dict(reimburse="some"), r"reimburse must be one of \('coverable', 'all'\), got 'some'"),
    (dict(targets=0), r"targets must be an integer >= 1, got 0"),
    (dict(defenders=2.5), r"defenders must be an integer >= 1, got 2.5"),
    (dict(coverable=13), r"coverable must be <= targets \(12\), got 13"),
    (dict(resources=6.0), r"defender 0 may cover 5 targets but must place resources=6.0"),
    (dict(resources=-1.0), r"resources must be a finite number >= 0.0, got -1.0"),
    (dict(rationality=-0.5), r"rationality must be a finite number >= 0.0, got -0.5"),
    (dict(samples=0), r"samples must be an integer >= 1, got 0"),
    (dict(seed=-3), r"seed must be a non-negative integer, got -3"),
    (dict(attractiveness=np.zeros(11)), r"attractiveness must have shape \(targets,\) = \(12,\), got shape \(11,\)"),
    (dict(leader_payoffs=np.r_[np.zeros(11), np.nan]), r"leader_payoffs must be finite, got nan at index 11"),
    (dict(defender_payoffs=np.zeros((12, 3))),
     r"defender_payoffs must have shape \(defenders, targets\) = \(3, 12\), got shape \(12, 3\)"),
    (dict(defender_payoffs=np.full((3, 12), np.inf)), r"defender_payoffs must be finite, got inf at index \(0, 0\)"),
    (dict(attractiveness="high"), r"attractiveness must be a numeric array"),
    (dict(coverage=np.ones((3, 11), dtype=bool)),
     r"coverage mask must have shape \(defenders, targets\) = \(3, 12\), got shape \(3, 11\)"),
    (dict(coverage=[[0, 1], [2, 3]]), r"coverage must list the targets of each of the 3 defenders, got 2 lists"),
    (dict(coverage=[[0, 1], [2, 12], [4]], resources=1.0),
     r"coverage of defender 1 contains 12; expected target indices in 0..11"),
    (dict(coverage=[[0, 0], [1], [2]], resources=1.0), r"coverage of defender 0 lists target 0 twice"),
    (dict(coverage=[[0], [1], [2]], coverage_graph=_graph(3, 12)), r"give either coverage or coverage_graph, not both"),
    (dict(coverage_graph=_graph(4, 12)), r"coverage_graph has 4 defender nodes \(bipartite=0\) but defenders=3"),
    (dict(coverage_graph=_graph(3, 10)), r"coverage_graph has 10 target nodes \(bipartite=1\) but targets=12"),
    (dict(coverage_graph=nx.path_graph(15)),
     r"coverage_graph node 0 has bipartite=None; expected 0 \(defender\) or 1 \(target\)"),
    (dict(coverage_graph=np.ones((3, 12))), r"coverage_graph must be a networkx graph, got ndarray"),
])
def test_bad_input(kw, match):
    args = dict(SMALL)
    args.update(kw)
    seed = args.pop("seed", 0)
    with pytest.raises(ValueError, match=match):
        ssg(seed=seed, **args)


def test_graph_edge_between_two_targets_is_rejected():
    G = _graph(3, 12)
    G.add_edge(3, 4)
    with pytest.raises(ValueError, match=r"coverage_graph edge \(3, 4\) does not join a defender to a target"):
        ssg(seed=0, targets=12, defenders=3, resources=1.0, coverage_graph=G)


def test_unknown_parameter_rejected_by_registry():
    with pytest.raises(ValueError, match="unknown parameter 'budgte'"):
        build_game("ssg", seed=0, budgte=1.0)


# ---------------------------------------------------------------- with the oracle
@pytest.mark.parametrize("kind, reimburse", [("reimbursement", "coverable"), ("expected", "coverable"),
                                             ("reimbursement", "all")])
def test_implicit_gradient_matches_finite_differences(kind, reimburse):
    from stackopt.checks import check_gradient
    game = ssg(seed=1, targets=8, defenders=2, coverable=5, resources=2.0, budget_kind=kind,
               reimburse=reimburse)
    out = check_gradient(game, seed=0)
    assert out.equilibrium_residual <= 1e-6
    assert out.max_relative_error < 1e-5


def test_sampled_equilibria_meet_the_tolerance():
    from stackopt.kernel import kernel_of
    from stackopt.scoring import evaluate
    game = ssg(seed=2, targets=8, defenders=2, coverable=5, resources=2.0, samples=3)
    k = kernel_of(game)
    leader = np.random.default_rng(0).uniform(0, 2, k.n_p)
    ev = evaluate(game, leader, seed=0, samples=3)
    assert len(ev.equilibria) == 3
    assert ev.equilibrium_residual <= 1e-6
    for e in ev.equilibria:  # each draw is feasible for every defender
        for sl in k.slices:
            assert e.x[sl].sum() == pytest.approx(2.0)
            assert np.all((e.x[sl] >= -1e-12) & (e.x[sl] <= 1 + 1e-12))


def test_reference_size_cold_starts_converge_by_gradient_play():
    """Starts where Newton cannot finish from the first hand-over point: gradient play
    goes on to smaller steps instead of falling back to the slow relaxation."""
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle
    game = ssg(seed=1)
    k = kernel_of(game)
    oracle = EquilibriumOracle(k, tol=1e-6, time_limit=30)
    for s in (5, 14, 19):
        e = oracle.solve(k.p0, rng=np.random.default_rng([0, s]))
        assert e.converged, (s, e.residual)
        for sl in k.slices:
            assert e.x[sl].sum() == pytest.approx(10.0)


def test_recommended_gradient_options_apply_beneath_the_users():
    import stackopt
    game = ssg(seed=2, targets=8, defenders=2, coverable=5, resources=2.0, budget=0.5)
    r = stackopt.solve(game, "gradient", seed=0, steps=4, samples_per_step=2)
    assert r.options["steps"] == 4 and r.options["samples_per_step"] == 2  # the user's
    assert r.options["constraints"] == "worst"  # the game's
    assert r.status.value in ("converged", "max_iterations", "time_limit")
    assert r.constraint_violation <= 1e-6
    with pytest.raises(ValueError, match="unknown option 'stepz'"):
        stackopt.solve(game, "gradient", stepz=3)


def test_cold_start_where_gradient_play_drifts_keeps_its_step_and_converges():
    """From this start (paper size, seed 1) gradient play moves for tens of steps along a
    steady direction at a constant step; halving its step there (as if it oscillated)
    shrank the steps far from any equilibrium, Newton failed from every hand-over (98
    Newton steps, 982 play steps) and the cold start ended at a local Nash point Newton
    reached elsewhere. The play keeps its step and hands over once, next to its limit."""
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle
    game = build_game("ssg", seed=1, targets=100, defenders=5, coverable=50, resources=10.0,
                      rationality=5.0, budget_kind="reimbursement", budget=1.0)
    k = kernel_of(game)
    e = EquilibriumOracle(k).solve(k.p0, rng=np.random.default_rng([1, 3]))
    assert e.converged and e.message == ""
    assert e.newton_iterations <= 5 and e.relaxation_iterations <= 300


def test_cold_start_where_gradient_play_circles_halves_its_step_and_settles():
    """A small security game where gradient play at its first step circles at a steady
    size (its step sizes rising and falling, so never ten in a row without shrinking):
    the play ran its whole budget of 1000 steps before Newton finished from its last
    point. The window test sees a window that neither contracts nor gets anywhere,
    halves the step, and the play settles in under a hundred steps, at the same
    equilibrium."""
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle
    k = kernel_of(build_game("ssg", seed=2, targets=8, defenders=2, coverable=5, resources=1.0, budget=0.5))
    o = EquilibriumOracle(k, tol=1e-9)
    p = k.p0 + 0.3 * np.random.default_rng(5).random(k.n_p)
    e = o.solve(p, rng=np.random.default_rng([9, 0]))
    assert e.converged and e.message == "" and e.relaxation_iterations < 100
    # Newton from where a long play at a small step stops: the same point
    import time

    from stackopt.oracle.dynamics import GradientPlay
    h = GradientPlay(k, o.sets, step=0.05).run(o.random_start(p, np.random.default_rng([9, 0])), p,
                                             time.perf_counter() + 60, 20_000, 1e-12)
    assert h.settled
    np.testing.assert_allclose(e.x, h.z[0], atol=1e-7)


def test_cold_start_keeps_newtons_local_nash_point_where_no_hand_over_is_near(monkeypatch):
    """Where Newton, from every hand-over of every restart, reaches a local Nash point but
    never one near where the play was heading (here forced: a coarse hand-over and no
    predicted distance), the cold start returns the first such point and says so."""
    import stackopt.oracle.dynamics as dyn
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle
    monkeypatch.setattr(dyn, "_distance", lambda sizes, window=10: 0.0)
    k = kernel_of(build_game("ssg", seed=0, targets=20, defenders=5, coverable=10))
    o = EquilibriumOracle(k, handover_ladder=(1e-2,))
    e = o.solve(k.p0, rng=np.random.default_rng([0, 0]))
    assert e.converged and "its steps shrank far from an equilibrium" in e.message
    assert np.max(np.abs(o.residual(e.x, e.nu, e.lam, e.w, e.p))) <= o.config.tol
