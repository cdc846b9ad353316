"""The Ipopt adapter on problems with known optima, and its failure paths."""
import numpy as np
import pyomo.environ as pyo
import pytest

from stackopt.core import Status
from stackopt.solvers import NlpProblem, solve_nlp


def hs071():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(4), bounds=(1, 5), initialize={0: 1, 1: 5, 2: 5, 3: 1})
    x = m.x
    m.obj = pyo.Objective(expr=x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2])
    m.prod = pyo.Constraint(expr=x[0] * x[1] * x[2] * x[3] >= 25)
    m.norm = pyo.Constraint(expr=sum(x[i] ** 2 for i in range(4)) == 40)
    return m


def test_hs071_known_optimum():
    m = hs071()
    res = solve_nlp(m)
    assert res.status is Status.CONVERGED
    assert res.objective == pytest.approx(17.0140173, rel=1e-7)
    expected = [1.0, 4.74299963, 3.82114998, 1.37940829]
    assert [res.x[m.x[i]] for i in range(4)] == pytest.approx(expected, rel=1e-6)
    assert res.iterations > 0
    assert res.constraint_violation < 1e-6
    # not written back unless asked
    assert m.x[1].value == 5
    assert res.duals[m.norm] != 0.0


def test_limited_memory_hessian_option():
    m = hs071()
    prob = NlpProblem(m, exact_hessian=False)
    res = prob.solve()
    assert res.status is Status.CONVERGED
    assert res.objective == pytest.approx(17.0140173, rel=1e-6)


def test_load_solution_writes_back():
    m = hs071()
    solve_nlp(m, load_solution=True)
    assert pyo.value(m.obj) == pytest.approx(17.0140173, rel=1e-7)


def test_rosenbrock_maximize_sense_and_nonpolynomial():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=-1.2)
    m.y = pyo.Var(initialize=1.0)
    # maximise the negated Rosenbrock function: optimum 0 at (1, 1)
    m.obj = pyo.Objective(expr=-(100 * (m.y - m.x ** 2) ** 2 + (1 - m.x) ** 2), sense=pyo.maximize)
    res = solve_nlp(m)
    assert res.status is Status.CONVERGED
    assert res.x[m.x] == pytest.approx(1.0, abs=1e-6)
    assert res.x[m.y] == pytest.approx(1.0, abs=1e-6)
    assert res.objective == pytest.approx(0.0, abs=1e-10)

    # exp/log: min exp(x) - log(y) + (x-1)^2 s.t. y <= 2 -> y = 2, exp(x) + 2(x-1) = 0
    m2 = pyo.ConcreteModel()
    m2.x = pyo.Var(initialize=0.0)
    m2.y = pyo.Var(bounds=(0.1, 2), initialize=1.0)
    m2.obj = pyo.Objective(expr=pyo.exp(m2.x) - pyo.log(m2.y) + (m2.x - 1) ** 2)
    res2 = solve_nlp(m2)
    xs = res2.x[m2.x]
    assert res2.x[m2.y] == pytest.approx(2.0, abs=1e-7)
    assert np.exp(xs) + 2 * (xs - 1) == pytest.approx(0.0, abs=1e-7)


def test_constrained_qp_with_ranged_constraint_and_duals():
    # min (x-3)^2 + (y-2)^2  s.t. 0 <= x + y <= 1 (ranged), x - y == 0.2 ; optimum x=0.6, y=0.4
    m = pyo.ConcreteModel()
    m.x = pyo.Var()
    m.y = pyo.Var()
    m.obj = pyo.Objective(expr=(m.x - 3) ** 2 + (m.y - 2) ** 2)
    m.r = pyo.Constraint(expr=pyo.inequality(0, m.x + m.y, 1))
    m.e = pyo.Constraint(expr=m.x - m.y == 0.2)
    res = solve_nlp(m)
    assert res.status is Status.CONVERGED
    assert res.x[m.x] == pytest.approx(0.6, abs=1e-7)
    assert res.x[m.y] == pytest.approx(0.4, abs=1e-7)
    assert res.objective == pytest.approx(2.4 ** 2 + 1.6 ** 2, rel=1e-8)
    # stationarity: grad f + J^T y = 0 with Ipopt's sign convention
    gx, gy = 2 * (0.6 - 3), 2 * (0.4 - 2)
    yr, ye = res.duals[m.r], res.duals[m.e]
    assert gx + yr + ye == pytest.approx(0.0, abs=1e-6)
    assert gy + yr - ye == pytest.approx(0.0, abs=1e-6)


def test_fixed_variable_is_a_constant_and_block_input():
    m = pyo.ConcreteModel()
    m.a = pyo.Var(initialize=2.0)
    m.a.fix()
    m.b = pyo.Block()
    m.b.x = pyo.Var(bounds=(0, None))
    m.b.obj = pyo.Objective(expr=(m.b.x - m.a) ** 2 + m.b.x * m.a)
    prob = NlpProblem(m.b)
    assert prob.variables == [m.b.x]
    res = prob.solve()
    assert res.x[m.b.x] == pytest.approx(1.0, abs=1e-7)  # 2(x-2) + 2 = 0


def test_mutable_param_bound_is_reread_between_solves():
    m = pyo.ConcreteModel()
    m.eps = pyo.Param(mutable=True, initialize=1.0)
    m.x = pyo.Var(initialize=0.0)
    m.obj = pyo.Objective(expr=-m.x)
    m.c = pyo.Constraint(expr=m.x ** 2 <= m.eps)
    prob = NlpProblem(m)
    r1 = prob.solve()
    m.eps = 4.0
    r2 = prob.solve(warm_start=r1)
    assert r1.x[m.x] == pytest.approx(1.0, abs=1e-7)
    assert r2.x[m.x] == pytest.approx(2.0, abs=1e-7)


def test_infeasible_problem_gives_infeasible_status():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=0.5)
    m.obj = pyo.Objective(expr=m.x ** 2)
    m.c1 = pyo.Constraint(expr=m.x ** 2 <= 1)
    m.c2 = pyo.Constraint(expr=m.x >= 2)
    res = solve_nlp(m)
    assert res.status is Status.INFEASIBLE
    assert res.constraint_violation > 0.5


def test_time_limit_gives_time_limit_status():
    n = 300
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(n), initialize=-1.2)
    m.obj = pyo.Objective(expr=sum(100 * (m.x[i + 1] - m.x[i] ** 2) ** 2 + (1 - m.x[i]) ** 2
                                   for i in range(n - 1)))
    res = solve_nlp(m, time_limit=1e-4)
    assert res.status is Status.TIME_LIMIT
    assert res.message.startswith("Maximum_WallTime_Exceeded")
    res_iter = solve_nlp(m, options={"max_iter": 2})
    assert res_iter.status is Status.MAX_ITERATIONS


def test_bad_input_raises_value_error():
    m = pyo.ConcreteModel()
    m.x = pyo.Var()
    with pytest.raises(ValueError, match="exactly one active objective, found 0"):
        NlpProblem(m)
    m.o = pyo.Objective(expr=m.x ** 2)
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        solve_nlp(m, time_limit=0)
    with pytest.raises(ValueError, match="warm_start must be a mapping"):
        solve_nlp(m, warm_start=3)
    with pytest.raises(ValueError, match="Ipopt option 'no_such_option'"):
        solve_nlp(m, options={"no_such_option": 1})


def test_more_bad_input():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=1.0)
    m.x.fix()
    m.o = pyo.Objective(expr=m.x ** 2)
    with pytest.raises(ValueError, match="has no unfixed variables"):
        NlpProblem(m)
    m.x.unfix()
    with pytest.raises(ValueError, match=r"warm_start array must have shape \(1,\), got \(2,\)"):
        solve_nlp(m, warm_start=np.zeros(2))
    with pytest.raises(ValueError, match="must be a Pyomo ConcreteModel or Block"):
        NlpProblem("model")
