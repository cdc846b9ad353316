"""The MPEC methods give the same answer whatever the units of the leader's objective, the
leader's constraints and the followers' objectives (the same equilibria and optimum): their
single-level model is written in its own units (``stackopt.methods.mpec.units``)."""
import numpy as np
import pyomo.environ as pyo
import pytest
from games import make_duopoly, scaled

from stackopt import Status, solve
from stackopt.methods.mpec import build_single_level
from stackopt.methods.mpec.units import Units
from stackopt.models import build_game

FACTORS = [1e-9, 1e9]
LIMIT = 60.0  # a safety net: before, SCIP ran for over nine minutes on one scaled gnash19
WHAT = ["leader", "cons", "followers"]
METHODS = {  # id -> (method, options): the two presets and a third mode through ``mpec``
    "mpec-ipopt": ("mpec-ipopt", {}),
    "mpec-scip": ("mpec-scip", {}),
    "mpec-smoothing": ("mpec", {"mode": "smoothing"}),
}


def _strategy(r):
    return np.array(list(r.leader_values.values()))


def _same(r, ref, factor):
    """``r`` (a problem with the leader's objective multiplied by ``factor``) answers as ``ref``."""
    assert r.status is ref.status, r.message
    np.testing.assert_allclose(_strategy(r), _strategy(ref), rtol=1e-5, atol=1e-7)
    assert r.leader_objective / factor == pytest.approx(ref.leader_objective, rel=1e-5, abs=1e-12)
    # what the method claims is in the game's units too
    assert r.claimed_objective / factor == pytest.approx(ref.claimed_objective, rel=1e-5, abs=1e-12)


@pytest.fixture(scope="module")
def references():
    """Each method's answer on the unscaled problem, solved once per module."""
    out = {}

    def ref(key, build):
        if key not in out:
            method, options = METHODS[key[0]]
            out[key] = solve(build(), method, seed=0, time_limit=LIMIT, **options)
        return out[key]
    return ref


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("what", WHAT)
@pytest.mark.parametrize("method", list(METHODS))
def test_the_duopoly_scaled_by_any_factor_gives_the_same_answer(method, what, factor, references):
    # the leader's constraint x1 + x2 <= 3 is active at the optimum pi = (4.875, 0), -0.625;
    # before, x 1e-9 gave pi = (4.24, 0.68) (leader), (6.5, 0) (constraint), (4.56, 5.07)
    # (followers) with mpec-ipopt and (0, 0) with mpec-scip (followers), all 'converged'/'optimal'
    ref = references((method, "duopoly"), make_duopoly)
    assert ref.status in (Status.CONVERGED, Status.OPTIMAL), ref.message
    assert ref.leader_values["pi[1]"] == pytest.approx(4.875, abs=1e-5)
    name, options = METHODS[method]
    r = solve(make_duopoly(**{what: factor}), name, seed=0, time_limit=LIMIT, **options)
    _same(r, ref, factor if what == "leader" else 1.0)


def _scaled_library(problem, **factors):
    return scaled(build_game("library", problem=problem), **factors)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("what", WHAT)
@pytest.mark.parametrize("method", ["mpec-ipopt", "mpec-scip"])
def test_a_library_problem_scaled_by_any_factor_gives_the_same_answer(method, what, factor,
                                                                     references):
    # gnash19: five Cournot followers with a nonlinear price, the leader's output floor a
    # leader constraint; optimum -6.11671 (published)
    ref = references((method, "gnash19"), lambda: _scaled_library("gnash19"))
    assert ref.leader_objective == pytest.approx(-6.11671, rel=1e-5)
    r = solve(_scaled_library("gnash19", **{what: factor}), method, seed=0, time_limit=LIMIT)
    _same(r, ref, factor if what == "leader" else 1.0)


def test_the_single_level_model_in_its_own_units():
    # duopoly at its start (pi = 0, x = 0): the leader's objective -(x1-3)^2 - (x2-1)^2 is -10
    # there (slopes 6 and 2 per unit of x), the constraint x1 + x2 - 3 is -3, the followers'
    # curvature in their own variables is at most 3
    plain = build_single_level(make_duopoly())
    assert plain.units == Units()
    sl = build_single_level(make_duopoly(), scale=True)
    assert sl.units.objective == pytest.approx(10.0)
    assert sl.units.constraints == pytest.approx((3.0,))
    assert sl.units.followers == pytest.approx(3.0)
    for what, c in [("leader", 1e9), ("cons", 1e-9), ("followers", 1e-9)]:
        other = build_single_level(make_duopoly(**{what: c}), scale=True)
        assert other.units.objective == pytest.approx(sl.units.objective * (c if what == "leader" else 1))
        assert other.units.constraints[0] == pytest.approx(sl.units.constraints[0] * (c if what == "cons" else 1))
        assert other.units.followers == pytest.approx(sl.units.followers * (c if what == "followers" else 1))
    # the same single-level model: every function at the same point has the same value
    for v in sl.model.component_data_objects(pyo.Var):
        v.set_value(1.5, skip_validation=True)
    for what, c in [("leader", 1e9), ("cons", 1e-9), ("followers", 1e-9)]:
        other = build_single_level(make_duopoly(**{what: c}), scale=True)
        for v in other.model.component_data_objects(pyo.Var):
            v.set_value(1.5, skip_validation=True)
        for mine, theirs in zip(sl.block.component_data_objects((pyo.Constraint, pyo.Objective), active=True),
                                other.block.component_data_objects((pyo.Constraint, pyo.Objective), active=True)):
            body = mine.expr if mine.ctype is pyo.Objective else mine.body
            body2 = theirs.expr if theirs.ctype is pyo.Objective else theirs.body
            assert pyo.value(body2) == pytest.approx(pyo.value(body), rel=1e-12), (what, mine.name)


def test_the_history_of_mpec_ipopt_is_in_the_games_units():
    ref = solve(make_duopoly(), "mpec-ipopt", seed=0, starts=1)
    big = solve(make_duopoly(leader=1e9), "mpec-ipopt", seed=0, starts=1)
    assert len(big.history) == len(ref.history)
    for a, b in zip(ref.history, big.history):
        assert b["objective"] == pytest.approx(1e9 * a["objective"], rel=1e-6)
    assert ref.history[-1]["objective"] == pytest.approx(-0.625, rel=1e-6)


@pytest.mark.parametrize("scaling", [{}, {"followers": 1e-9}, {"cons": 1e-9}, {"cons": 1e9}])
@pytest.mark.parametrize("method", ["mpec-ipopt", "mpec-scip"])
def test_an_impossible_leader_constraint_is_infeasible_in_any_units(method, scaling):
    # x1 + x2 = (4 pi1 + 1.5 pi2) / 6.5 >= 0 on the leader's box: x1 + x2 <= -1000 cannot hold
    # (before, mpec-ipopt said 'not_converged', blaming a follower, with the constraint x 1e9)
    r = solve(make_duopoly(cap=-1000.0, **scaling), method, seed=0, time_limit=LIMIT)
    assert r.status is Status.INFEASIBLE, r.message
    assert r.constraint_violation == pytest.approx(1000.0 * scaling.get("cons", 1.0), rel=1e-3)
