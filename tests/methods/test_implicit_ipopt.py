"""implicit-ipopt's own safeguards: a crawl of Ipopt's quasi-Newton steps, and a stall judged
on feasible iterates only."""
import numpy as np
import pytest

import stackopt
from stackopt.core import Status
from stackopt.methods.implicit_ipopt import CRAWL_STEPS, _crawl
from stackopt.models import build_game


def steps(lengths, objectives=None):
    lengths = np.asarray(lengths, dtype=float)
    objectives = -np.arange(lengths.size, dtype=float) if objectives is None else objectives
    return list(zip(objectives, lengths))


def test_crawl_is_descending_steps_that_do_not_shorten():
    n = CRAWL_STEPS + 1
    assert _crawl(steps(np.full(n, 5e-3)))  # the first step's length, again and again
    assert _crawl(steps(np.linspace(0.5, 0.9, n)))  # lengthening
    assert not _crawl(steps(0.5 ** np.arange(n)))  # converging: the steps shrink
    assert not _crawl(steps(np.full(n, 5e-3), np.r_[-np.arange(n - 1.0), 0.0]))  # one ascent
    assert not _crawl(steps(np.zeros(n)))  # no step


def cyber():
    """Three customers, risk aversion 0.2: the insurer's revenue is linear along the binding
    participation constraints up to full cover (compensation = loss, 50-100), far from the
    start at 0; the gradient method reaches about 20.1 here."""
    return build_game("cyber", 1, customers=3, risk_aversion=0.2)


def test_ipopt_does_not_crawl_to_a_far_optimum():
    """Where Ipopt's limited-memory BFGS skips its updates (no positive curvature along a
    linear path), its steps kept the first step's length (0.005 scale units): 500 iterations
    reached revenue 0.33. Restarted with longer steps, it climbs out of the crawl: to 19-20 on
    one machine, to 12.6 on another (AMD EPYC, AVX2), where the same code's values differ in
    their last bits and Ipopt takes another path that stalls earlier (the gradient method
    reaches 20.1 on both)."""
    res = stackopt.solve(cyber(), "implicit-ipopt", seed=1)
    assert res.leader_objective > 10.0, res.message
    assert res.constraint_violation <= 1e-6
    assert "restarted with longer steps after a crawl" in res.message


def test_a_stall_is_judged_on_feasible_iterates():
    """With long first steps Ipopt passes through infeasible points of high revenue (39.1, its
    participation constraints violated by 17.6) before it settles near 20; the stall rule
    compared objectives alone, stopped there and returned the infeasible point."""
    res = stackopt.solve(cyber(), "implicit-ipopt", seed=1, ipopt_options={"limited_memory_init_val": 0.1})
    assert res.constraint_violation <= 1e-6, res.message
    assert res.leader_objective > 19.0, res.message
    assert res.status in (Status.CONVERGED, Status.NOT_CONVERGED)


@pytest.mark.parametrize("bad", [0, -1])
def test_max_iter_is_checked(bad):
    with pytest.raises(ValueError, match="max_iter"):
        stackopt.solve(cyber(), "implicit-ipopt", max_iter=bad)
