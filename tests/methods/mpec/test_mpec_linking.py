"""Linear arguments of singular terms as bounded auxiliary variables (stackopt.methods.mpec.linking)."""
import pyomo.environ as pyo
import pytest
from pyomo.core.expr.visitor import identify_variables
from pyomo.repn.standard_repn import generate_standard_repn

from stackopt import Status
from stackopt.methods.mpec.linking import link_linear_arguments
from stackopt.methods.mpec.solvers.scip import run_scip, write_nl


def _model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 10))
    m.y = pyo.Var(bounds=(0, 10))
    m.z = pyo.Var(bounds=(0, 10))
    # x / (x + y)  +  2 * (y + x)^(-1.5)  +  z^0.5  +  sqrt(x - z)
    m.obj = pyo.Objective(expr=m.x / (m.x + m.y) + 2 * (m.y + m.x) ** -1.5 + m.z ** 0.5
                          + pyo.sqrt(m.x - m.z))
    # -2x - 2y <= -4, i.e. x + y >= 2; and 0.5 y + 0.5 x + 1 <= 3
    m.floor = pyo.Constraint(expr=-2 * m.x - 2 * m.y <= -4)
    m.cap = pyo.Constraint(expr=0.5 * m.y + 0.5 * m.x + 1 <= 3)
    return m


def _vars(expr):
    return {v.name for v in identify_variables(expr)}


def test_one_bounded_auxiliary_per_argument():
    m = _model()
    assert link_linear_arguments(m) == 2  # x + y (shared by two terms) and x - z
    a = m.linked_arguments.argument
    assert [a[i].name for i in a] == ["linked_arguments.argument[0]", "linked_arguments.argument[1]"]
    # x + y: box [0, 20], floor >= 2, cap 0.5 (x + y) + 1 <= 3 gives <= 4
    assert (a[0].lb, a[0].ub) == pytest.approx((2.0, 4.0))
    # x - z under sqrt: box [-10, 10], domain >= 0
    assert (a[1].lb, a[1].ub) == pytest.approx((0.0, 10.0))
    div, power, root_z, sqrt = m.obj.expr.args
    assert div.args[0] is m.x and div.args[1] is a[0]
    assert _vars(power) == {a[0].name}
    assert _vars(root_z) == {"z"}  # one variable: left alone
    assert _vars(sqrt) == {a[1].name}
    d = m.linked_arguments.definition[1]
    assert d.equality and pyo.value(d.upper) == 0.0
    repn = generate_standard_repn(d.body)
    coefs = {v.name: c for v, c in zip(repn.linear_vars, repn.linear_coefs)}
    assert repn.is_linear() and repn.constant == 0
    assert coefs == {a[0].name: 1.0, "x": -1.0, "y": -1.0}
    # the linear constraints are untouched
    assert _vars(m.floor.body) == {"x", "y"}


def test_nonlinear_and_single_variable_arguments_are_left_alone():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(1, 2))
    m.y = pyo.Var(bounds=(1, 2))
    m.obj = pyo.Objective(expr=1 / (m.x * m.y) + pyo.log(2 * m.x + 1) + (m.x + m.y) ** 2)
    assert link_linear_arguments(m) == 0
    assert m.component("linked_arguments") is None


def test_linked_problem_solves_to_the_same_optimum(tmp_path):
    # min (x + y)^(-1) s.t. x + y <= 4: optimum 1/4 on x + y = 4
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 10))
    m.y = pyo.Var(bounds=(0, 10))
    m.obj = pyo.Objective(expr=(m.x + m.y) ** -1.0)
    m.cap = pyo.Constraint(expr=m.x + m.y <= 4)
    link_linear_arguments(m)
    assert m.linked_arguments.argument[0].ub == pytest.approx(4.0)
    columns = write_nl(m, str(tmp_path / "model.nl"))
    out = run_scip(str(tmp_path), len(columns), time_limit=20, params={"limits/gap": 1e-9}, grace=10)
    assert out["status"] is Status.OPTIMAL
    assert out["objective"] == pytest.approx(0.25, rel=1e-6)
    x = dict(zip((v.name for v in columns), out["x"]))
    assert x["x"] + x["y"] == pytest.approx(4.0, rel=1e-6)
