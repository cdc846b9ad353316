"""Compiled evaluators agree with Pyomo's own values and finite differences."""
import numpy as np
import pyomo.environ as pyo
import pytest

from stackopt.expr import compile_exprs, compile_jacobian


@pytest.fixture
def model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(4), initialize=lambda _, i: 0.3 + 0.2 * i)
    m.q = pyo.Param(initialize=2.5, mutable=True)
    m.z = pyo.Var(initialize=1.7)
    m.z.fix()
    m.shared = pyo.Expression(expr=pyo.exp(m.x[0] - m.x[1]) + m.x[2] * m.x[3])
    return m


def exprs(m):
    x = m.x
    return [
        x[0] * x[1] ** 3 - 2 * x[2] / (1 + x[3] ** 2),
        pyo.log(x[0] + x[1]) * pyo.sqrt(x[2]) + m.q * x[3] * m.z,
        1 / (1 + pyo.exp(-(x[0] + 2 * x[1] - x[3]))) * m.shared,
        abs(x[0] - 2) * m.shared ** 2 + x[1] ** 2.5 + pyo.sin(x[2]) * pyo.cos(x[3]),
        (x[0] + x[1] + x[2] + x[3]) ** 3 * (x[0] - x[1]) ** 2,
        x[0] ** x[1],
        7.0,
    ]


def test_values_match_pyomo(model):
    es = exprs(model)
    xs = list(model.x.values())
    prog = compile_exprs(es, xs)
    rng = np.random.default_rng(0)
    for _ in range(5):
        vals = 0.2 + rng.random(4)
        for v, val in zip(xs, vals):
            v.set_value(val)
        np.testing.assert_allclose(prog(vals), [pyo.value(e) for e in es], rtol=1e-12, atol=1e-12)


def test_jacobian_matches_finite_differences(model):
    es = exprs(model)
    xs = list(model.x.values())
    prog = compile_exprs(es, xs)
    jac = compile_jacobian(es, xs)
    vals = np.array([0.4, 0.7, 0.9, 1.3])
    J = jac.dense(vals)
    h = 1e-6
    for j in range(4):
        e = np.zeros(4)
        e[j] = h
        np.testing.assert_allclose(J[:, j], (prog(vals + e) - prog(vals - e)) / (2 * h), rtol=1e-6, atol=1e-7)
    assert not np.any(jac.rows == 6)  # the constant has no structural nonzeros


def test_unknown_variable_is_named(model):
    with pytest.raises(ValueError, match=r"variable 'x\[3\]' is not among the variables"):
        compile_exprs([model.x[0] * model.x[3]], [model.x[0]])


def test_unsupported_expression():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=1.0)
    with pytest.raises(ValueError, match="unsupported expression type"):
        compile_exprs([pyo.Expr_if(m.x >= 0, m.x, -m.x)], [m.x])


def test_function_pyomo_cannot_differentiate():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=1.0)
    with pytest.raises(ValueError, match="Pyomo cannot differentiate the expression tanh"):
        compile_jacobian([pyo.tanh(m.x)], [m.x])
