"""Every method keeps its time limit, building and subprocesses included; a method stopped by
its limit says so; SCIP's process is killed and its memory bounded; bad Ipopt options are
refused before the run; a leader-dependent nonlinear right-hand side reaches SCIP."""
import os
import signal
import sys
import threading
import time

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import make_duopoly

from stackopt import StackelbergGame, Status, solve
from stackopt.api import scoring_grace
from stackopt.methods.blackbox.isolate import isolated
from stackopt.methods.mpec.solvers import scip as scip_mod
from stackopt.models import build_game

SLACK = 0.5  # seconds for the test's own process on a loaded machine


def abs_duopoly():
    """The README's duopoly with abs() of each firm's own quantity in its cost: Ipopt's best
    responses never settle at the kinks, so the oracle's relaxation runs until its deadline."""
    game = make_duopoly()
    f1, f2 = game.model.firm1, game.model.firm2
    f1.cost.expr = f1.cost.expr + 3 * abs(f1.x - 1)
    f2.cost.expr = f2.cost.expr + abs(f2.x)
    return game


def sqrt_rhs():
    """Leader r in [0, 4]; the follower maximises x (nearly) subject to x <= sqrt(r), so
    x = sqrt(r); the leader minimises (x - 1.5)^2 + 0.1 r: x = 1.5 / 1.1, r = x^2,
    objective (1.5 / 1.1 - 1.5)^2 + 0.1 (1.5 / 1.1)^2 = 0.204545..."""
    game = StackelbergGame("sqrt-rhs")
    m = game.model
    m.r = pyo.Var(bounds=(0, 4), initialize=1.0)
    f = game.add_follower("f")
    f.x = pyo.Var(bounds=(0, 10), initialize=0.0)
    f.obj = pyo.Objective(expr=-f.x + 0.005 * (f.x - 3) ** 2)
    f.cap = pyo.Constraint(expr=f.x <= pyo.sqrt(m.r))
    game.set_leader([m.r], (f.x - 1.5) ** 2 + 0.1 * m.r, sense=pyo.minimize)
    return game


def timed_solve(game, method, limit, **options):
    start = time.perf_counter()
    res = solve(game, method, seed=1, time_limit=limit, **options)
    return res, time.perf_counter() - start


# ---------------------------------------------------------------- each method's limit
def nfg():
    return build_game("nfg", seed=1, players=3, actions=10)


def ssg():
    return build_game("ssg", seed=1, targets=20)


# where a method may stop a process after its limit: by how much (its kill_grace)
OVERRUN = {"slsqp": 0.5, "trust-region": 0.5, "mpec-scip": 1.0}


@pytest.mark.parametrize("method,make,options", [
    ("gradient", abs_duopoly, {}),  # Ipopt's best responses ran past the oracle's deadline
    ("implicit-ipopt", abs_duopoly, {}),
    ("slsqp", nfg, {}),  # ~50 s without a limit (one compiled SLSQP call takes most of it)
    ("trust-region", nfg, {}),  # ~90 s: 3000 oracle calls per finite-difference gradient
    ("trust-region", nfg, {"isolate": False}),  # in-process: every call scipy makes checks (a
    # dense Jacobian made trust-constr factorise a 3001 x 6001 QR for 11 s past the limit)
    ("mpec-ipopt", ssg, {}),  # compiling the single-level NLP takes ~5 s
    ("mpec-scip", ssg, {}),  # SCIP's presolve grows for minutes without checking its limit
])
def test_every_method_returns_within_its_limit_plus_grace(method, make, options):
    limit = 2.0
    game = make()
    res, elapsed = timed_solve(game, method, limit, **options)
    assert res.status is Status.TIME_LIMIT, res.message
    assert res.wall_time_s <= limit + OVERRUN.get(method, 0.0) + SLACK, (res.wall_time_s, res.message)
    assert elapsed <= limit + scoring_grace(limit) + SLACK, (elapsed, res.message)
    assert res.leader_values


def test_oracle_call_on_a_nonsmooth_follower_keeps_its_own_limit():
    """The relaxation's Ipopt best responses get the time left: one oracle call on the abs()
    followers ended 0.35-1.2 s past limits of 0.5-2 s, now within a few hundredths."""
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle

    k = kernel_of(abs_duopoly())
    oracle = EquilibriumOracle(k, tol=1e-6, time_limit=1.0)
    start = time.perf_counter()
    eq = oracle.solve(k.p0, rng=np.random.default_rng([0, 0]))
    assert not eq.converged
    assert time.perf_counter() - start <= 1.0 + 0.3


def test_black_box_checks_its_deadline_at_every_call_cached_points_included():
    """scipy calls back at points already evaluated (the objective, then its gradient): a
    cached point past the deadline raises as a new one does."""
    from stackopt.leader import TimeUp
    from stackopt.methods import method_config
    from stackopt.methods.blackbox.method import _ScipyView

    game = build_game("nfg", seed=1, players=2, actions=3)
    box = _ScipyView(game, method_config("trust-region", {}), 0, time.perf_counter() + 60)
    p0 = box.kernel.p0.copy()
    first = box.value(p0)
    box.prob.deadline = time.perf_counter() - 1.0
    with pytest.raises(TimeUp):
        box.value(p0)
    box.prob.deadline = float("inf")
    assert box.value(p0) == first


def test_mpec_ipopt_stopped_while_compiling_says_so():
    res, elapsed = timed_solve(build_game("ssg", seed=1, targets=20), "mpec-ipopt", 1.0)
    assert res.status is Status.TIME_LIMIT
    assert "time limit reached while" in res.message
    assert elapsed <= 1.0 + scoring_grace(1.0) + SLACK


def test_implicit_ipopt_stopped_by_its_limit_says_time_limit():
    res, _ = timed_solve(build_game("ssg", seed=1, targets=20), "implicit-ipopt", 2.0)
    assert res.status is Status.TIME_LIMIT, res.message
    assert "User_Requested_Stop" not in res.message


# ---------------------------------------------------------------- SCIP's process
HANG = "import time; time.sleep(3600)"


def _hang(job, result):
    return [sys.executable, "-c", HANG]


def test_scip_process_that_ignores_its_limit_is_killed_within_the_grace(monkeypatch):
    """The process ignores SCIP's time limit (as SCIP's presolve does where it does not check
    it): the whole solve still ends within limit + grace, the process killed."""
    monkeypatch.setattr(scip_mod, "child_command", _hang)
    res, elapsed = timed_solve(sqrt_rhs(), "mpec-scip", 1.0)
    assert res.status is Status.TIME_LIMIT
    assert "killed" in res.message
    assert elapsed <= 1.0 + scoring_grace(1.0) + SLACK, elapsed


def test_scip_child_has_its_address_space_and_scip_its_memory_limit(tmp_path):
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 3), domain=pyo.Integers)
    m.obj = pyo.Objective(expr=(m.x - 1.4) ** 2)
    columns = scip_mod.write_nl(m, str(tmp_path / "model.nl"))
    out = scip_mod.run_scip(str(tmp_path), len(columns), 20.0, {"limits/memory": 700.0}, grace=1.0,
                            memory_limit=1000.0)
    assert out["status"] is Status.OPTIMAL
    assert out["x"] == pytest.approx([1.0])
    pytest.importorskip("resource")  # POSIX: the limit is set in the child
    assert out["address_space_limit"] == 1000 * 2 ** 20


def test_scip_memory_limit_is_an_option_passed_to_the_process(monkeypatch):
    seen = {}

    def spy(workdir, columns, time_limit, params, grace, memory_limit):
        seen.update(params=params, memory_limit=memory_limit, grace=grace)
        return dict(status=Status.TIME_LIMIT, message="spied")

    monkeypatch.setattr(scip_mod, "run_scip", spy)
    solve(sqrt_rhs(), "mpec-scip", time_limit=30, memory_limit=2048)
    assert seen["memory_limit"] == 2048
    assert seen["params"]["limits/memory"] == 2048 - scip_mod.HEADROOM_MB
    solve(sqrt_rhs(), "mpec-scip", time_limit=30)
    assert seen["memory_limit"] == scip_mod.DEFAULT_MEMORY_MB
    assert seen["grace"] == 1.0
    with pytest.raises(ValueError, match="option 'memory_limit' of method 'mpec-scip'"):
        solve(sqrt_rhs(), "mpec-scip", memory_limit=-1)


# ---------------------------------------------------------------- Ctrl-C
def test_keyboard_interrupt_stops_the_optimiser_child_at_once():
    """The parent waits in a poll that a signal interrupts: SIGINT raises KeyboardInterrupt
    there, the child (busy, as SLSQP in compiled code) is killed, nothing waits for it."""
    import multiprocessing as mp

    def task(report):
        report("best", None)
        time.sleep(3600)

    def interrupt():
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    before = {p.pid for p in mp.active_children()}
    timer = threading.Thread(target=interrupt)
    # Python's own Ctrl-C handler, even where the tests run with SIGINT ignored (a background job)
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            isolated(task, float("inf"), None, np.zeros(1))
    finally:
        timer.join()
        signal.signal(signal.SIGINT, saved)
    assert time.perf_counter() - start < 10
    assert not {p.pid for p in mp.active_children()} - before  # the child was killed and joined


def test_slsqp_without_a_time_limit_runs_in_the_child(monkeypatch):
    import stackopt.methods.blackbox.method as bb

    calls = []
    real = bb.isolated

    def spy(task, hard_deadline, *args, **kwargs):
        calls.append(hard_deadline)
        return real(task, hard_deadline, *args, **kwargs)

    monkeypatch.setattr(bb, "isolated", spy)
    res = solve(make_duopoly(), "slsqp")
    assert calls == [float("inf")]
    assert res.status is Status.CONVERGED


# ---------------------------------------------------------------- nonlinear right-hand sides
def test_sqrt_right_hand_side_is_solved_by_mpec_scip_as_by_the_others():
    expected = (1.5 / 1.1 - 1.5) ** 2 + 0.1 * (1.5 / 1.1) ** 2
    scip = solve(sqrt_rhs(), "mpec-scip", time_limit=60)
    assert scip.status is Status.OPTIMAL, scip.message
    assert scip.leader_objective == pytest.approx(expected, abs=1e-5)
    assert scip.leader_values["r"] == pytest.approx((1.5 / 1.1) ** 2, abs=1e-3)
    for method in ("implicit-ipopt", "mpec-ipopt"):
        other = solve(sqrt_rhs(), method, time_limit=60)
        assert other.status is Status.CONVERGED, other.message
        assert other.leader_objective == pytest.approx(scip.leader_objective, abs=1e-5)


# ---------------------------------------------------------------- Ipopt options
@pytest.mark.parametrize("method", ["implicit-ipopt", "mpec-ipopt", "mpec"])
def test_unknown_ipopt_option_is_refused_before_the_run(method):
    with pytest.raises(ValueError, match=r"option 'ipopt_options' of method '[a-z-]+': unknown "
                                         r"Ipopt option 'mu_inti' in ipopt_options; Ipopt's "
                                         r"options .* listed at https://"):
        solve(make_duopoly(), method, ipopt_options={"mu_inti": 0.1})
    with pytest.raises(ValueError, match=r"Ipopt refuses the value 'bogus' of option "
                                         r"'mu_strategy'.*monotone.*adaptive"):
        solve(make_duopoly(), method, ipopt_options={"mu_strategy": "bogus"})
