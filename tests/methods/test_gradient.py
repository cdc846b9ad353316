"""The augmented Lagrangian gradient method on problems with known answers."""
import numpy as np
import pyomo.environ as pyo
import pytest
from games import make_duopoly

from stackopt import StackelbergGame, Status, solve
from stackopt.models import build_game


def test_duopoly_reaches_known_optimum_with_defaults():
    # max -(x1-3)^2-(x2-1)^2 s.t. x1+x2 <= 3, pi in [0,10]^2 with x = M^{-1} pi:
    # optimum x = (2.25, 0.75), pi = (4.875, 0), value -0.625 (both constraints active)
    r = solve(make_duopoly(), "gradient")
    assert r.status is Status.CONVERGED
    assert r.leader_objective == pytest.approx(-0.625, abs=1e-5)
    assert r.constraint_violation <= 1e-6
    assert r.leader_values["pi[1]"] == pytest.approx(4.875, abs=1e-4)
    assert r.equilibrium_residual <= 1e-6
    assert r.history[-1]["stationarity"] <= 1e-6


@pytest.mark.parametrize("optimizer", ["radam", "adam", "sgd", "spg"])
def test_a_one_step_run_is_never_converged(optimizer):
    r = solve(make_duopoly(), "gradient", steps=1, optimizer=optimizer)
    assert r.status is Status.MAX_ITERATIONS, r.message
    assert np.isfinite(r.leader_objective)


def test_the_scale_of_the_leader_box_does_not_matter():
    """The same duopoly with the leader's box and the followers' response scaled by
    100 takes the same steps (steps are relative to the box) and reaches the scaled optimum."""
    game = StackelbergGame("scaled_duopoly")
    m = game.model
    m.pi = pyo.Var([1, 2], bounds=(0, 1000), initialize=0)
    f1, f2 = game.add_follower("firm1"), game.add_follower("firm2")
    f1.x = pyo.Var(bounds=(-1e4, 1e4), initialize=0)
    f2.x = pyo.Var(bounds=(-1e4, 1e4), initialize=0)
    f1.cost = pyo.Objective(expr=f1.x**2 + 0.5 * f1.x * f2.x - m.pi[1] * f1.x)
    f2.cost = pyo.Objective(expr=1.5 * f2.x**2 - f1.x * f2.x - m.pi[2] * f2.x)
    game.set_leader([m.pi], objective=-(f1.x - 300) ** 2 - (f2.x - 100) ** 2, sense=pyo.maximize,
                    constraints=[f1.x + f2.x <= 300])
    big, small = solve(game, "gradient"), solve(make_duopoly(), "gradient")
    assert big.status is Status.CONVERGED
    # the tolerances are relative to the problem's scales: the answer is the scaled one of
    # the small duopoly (whose objective is within 1e-5 of -0.625, as tested above)
    assert big.leader_objective == pytest.approx(-6250.0, rel=1.6e-5)
    assert big.leader_objective == pytest.approx(1e4 * small.leader_objective, rel=1e-9)
    assert big.leader_values["pi[1]"] == pytest.approx(487.5, rel=1e-5)
    assert abs(len(big.history) - len(small.history)) <= 3


def test_nfg_budget_met_and_welfare_improves():
    g = build_game("nfg", seed=2, players=2, actions=4, budget=1.0)
    r = solve(g, "gradient", seed=2, steps=800)
    assert r.constraint_violation <= 1e-6
    assert r.leader_objective > r.initial_objective + 0.05
    assert len(r.history) <= 801 and r.history[-1]["violation"] >= 0


def test_nfg_zero_budget_stays_at_initial_value():
    g = build_game("nfg", seed=2, players=2, actions=4, budget=0.0)
    r = solve(g, "gradient", seed=2, steps=400)
    assert r.constraint_violation <= 1e-6
    assert r.leader_objective == pytest.approx(r.initial_objective, abs=1e-3)


def test_same_seed_same_result():
    g = build_game("nfg", seed=4, players=2, actions=3, budget=0.5)
    a = solve(g, "gradient", seed=4, steps=100)
    b = solve(build_game("nfg", seed=4, players=2, actions=3, budget=0.5), "gradient", seed=4, steps=100)
    assert a.leader_values == b.leader_values and a.leader_objective == b.leader_objective


def test_sgd_and_sampled_equilibria_run():
    g = build_game("nfg", seed=4, players=2, actions=3, budget=0.5)
    r = solve(g, "gradient", steps=50, optimizer="sgd", samples_per_step=2, resample_every=10)
    assert r.status in (Status.CONVERGED, Status.MAX_ITERATIONS) and np.isfinite(r.leader_objective)
    assert sum(h["fresh"] for h in r.history) >= 1


def test_time_limit_is_a_status():
    g = build_game("nfg", seed=4, players=3, actions=10, budget=5.0)
    # the whole run, unlimited, ends in about 1.9 s on a quiet machine (its stopping rule):
    # a limit well inside it, so that the clock and not the rule ends the run on a fast machine
    r = solve(g, "gradient", steps=10**6, time_limit=0.5)
    assert r.status is Status.TIME_LIMIT
    assert r.wall_time_s < 10 and np.isfinite(r.leader_objective)


def test_failure_inside_a_method_is_a_result(monkeypatch):
    import stackopt.leader.problem as red

    def boom(*a, **k):
        raise FloatingPointError("synthetic failure")

    monkeypatch.setattr(red, "leader_gradients", boom)
    r = solve(make_duopoly(), "gradient", steps=10)
    assert r.status is Status.ERROR and "synthetic failure" in r.message
    assert np.isfinite(r.leader_objective)  # the initial strategy is still scored


def test_contradicting_options_are_an_error_naming_both():
    with pytest.raises(ValueError, match=r"resample_every=125 is larger than steps=100"):
        solve(make_duopoly(), "gradient", steps=100, resample_every=125)


def test_constraint_aggregates_over_sampled_equilibria():
    from stackopt.leader.problem import aggregate
    cons = np.array([[0.1, -2.0], [0.3, -1.0], [-0.1, -3.0]])  # 3 draws, 2 constraints
    mean, share = aggregate(cons, "mean")
    assert np.allclose(mean, [0.1, -2.0]) and np.all(share == 1)
    worst, share = aggregate(cons, "worst")
    assert np.allclose(worst, [0.3, -1.0])
    # the gradient loop averages over the draws: the worst draw carries each constraint alone
    assert share.tolist() == [[0, 0], [3, 3], [0, 0]]


def test_stationarity_measure_matches_finite_differences():
    """The recorded stationarity is the scaled projected gradient of the augmented
    Lagrangian; rebuilt from central differences of re-solved equilibria it agrees."""
    from stackopt.kernel import kernel_of
    from stackopt.leader import LeaderProblem
    from stackopt.methods.gradient.lagrangian import AugmentedLagrangian
    from stackopt.methods.gradient.method import GradientMethod, Options
    from stackopt.oracle import EquilibriumOracle

    game = make_duopoly()
    k = kernel_of(game)
    opts = Options(**GradientMethod.CONFIG().value())
    prob = LeaderProblem(k, EquilibriumOracle(k, tol=1e-12), np.random.default_rng(0))
    al = AugmentedLagrangian(prob, opts, np.inf)
    al.lam, al.mu = np.array([0.7]), 3.0
    p = np.array([6.0, 0.0])  # pi[2] on its lower bound: the projection matters
    pt = prob.draw(p)
    g = al.grad(pt)
    h = 1e-6
    fd = np.zeros(2)
    for j in range(2):
        e = np.eye(2)[j] * h
        fd[j] = (al.value(prob.follow(pt, p + e)) - al.value(prob.follow(pt, p - e))) / (2 * h)
    assert np.allclose(g, fd, rtol=1e-6, atol=1e-7)
    st = al.stationarity(pt, g)
    s = al.scale
    expected = np.max(np.abs((np.clip(p - s * s * fd, k.p_lb, k.p_ub) - p) / s))
    assert st == pytest.approx(expected, rel=1e-6) and st > 0


def test_leader_constraints_in_its_own_variables_are_kept_exactly():
    """x1 + x2 <= 1.5 on the leader's variables is never left: the steps project
    onto it, so every recorded iterate and the answer satisfy it."""
    game = StackelbergGame("boxed")
    m = game.model
    m.a = pyo.Var([1, 2], bounds=(0, 2), initialize=0)
    f = game.add_follower("f")
    f.y = pyo.Var([1, 2], bounds=(-10, 10))
    f.obj = pyo.Objective(expr=(f.y[1] - m.a[1]) ** 2 + (f.y[2] - m.a[2]) ** 2)
    game.set_leader([m.a], objective=f.y[1] + 2 * f.y[2], sense=pyo.maximize,
                    constraints=[m.a[1] + m.a[2] <= 1.5])
    seen = []
    import stackopt.leader.problem as red
    orig = red.LeaderProblem.point

    def spy(self, p, eqs, fresh):
        seen.append(p.sum())
        return orig(self, p, eqs, fresh)

    red.LeaderProblem.point = spy
    try:
        r = solve(game, "gradient")
    finally:
        red.LeaderProblem.point = orig
    assert max(seen) <= 1.5 + 1e-9
    assert r.status is Status.CONVERGED and r.constraint_violation <= 1e-9
    assert r.leader_values["a[2]"] == pytest.approx(1.5, abs=1e-6)
    assert r.leader_objective == pytest.approx(3.0, abs=1e-6)


# --------------------------------------------------------- lost branches
class _Draw:
    def __init__(self, x, converged=True):
        self.x, self.converged, self.residual = np.asarray(x, float), converged, 0.0


class _StubProblem:
    """Equilibrium x = p[0]; warm starts fail beyond a step of `reach` from where they were."""

    def __init__(self, reach):
        from types import SimpleNamespace
        self.reach, self.calls = reach, []
        self.k = SimpleNamespace(n_p=1)

    def follow(self, base, p):
        self.calls.append("warm")
        ok = abs(p[0] - base.p[0]) <= self.reach
        return _Point(p, converged=ok)

    def readjust(self, base, p, lost=None):
        self.calls.append("cold")
        return _Point(p)


class _Point:
    def __init__(self, p, converged=True, f=0.0, violation=0.0):
        self.p, self.converged = np.asarray(p, float), converged
        self.f, self.violation = f, violation


class _StubLagrangian:
    scale = np.ones(1)
    t = 0

    def project(self, y, metric=None):
        return np.clip(y, -10, 10)

    def out_of_time(self):
        return False

    def violation(self, pt):
        return pt.violation


def test_adam_refuses_a_re_adjustment_that_is_worse_for_the_leader():
    from stackopt.methods.gradient.method import GradientMethod, Options
    from stackopt.methods.gradient.steps import AdamStep
    opts = Options(**GradientMethod.CONFIG().value())
    prob, al = _StubProblem(reach=0.0), _StubLagrangian()
    prob.readjust = lambda base, p, lost=None: _Point(p, f=base.f + 1.0, violation=base.violation)
    step, start = AdamStep(prob, opts), _Point([0.0], f=-2.0, violation=0.5)
    done = step.take(al, start, np.array([-1.0]))
    assert done.point is start  # stays where it was
    assert done.refused == 1 and done.jumps == 0 and np.all(step.m1 == 0.0)
    # worse by less than JUMP_LOSS of the objective's magnitude: taken
    prob.readjust = lambda base, p, lost=None: _Point(p, f=base.f + 0.01, violation=base.violation)
    done = step.take(al, start, np.array([-1.0]))
    assert done.point is not start and done.jumps == 1 and done.refused == 0
    # worse for the objective but more feasible: taken
    prob.readjust = lambda base, p, lost=None: _Point(p, f=base.f + 1.0, violation=0.1)
    done = step.take(al, start, np.array([-1.0]))
    assert done.point is not start and done.jumps == 1 and done.refused == 0


def test_rectified_adam_starts_with_momentum_steps_in_the_gradients_units():
    """RAdam's first steps move each variable by ``lr`` times its scaled gradient (the
    paper's Adam moves every one by ``lr``, however small its gradient: on the security game
    that spends the budget several times over at once); from the sixth, Adam's normalised
    step times the rectification, which grows towards one."""
    from stackopt.methods.gradient.method import GradientMethod, Options
    from stackopt.methods.gradient.steps import AdamStep, rectification
    g = np.array([-0.06, -1e-4])

    def first_steps(optimizer, n):
        opts = Options(**{**GradientMethod.CONFIG().value(), "optimizer": optimizer})
        prob, al = _StubProblem(reach=np.inf), _StubLagrangian()
        prob.k.n_p, al.scale = 2, np.ones(2)
        step, pt, moves = AdamStep(prob, opts), _Point([0.0, 0.0]), []
        for _ in range(n):
            new = step.take(al, pt, g).point
            moves.append(new.p - pt.p)
            pt = new
        return moves

    moves = first_steps("radam", 6)
    for move in moves[:5]:
        assert move == pytest.approx(-0.01 * g, rel=1e-12)
    assert moves[5] == pytest.approx(np.full(2, 0.01 * rectification(0.999, 6)), rel=1e-3)
    assert first_steps("adam", 1)[0] == pytest.approx(np.full(2, 0.01), rel=1e-3)
    # too few gradients for a variance up to the fifth step, then a factor rising to one
    assert all(rectification(0.999, t) is None for t in range(1, 6))
    r = [rectification(0.999, t) for t in (6, 100, 1000, 10000)]
    assert 0.0 < r[0] < r[1] < r[2] < r[3] < 1.0 and r[3] == pytest.approx(1.0, abs=1e-3)


def test_lost_branch_halves_then_re_adjusts():
    from stackopt.methods.gradient.method import GradientMethod, Options
    from stackopt.methods.gradient.steps import AdamStep
    opts = Options(**{**GradientMethod.CONFIG().value(), "optimizer": "sgd", "lr": 1.0})
    # a step of 1 cannot be followed warm even at a quarter: the branch re-adjusts there
    prob, al = _StubProblem(reach=0.1), _StubLagrangian()
    done = AdamStep(prob, opts).take(al, _Point([0.0]), np.array([-1.0]))
    assert done.point.p[0] == 0.25 and done.halvings == 3 and done.jumps == 1
    assert prob.calls == ["warm", "warm", "warm", "cold"]
    # a step within reach is taken whole, warm
    prob, al = _StubProblem(reach=2.0), _StubLagrangian()
    done = AdamStep(prob, opts).take(al, _Point([0.0]), np.array([-1.0]))
    assert done.point.p[0] == 1.0 and done.halvings == 0 and prob.calls == ["warm"]


# --------------------------------------------------------- kinks
class _KinkMerit:
    """``L(p) = 10 |p0| + (p1 - 3)^2`` with the one-sided gradient of ``|p0|`` (its sign):
    the merit of a strategy whose first variable sits on a kink."""

    scale = np.ones(2)
    t = 0

    def value(self, pt):
        return float(10 * abs(pt.p[0]) + (pt.p[1] - 3.0) ** 2)

    def grad(self, pt):
        return np.array([10 * np.sign(pt.p[0]), 2 * (pt.p[1] - 3.0)])

    def project(self, y, metric=None):
        return np.clip(y, -10, 10)

    def out_of_time(self):
        return False


def test_a_collapsed_step_length_is_taken_as_a_kink():
    """Steps zigzagging across a kink shrink the Barzilai-Borwein length towards its safeguard
    while the non-monotone search (a larger value among its references) still accepts
    them: at ALPHA_MIN the variables are probed, the one on the kink is held, and the
    step starts afresh on the others instead of moving by 1e-12."""
    from stackopt.methods.gradient.method import GradientMethod, Options
    from stackopt.methods.gradient.steps import ALPHA_MIN, SpgStep
    opts = Options(**GradientMethod.CONFIG().value())
    prob, al = _StubProblem(reach=np.inf), _KinkMerit()
    prob.k.n_p = 2
    step, start = SpgStep(prob, opts), _Point([1e-9, 0.0])
    step.alpha = ALPHA_MIN
    step.refs.append(al.value(start) + 1.0)  # an earlier, larger value of the zigzag
    done = step.take(al, start, al.grad(start))
    assert list(step.held) == [True, False]
    assert done.point.p[0] == start.p[0] and done.point.p[1] - start.p[1] > 1e-3


def test_cyber_reference_instance_3_does_not_stall_on_its_kinks():
    """Cyber insurance, reference instance 3 at risk aversion 0.5: the compensations end on
    the kinks of ``|L_i - I_i|``. The steps used to zigzag there at lengths of 1e-12 (never
    failing, so never probed) until one landed on a kink, where the gradient is not defined
    and the run ended not_converged at the best feasible earlier strategy (65.3)."""
    game = build_game("cyber", 0, reference_seed=3, risk_aversion=0.5)
    r = solve(game, "gradient", 0)
    assert r.status is Status.CONVERGED, r.message
    assert r.leader_objective > 170.0
    assert r.constraint_violation <= 1e-6


def test_adam_circling_between_two_points_hands_over_to_the_spectral_step():
    """Shimizu-Aiyoshi (1981): from step 373 Adam's inner solves alternate between two
    points (leader objective 95.4 and 103.6, the optimum 100 between them on the kink of the
    active leader constraint); each lowers L at its multipliers and travels, so the rule on
    single inner solves never saw a stall, and the run circled until the last three tenths
    of its budget (spectral steps from step 3573 of 5000, 3590 steps in all). Two inner
    solves that together return where they began now count as idle."""
    r = solve(build_game("library", problem="shimizu_aiyoshi1981"), "gradient", seed=0)
    assert r.status is Status.CONVERGED, r.message
    assert r.leader_objective == pytest.approx(100.0, rel=1e-6)
    assert "spg from step" in r.message
    switched = int(r.message.split("spg from step ")[1].split(")")[0])
    assert switched < 1500, r.message
    assert len(r.history) < 1500


def test_a_costly_readjustment_is_refused_by_the_spectral_step():
    """Cyber insurance, 10 customers, risk aversion 0.1, seed 5: after the step restarted on
    a kink, a long step lost the followers' branch and the equilibrium re-adjusted there
    cost the leader 178 (31.6 -> -146.5); the spectral step took it regardless, and the run
    ended at 1.40. Such a jump (a loss above JUMP_LOSS of the objective's magnitude, its
    merit above the search's reference) is now a failed search, as Adam refuses it. At the
    strategy kept the followers reach 31.6 at nine draws in ten and -153.0 at the tenth: the
    expectation scored is 13.1. The same code takes another path on another machine (AMD EPYC,
    AVX2: the computed values differ there in their last bits), keeping 30.3, scored 30.3; either
    is far above the 1.40 of the jump taken."""
    game = build_game("cyber", 5, customers=10, risk_aversion=0.1)
    r = solve(game, "gradient", 5)
    assert r.claimed_objective > 25.0 and r.leader_objective > 10.0, r.message
    assert r.constraint_violation <= 1e-6
