"""Scores as expectations over the followers' equilibria: draws to a precision, intervals that
cover the expectation, common random numbers, one draw where the equilibrium is unique."""
import math

import numpy as np
import pyomo.environ as pyo
import pytest
from games import coordination, make_duopoly
from scipy import special

import stackopt
from stackopt import StackelbergGame
from stackopt.scoring import MIN_DRAWS, evaluate

EXPECTED = 1.0  # the leader's objective in expectation at pi = 0 (symmetry: games.coordination)


def test_interval_covers_the_expectation_at_its_level():
    game = coordination()
    reps, n = 60, 12
    evs = [evaluate(game, [0.0], seed=1000 + r, samples=n) for r in range(reps)]
    assert all(ev.draws == n for ev in evs)
    covered = [ev.objective_interval[0] <= EXPECTED <= ev.objective_interval[1] for ev in evs]
    coverage = float(np.mean(covered))
    # the equilibria reached: the three, each way (0 and 2 equally often by symmetry)
    pooled = np.concatenate([ev.objectives for ev in evs])
    values, counts = np.unique(np.round(pooled, 6), return_counts=True)
    assert list(values) == [0.0, 1.0, 2.0]
    assert abs(pooled.mean() - EXPECTED) < 3 * pooled.std() / math.sqrt(pooled.size)
    # 95 % intervals: 57 of 60 on average; fewer than 51 has probability < 0.2 %
    assert 0.85 <= coverage <= 1.0, coverage
    # not wide for nothing: the half-widths are Student's t times the standard error
    half = np.array([(ev.objective_interval[1] - ev.objective_interval[0]) / 2 for ev in evs])
    t = 2.200985  # scipy.stats.t.ppf(0.975, 11)
    assert np.allclose(half, t * np.array([ev.objective_stderr for ev in evs]))
    assert abs(np.mean([ev.objective_stderr for ev in evs]) * math.sqrt(n) / pooled.std() - 1) < 0.2


def test_the_first_stage_fixes_the_draws():
    """Stein's two stages: the first MIN_DRAWS draws' spread fixes the draws in all, so that
    their standard error at that number is at most the precision times their scale."""
    game = coordination()
    ev = evaluate(game, [0.0], seed=3, precision=0.05, max_draws=500)
    first = ev.objectives[:MIN_DRAWS]
    s0, scale = np.std(first, ddof=1), np.max(np.abs(first))  # scale 2: the largest draw
    assert ev.draws == math.ceil((s0 / (0.05 * scale)) ** 2) > MIN_DRAWS and ev.first == MIN_DRAWS
    assert s0 / math.sqrt(ev.draws) <= 0.05 * scale < s0 / math.sqrt(ev.draws - 1)
    assert np.array_equal(first, evaluate(game, [0.0], seed=3, samples=MIN_DRAWS).objectives)
    # the interval: Stein's, or the t interval over all the draws where that is wider
    low, high = ev.objective_interval
    t0, tn = (float(special.stdtrit(n - 1, 0.975)) for n in (MIN_DRAWS, ev.draws))
    assert (high - low) / 2 == pytest.approx(max(t0 * s0, tn * np.std(ev.objectives, ddof=1))
                                             / math.sqrt(ev.draws))
    assert ev.note == "" and evaluate(game, [0.0], seed=3, precision=1.0).draws == MIN_DRAWS
    # the cap: the precision is not reached, and the evaluation says so
    capped = evaluate(game, [0.0], seed=3, precision=1e-6, max_draws=15)
    assert capped.draws == 15 and "cap of 15" in capped.note and "standard error" in capped.note
    groups = capped.groups
    assert sum(g.count for g in groups) == 15 and abs(sum(g.frequency for g in groups) - 1) < 1e-12
    assert sorted(round(g.objective, 6) for g in groups) == sorted(
        set(np.round(capped.objectives, 6)))
    assert capped.extreme(best=True)["objective"] == pytest.approx(np.max(capped.objectives))
    assert capped.extreme(best=False)["objective"] == pytest.approx(np.min(capped.objectives))


def test_common_random_numbers():
    """Draw s starts from the point seeded by (seed, s), whatever the strategy or method: two
    strategies are scored on the same starts, and so the same draws give the same equilibria
    where the strategies are the same."""
    game = coordination()
    a = evaluate(game, [0.0], seed=7, samples=20)
    b = evaluate(game, [0.0], seed=7, samples=30)
    assert np.array_equal(a.objectives, b.objectives[:20])
    r1 = stackopt.solve(game, "initial", seed=7)
    r2 = stackopt.solve(coordination(), "initial", seed=7)
    assert r1.leader_objective == r2.leader_objective and r1.draws == r2.draws >= MIN_DRAWS


def test_result_says_what_the_draws_showed():
    r = stackopt.solve(coordination(), "initial", seed=2, max_draws=40)
    assert r.draws == 40  # the default precision is not reached with 40 draws of this spread
    low, high = r.objective_interval
    assert low < r.leader_objective < high
    # at least Student's t interval over the 40 draws (wider where the first 20 spread more)
    t39 = special.stdtrit(39, 0.975)  # 2.0227
    assert r.objective_stderr > 0 and high - low >= 2 * t39 * r.objective_stderr * (1 - 1e-12)
    assert r.pessimistic["objective"] == pytest.approx(0.0, abs=1e-6)
    assert r.optimistic["objective"] == pytest.approx(2.0, abs=1e-6)
    assert sorted(round(e["objective"], 6) for e in r.equilibria) == [0.0, 1.0, 2.0]
    assert sum(e["count"] for e in r.equilibria) == 40
    assert "cap of 40" in r.message and "95 % interval" in str(r)
    stored = stackopt.Result(**{**r.to_dict(), "status": r.status,
                                "objective_interval": list(r.objective_interval)})
    assert stored.objective_interval == r.objective_interval


def test_unique_equilibrium_is_one_exact_draw():
    """samples=1 and every follower provably convex: one draw, standard error 0."""
    r = stackopt.solve(make_duopoly(), "gradient")
    assert r.draws == 1 and r.objective_stderr == 0.0
    assert r.objective_interval == (r.leader_objective, r.leader_objective)
    assert r.pessimistic == r.optimistic == {"objective": r.leader_objective,
                                             "violation": r.constraint_violation}
    assert len(r.equilibria) == 1 and r.equilibria[0]["frequency"] == 1.0


def test_a_nonconvex_follower_is_not_taken_for_unique():
    """samples=1 is the author's word that the equilibrium is unique; scoring takes it only
    where every follower is provably convex: a double well has two equilibria."""
    g = StackelbergGame("well", samples=1)
    m = g.model
    m.p = pyo.Var(bounds=(-1, 1), initialize=0.0)
    b = g.add_follower("f")
    b.x = pyo.Var(bounds=(-1.5, 1.5), initialize=0.0)
    b.cost = pyo.Objective(expr=(b.x ** 2 - 1) ** 2 - m.p * b.x)
    g.set_leader([m.p], b.x, sense=pyo.maximize)
    ev = evaluate(g, [0.0], seed=0, max_draws=MIN_DRAWS)
    assert ev.draws == MIN_DRAWS and not ev.unique
    assert sorted(round(gr.objective, 6) for gr in ev.groups) == [-1.0, 1.0]


def test_evaluate_takes_a_results_leader_values():
    game = make_duopoly()
    r = stackopt.solve(game, "gradient")
    ev = stackopt.evaluate(game, r.leader_values)
    assert ev.leader_objective == r.leader_objective


@pytest.mark.parametrize("kw, match", [
    (dict(precision=0), "precision must be a finite number > 0"),
    (dict(precision=float("nan")), "precision must be a finite number > 0"),
    (dict(max_draws=0), "max_draws must be a positive integer, got 0"),
    (dict(max_draws=2.5), "max_draws must be a positive integer, got 2.5"),
])
def test_bad_precision_or_cap(kw, match):
    with pytest.raises(ValueError, match=match):
        evaluate(coordination(), [0.0], **kw)
    with pytest.raises(ValueError, match=match):
        stackopt.solve(coordination(), "initial", **kw)


def test_a_reformulation_says_its_claim_is_optimistic():
    """A single-level reformulation chooses the followers' equilibrium with the leader's
    strategy: its claim is the best equilibrium's value, and its result says how far that
    is from the expectation it is scored on."""
    from stackopt.core import Status
    from stackopt.methods import MethodOutput
    from stackopt.scoring import chooses_equilibrium, score

    assert chooses_equilibrium("mpec-ipopt") and chooses_equilibrium("mpec-scip")
    assert not chooses_equilibrium("gradient") and not chooses_equilibrium("initial")
    game = coordination()
    game.refresh()
    out = MethodOutput(leader=np.array([0.0]), status=Status.CONVERGED, claimed_objective=2.0,
                       claimed_violation=0.0)
    r = score(game, out, method="mpec-ipopt", seed=0, max_draws=30)
    assert r.optimistic_claim and r.draws == 30
    assert r.optimistic["objective"] == pytest.approx(2.0, abs=1e-6)  # the claim is the best draw
    assert r.leader_objective < 1.5 and r.claim_gap == pytest.approx(2.0 - r.leader_objective)
    assert ("optimised the optimistic value" in r.message
            and f"claim minus expectation {2.0 - r.leader_objective:.3g}" in r.message)
    plain = score(game, out, method="gradient", seed=0, max_draws=30)
    assert not plain.optimistic_claim and "optimistic value" not in plain.message
    assert plain.leader_objective == r.leader_objective  # the same draws for every method


def test_an_initial_evaluation_the_clock_cut_is_not_kept_for_later_solves():
    """The initial strategy is evaluated once per game and seed; where the clock cut that
    evaluation short, a later solve with time to spare evaluates it in full."""
    from stackopt.scoring import score

    game = coordination()
    k = stackopt.kernel.kernel_of(game)

    class Out:  # a method's proposal: the initial strategy itself
        leader, follower_hint, message, status = k.p0, None, "", stackopt.Status.CONVERGED
        claimed_objective = claimed_violation = bound = gap = None
        singular_kkt, history = False, []
        work = stackopt.oracle.OracleCounters()

    cut = score(game, Out, "initial", seed=0, deadline=0.0)  # long past
    assert not [key for key in game._cache if key.startswith("initial-evaluation")]
    assert cut.oracle_solves["scoring"]["clock_stops"] >= 1
    full = score(game, Out, "initial", seed=0)
    assert [key for key in game._cache if key.startswith("initial-evaluation")]
    assert full.draws >= MIN_DRAWS and full.initial_objective == full.leader_objective


def test_the_initial_strategy_is_scored_by_the_initial_evaluation_once():
    """A proposal of the initial strategy has the same draws as the initial evaluation: it is
    that evaluation, made once per game and seed (its cold starts counted once, none on a
    later solve), with the figures a separate evaluation of the strategy gives."""
    game = coordination()
    first = stackopt.solve(game, "initial", seed=3)
    assert first.oracle_solves["scoring"]["cold_starts"] == first.draws >= MIN_DRAWS
    again = stackopt.solve(game, "initial", seed=3)
    assert again.oracle_solves["scoring"]["cold_starts"] == 0
    alone = evaluate(coordination(), [0.0], seed=3)
    for r in (first, again):
        assert r.leader_objective == r.initial_objective == alone.leader_objective
        assert r.objective_interval == alone.objective_interval and r.draws == alone.draws


def _weighted_coordination(weight=1.0, shift=0.0):
    """:func:`games.coordination` with mutable Params: ``weight`` in the leader's objective
    alone, ``shift`` in the followers' objectives."""
    from games import _matching_pair

    g = StackelbergGame("coordination", samples=5)
    m = g.model
    m.pi = pyo.Var(bounds=(-1, 1), initialize=0.0)
    m.weight = pyo.Param(mutable=True, initialize=weight)
    m.shift = pyo.Param(mutable=True, initialize=shift)
    f = _matching_pair(g, m.pi + m.shift)
    g.set_leader([m.pi], m.weight * (f[0].x + f[1].x))
    return g


def test_the_initial_draws_serve_every_leader_function_on_the_same_followers_game():
    """Editing a Param of the leader's functions alone re-scores the initial strategy on the
    equilibria its draws reached before (no cold start), with a fresh build's figures; editing
    one of the followers' draws them again."""
    game = _weighted_coordination()
    first = stackopt.solve(game, "initial", seed=4)
    assert first.oracle_solves["scoring"]["cold_starts"] == first.draws
    game.model.weight.set_value(3.0)
    weighted = stackopt.solve(game, "initial", seed=4)
    assert weighted.oracle_solves["scoring"]["cold_starts"] == 0
    fresh = stackopt.solve(_weighted_coordination(weight=3.0), "initial", seed=4)
    assert weighted.leader_objective == fresh.leader_objective != first.leader_objective
    assert weighted.objective_interval == fresh.objective_interval
    game.model.shift.set_value(0.1)
    shifted = stackopt.solve(game, "initial", seed=4)
    assert shifted.oracle_solves["scoring"]["cold_starts"] == shifted.draws
    again = stackopt.solve(_weighted_coordination(weight=3.0, shift=0.1), "initial", seed=4)
    assert shifted.leader_objective == again.leader_objective
