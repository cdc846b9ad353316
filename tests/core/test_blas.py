"""BLAS threads inside stackopt: one by default whatever the process has, the caller's count on
request, the process's own setting restored afterwards, concurrent solves sharing one count."""
import threading

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (SciPy's BLAS loaded, so that the controller below holds it)
from games import make_duopoly
from threadpoolctl import ThreadpoolController

import stackopt
from stackopt import Method, MethodOutput, Status, register_method, solve
from stackopt.game import initial_leader

CONTROLLER = ThreadpoolController()


def blas_counts() -> set:
    return {lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers
            if lib.prefix == "libscipy_openblas"}


SEEN: list = []
GATE = threading.Barrier(2, timeout=30)


@register_method("test-blas-probe")
class _Probe(Method):
    """Records the BLAS thread counts in force while it runs."""

    def run(self, game, config, seed, time_limit):
        SEEN.append(blas_counts())
        if seed == 7:  # two concurrent solves: both inside before either leaves
            GATE.wait()
            SEEN.append(blas_counts())
        return MethodOutput(leader=initial_leader(game), status=Status.CONVERGED)


@pytest.fixture
def two_threads():
    """The process's BLAS on two threads (as on a two-core machine by default), restored after."""
    with CONTROLLER.limit(limits=2, user_api="blas"):
        yield


def test_solve_runs_blas_on_one_thread_and_restores_the_process_setting(two_threads):
    SEEN.clear()
    solve(make_duopoly(), "test-blas-probe")
    assert SEEN == [{1}]
    assert blas_counts() == {2}  # the process's own setting is back


def test_the_caller_may_give_another_count_or_leave_blas_alone(two_threads):
    SEEN.clear()
    solve(make_duopoly(), "test-blas-probe", blas_threads=3)
    solve(make_duopoly(), "test-blas-probe", blas_threads=None)
    assert SEEN == [{3}, {2}]
    with stackopt.blas_threads(1):
        assert blas_counts() == {1}
    assert blas_counts() == {2}


def test_concurrent_solves_in_threads_share_one_count_until_the_last_ends(two_threads):
    SEEN.clear()
    threads = [threading.Thread(target=solve, args=(make_duopoly(), "test-blas-probe", 7)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert SEEN == [{1}] * 4  # each thread's view before and after the other entered
    assert blas_counts() == {2}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match=r"blas_threads must be a positive integer or None, got"):
        solve(make_duopoly(), "gradient", blas_threads=bad)
    with pytest.raises(ValueError, match=r"blas_threads must be a positive integer or None"):
        stackopt.evaluate(make_duopoly(), [1.0, 1.0], blas_threads=bad)


@pytest.mark.parametrize("blas_threads,same", [(1, True), (None, False)])
def test_results_do_not_depend_on_the_process_blas_setting(blas_threads, same):
    """The same solve with the process at one and at two BLAS threads gives the same bits;
    left to the process's setting (``None``), they differ (OpenBLAS's LU of 200 x 200 matrices)."""
    from stackopt.models import build_game

    game = build_game("nfg", seed=1, players=2, actions=100, budget=2.0)  # 200 x 200 KKT matrices
    out = []
    for n in (1, 2):
        with CONTROLLER.limit(limits=n, user_api="blas"):
            r = solve(game, "gradient", steps=2, blas_threads=blas_threads)
        out.append(np.array([r.leader_objective] + list(r.leader_values.values())))
    assert np.array_equal(out[0], out[1]) is same
