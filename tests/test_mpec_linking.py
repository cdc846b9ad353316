"""Linear arguments of singular terms as bounded auxiliary variables (stackopt.mpec.linking)."""
import pytest

from stackopt import Status
from stackopt.mpec.linking import link_linear_arguments, linear_form
from stackopt.mpec.minlp import Minlp
from stackopt.mpec.scip import solve_guarded


def _problem():
    p = Minlp()
    for name in ("x", "y", "z"):
        p.add_var(name, 0.0, 10.0)
    p.n_model = 3
    q = ("+", (("v", 0), ("v", 1)))
    # x / (x + y)  +  2 * (x + y)^(-1.5)  +  z^0.5  +  sqrt(x - z)
    p.objective = ("+", (("/", ("v", 0), q),
                         ("*", ("c", 2.0), ("^", ("+", (("v", 1), ("v", 0))), -1.5)),
                         ("^", ("v", 2), 0.5),
                         ("sqrt", ("lin", 0.0, (0, 2), (1.0, -1.0)))))
    # -2x - 2y <= -4, i.e. x + y >= 2; and 3 <= 0.5 x + 0.5 y + 1
    p.constraints.append(("floor", ("lin", 0.0, (0, 1), (-2.0, -2.0)), None, -4.0))
    p.constraints.append(("cap", ("lin", 1.0, (1, 0), (0.5, 0.5)), None, 3.0))
    return p


def test_linear_form_of_trees():
    assert linear_form(("+", (("v", 0), ("*", ("c", 2.0), ("v", 1)), ("c", 3.0)))) == (3.0, {0: 1.0, 1: 2.0})
    assert linear_form(("-", ("lin", 1.0, (0,), (4.0,)))) == (-1.0, {0: -4.0})
    assert linear_form(("*", ("v", 0), ("v", 1))) is None


def test_one_bounded_auxiliary_per_argument():
    p = _problem()
    assert link_linear_arguments(p) == 2  # x + y (shared by two terms) and x - z
    names = p.names[3:]
    assert names == ["linked_argument[0]", "linked_argument[1]"]
    # x + y: box [0, 20], floor >= 2, cap 0.5 (x + y) + 1 <= 3 gives <= 4
    assert (p.lb[3], p.ub[3]) == pytest.approx((2.0, 4.0))
    # x - z under sqrt: box [-10, 10], domain >= 0
    assert (p.lb[4], p.ub[4]) == pytest.approx((0.0, 10.0))
    div, power, root_z, sqrt = p.objective[1]
    assert div == ("/", ("v", 0), ("v", 3)) and power[2] == ("^", ("v", 3), -1.5)
    assert root_z == ("^", ("v", 2), 0.5)  # one variable: left alone
    assert sqrt == ("sqrt", ("v", 4))
    defs = {n: (t, lo, hi) for n, t, lo, hi in p.constraints if n.startswith("linked_argument_def")}
    assert defs["linked_argument_def[0]"] == (("lin", 0.0, (0, 1, 3), (1.0, 1.0, -1.0)), 0.0, 0.0)


def test_linked_problem_solves_to_the_same_optimum():
    # min (x + y)^(-1) s.t. x + y <= 4: optimum 1/4 on x + y = 4
    p = Minlp()
    p.add_var("x", 0.0, 10.0)
    p.add_var("y", 0.0, 10.0)
    p.n_model = 2
    p.objective = ("+", (("lin", 0.0, (), ()), ("^", ("+", (("v", 0), ("v", 1))), -1.0)))
    p.constraints.append(("cap", ("lin", 0.0, (0, 1), (1.0, 1.0)), None, 4.0))
    link_linear_arguments(p)
    assert p.ub[2] == pytest.approx(4.0)
    out = solve_guarded(p, time_limit=20, params={"limits/gap": 1e-9})
    assert out["status"] is Status.OPTIMAL
    assert out["objective"] == pytest.approx(0.25, rel=1e-6)
    assert sum(out["x"]) == pytest.approx(4.0, rel=1e-6)
