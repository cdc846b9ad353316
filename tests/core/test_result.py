"""What a user prints: a Result's short repr and summary, and check_gradient's labelled rows."""
import re

import numpy as np
import pyomo.environ as pyo
import pytest
from games import make_duopoly

from stackopt import GradientCheck, Result, StackelbergGame, Status, check_gradient, solve


def test_result_repr_is_one_short_line_without_the_history():
    history = [{"step": t, "leader_objective": float(t)} for t in range(500)]
    r = Result("duopoly", "gradient", Status.CONVERGED, leader_objective=-0.625, seed=3,
               constraint_violation=0.0, history=history, leader_values={"pi[1]": 4.875})
    text = repr(r)
    assert text == ("Result(game='duopoly', method='gradient', status='converged', "
                    "leader_objective=-0.625, constraint_violation=0, seed=3)")
    assert "step" not in str(r) and len(str(r).splitlines()) < 12
    assert "pi[1] = 4.875" in str(r)


def test_negative_zero_prints_as_zero():
    r = Result("g", "m", Status.CONVERGED, leader_objective=-0.0, constraint_violation=-0.0,
               leader_values={"p[1]": -0.0, "p[2]": 1.5}, follower_values={"f.x": -0.0})
    assert not re.search(r"-0(?![.\d])", repr(r) + str(r))
    assert str(r.leader_values) == "{'p[1]': 0.0, 'p[2]': 1.5}"
    assert str(r.follower_values) == "{'f.x': 0.0}" and str(r.leader_objective) == "0.0"
    assert r.leader_values["p[1]"] == 0.0  # the same number, only the sign of zero


def test_solved_result_prints_its_values():
    res = solve(make_duopoly(), "gradient")
    text = str(res)
    assert text.startswith("gradient on duopoly (seed 0): converged")
    assert "pi[2] = 0" in text and not re.search(r"-0(?![.\d])", text)  # pi[2] on its bound
    assert len(repr(res)) < 200


def _game_with_named_constraints():
    g = StackelbergGame("two budgets")
    m = g.model
    m.p = pyo.Var([1, 2], bounds=(0, 2), initialize=0.5)
    f = g.add_follower("f")
    f.x = pyo.Var([1, 2], bounds=(-5, 5), initialize=0)
    f.cost = pyo.Objective(expr=(f.x[1] - m.p[1]) ** 2 + (f.x[2] - m.p[1] * m.p[2]) ** 2)
    m.budget = pyo.Constraint(expr=f.x[1] + f.x[2] <= 3)
    m.floor = pyo.Constraint(expr=f.x[1] >= 0.1)
    g.set_leader(variables=[m.p], objective=-(f.x[1] - 1) ** 2 - (f.x[2] - 1) ** 2,
                 sense=pyo.maximize, constraints=[m.budget, m.floor])
    return g


def test_check_gradient_rows_are_labelled():
    r = check_gradient(_game_with_named_constraints(), seed=1)
    assert isinstance(r, GradientCheck)
    assert r.rows == ("objective", "budget", "floor") and r.columns == ("p[1]", "p[2]")
    assert r.implicit.shape == r.finite_difference.shape == (3, 2)
    assert r.max_relative_error == pytest.approx(r.relative_errors.max()) and r.max_relative_error < 1e-5
    assert r.worst in r.rows
    floor = r.row("floor")  # d(0.1 - x1)/dp = (-1, 0): the follower tracks p1
    np.testing.assert_allclose(floor["finite_difference"], [-1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(floor["implicit"], [-1.0, 0.0], atol=1e-9)
    text = str(r)
    assert "budget" in text and "floor" in text and "max relative error" in text
    assert repr(r).startswith("GradientCheck(max_relative_error=")
    d = r.to_dict()
    assert list(d["rows"]) == ["objective", "budget", "floor"] and d["columns"] == ["p[1]", "p[2]"]


def test_check_gradient_unknown_row():
    r = check_gradient(_game_with_named_constraints(), seed=1)
    with pytest.raises(ValueError, match=r"unknown row 'cost'; rows are \['objective', 'budget', 'floor'\]"):
        r.row("cost")


@pytest.mark.parametrize("method", ["gradient", "slsqp", "initial"])
def test_result_counts_the_oracles_cold_starts_of_method_and_scoring(method):
    r = solve(make_duopoly(), method, seed=0)
    work = r.oracle_solves
    assert set(work) == {"method", "scoring"}
    assert work["scoring"]["cold_starts"] >= 1  # fresh draws at the final strategy
    if method == "initial":
        assert work["method"] == {"cold_starts": 0, "warm_solves": 0, "clock_stops": 0}
    else:  # slsqp runs in a child process, whose solves are reported back
        assert work["method"]["cold_starts"] >= 1
        assert work["method"]["cold_starts"] + work["method"]["warm_solves"] >= 2
