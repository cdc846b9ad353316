"""The compiled box-and-row projection (stackopt.oracle.boxrow_loop) against the NumPy path."""
import numpy as np
import pytest

from stackopt.oracle import boxrow
from stackopt.oracle.boxrow import compiled_projection, project_rows


def _blocks(rng, B, W, nan_share=0.0):
    """Padded blocks of lengths 1..W: bounds missing or equal, coefficients zero, negative or
    one, equalities and inequalities (some slack, some out of reach), inputs NaN at ``nan_share``."""
    n = rng.integers(1, W + 1, B)
    valid = np.arange(W)[None, :] < n[:, None]
    A = rng.choice([0.0, 1.0, -1.0, 2.5, 0.3, 1.0], (B, W)) * rng.uniform(0.5, 2.0, (B, W))
    A[rng.random((B, W)) < 0.3] = 1.0
    LO = np.where(rng.random((B, W)) < 0.1, -np.inf, rng.normal(size=(B, W)) - 1)
    width = np.abs(rng.normal(size=(B, W))) * (rng.random((B, W)) > 0.05)  # some boxes a point
    HI = np.where(rng.random((B, W)) < 0.1, np.inf, np.where(np.isfinite(LO), LO, -1) + width)
    U = 3 * rng.normal(size=(B, W))
    U[rng.random((B, W)) < nan_share] = np.nan
    A, LO, HI, U = (np.where(valid, M, 0.0) for M in (A, LO, HI, U))
    b = rng.normal(size=B) * n
    b[rng.random(B) < 0.05] = 0.0
    return U, rng.random(B) < 0.6, A, b, LO, HI


def _same(a, b):
    """Equal to the last bit, zeros' signs included (a NaN's sign is no value)."""
    nan = np.isnan(a)
    return (np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan], b[~nan])
            and np.array_equal(np.signbit(a[~nan]), np.signbit(b[~nan])))


@pytest.mark.parametrize("W", [1, 3, 8, 9, 50, 129, 300])
def test_the_compiled_projection_gives_numpys_values_to_the_last_bit(W):
    assert compiled_projection() is not None  # numba is a dependency
    rng = np.random.default_rng(W)
    for nan_share in (0.0, 0.02):
        args = _blocks(rng, 200, W, nan_share)
        with np.errstate(all="ignore"):
            plain = project_rows(*args)
        looped = project_rows(*args, compiled=True)
        assert np.isfinite(plain[1]).sum() > 20 and np.isnan(plain[1]).sum() > 0
        for a, b in zip(looped, plain):
            assert _same(a, b)


def test_the_compiled_projection_of_a_simplex_is_the_known_one():
    """The projection of (0.5, 0.2, -0.4) on the unit simplex is (0.65, 0.35, 0)."""
    X, tau, W = project_rows(np.array([[0.5, 0.2, -0.4]]), np.array([True]), np.ones((1, 3)),
                             np.array([1.0]), np.zeros((1, 3)), np.ones((1, 3)), compiled=True)
    np.testing.assert_allclose(X[0], [0.65, 0.35, 0.0], atol=1e-15)
    assert tau[0] == pytest.approx(-0.15) and W[0, 2] == pytest.approx(-0.25) and W[0, 0] == 0.0


def test_without_numba_the_numpy_path_projects(monkeypatch):
    rng = np.random.default_rng(1)
    args = _blocks(rng, 50, 7)
    with np.errstate(all="ignore"):
        plain = project_rows(*args)
    monkeypatch.setattr(boxrow, "compiled_projection", lambda: None)
    with np.errstate(all="ignore"):
        asked = project_rows(*args, compiled=True)
    for a, b in zip(asked, plain):
        assert _same(a, b)


def test_a_large_games_cold_start_is_the_same_with_the_compiled_projection(monkeypatch):
    """A security game whose programs are compiled loops projects with the compiled loop
    (gradient play, deviation searches' best responses): the equilibrium a cold start reaches
    and its work are those of the NumPy path, to the last bit."""
    from stackopt.kernel import kernel_of
    from stackopt.models import build_game
    from stackopt.oracle import EquilibriumOracle

    k = kernel_of(build_game("ssg", seed=1, targets=60, defenders=5, coverable=30, resources=6.0))
    assert k.uses_loops
    calls = []
    loop = compiled_projection()
    monkeypatch.setattr(boxrow, "compiled_projection", lambda: calls.append(1) or loop)
    eq = EquilibriumOracle(k).solve(k.p0, rng=np.random.default_rng(7))
    assert eq.converged and calls and eq.counters.deviation_responses > 0
    monkeypatch.setattr(boxrow, "compiled_projection", lambda: None)
    plain = EquilibriumOracle(k).solve(k.p0, rng=np.random.default_rng(7))
    assert np.array_equal(eq.x, plain.x) and eq.residual == plain.residual
    assert eq.counters == plain.counters


def _interrupted_by_ctrl_c(call, seconds: float = 0.2, budget: float = 30.0):
    """Run ``call`` in a loop while a Ctrl-C (SIGINT to this process, Python's own handler)
    arrives after ``seconds``; the exception the loop ends with."""
    import os
    import signal
    import threading
    import time

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        end = time.perf_counter() + budget
        while time.perf_counter() < end:
            call()
    except BaseException as exc:  # what a caller sees: KeyboardInterrupt, or what hid it
        return exc
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    return None


def test_ctrl_c_inside_the_compiled_projection_is_a_keyboard_interrupt():
    """An interrupt taken as compiled code returns its arrays came out of Numba's dispatcher
    as ``SystemError: ... returned a result with an exception set``, which callers took for a
    failure: a Ctrl-C during a security game's solve let the command run on (exit 0) or end
    with a traceback, about one time in three. Each of ten interrupts is one now."""
    args = _blocks(np.random.default_rng(0), 20_000, 9)
    loop = compiled_projection()
    for k in range(10):
        exc = _interrupted_by_ctrl_c(lambda: loop(*args), seconds=0.05 + 0.02 * k)
        assert type(exc) is KeyboardInterrupt, repr(exc)
