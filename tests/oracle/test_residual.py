"""The KKT residual: follower constraints nonlinear in the leader's variables, one active-set
rule, and the linear solvers as an argument."""
import numpy as np
import pyomo.environ as pyo
import pytest
import scipy.sparse as sp
from games import make_duopoly

import stackopt
from stackopt import StackelbergGame, check_gradient
from stackopt.kernel import kernel_of
from stackopt.models import build_game
from stackopt.oracle import EquilibriumOracle, equilibrium_jacobian, leader_gradients
from stackopt.oracle.linalg import DenseLU, IterativeSolver, SparseLU, make_solver

BARD3_OPTIMUM = -12.6787  # MacMPEC bard3 (Bard 1988, Convex two-level optimization)


def bard3():
    """MacMPEC bard3: the follower's first constraint is nonlinear in the leader's variables.

    Leader x >= 0 minimises -x1^2 - 3 x2 - 4 y1 + y2^2 s.t. x1^2 + 2 x2 <= 4; the follower
    y >= 0 minimises y1^2 - 5 y2 s.t. -x1^2 + 2 x1 - x2^2 + 2 y1 - y2 <= 3 and
    x2 + 3 y1 - 4 y2 >= 4. The box x1 in [0, 2] is implied by the leader's constraint;
    x2 in [0.6, 2] keeps the follower feasible (it is not for x2 < 0.55 near x1 = 1) and
    holds the optimum x = (0, 2), y = (1.875, 0.90625).
    """
    g = StackelbergGame("bard3")
    m = g.model
    m.x = pyo.Var([1, 2], initialize={1: 0.5, 2: 1.0})
    m.x[1].setlb(0.0)
    m.x[1].setub(2.0)
    m.x[2].setlb(0.6)
    m.x[2].setub(2.0)
    f = g.add_follower("lower")
    f.y = pyo.Var([1, 2], bounds=(0, None), initialize=1.0)
    f.obj = pyo.Objective(expr=f.y[1] ** 2 - 5 * f.y[2])
    f.c1 = pyo.Constraint(expr=-m.x[1] ** 2 + 2 * m.x[1] - m.x[2] ** 2 + 2 * f.y[1] - f.y[2] <= 3)
    f.c2 = pyo.Constraint(expr=m.x[2] + 3 * f.y[1] - 4 * f.y[2] >= 4)
    g.set_leader([m.x], -m.x[1] ** 2 - 3 * m.x[2] - 4 * f.y[1] + f.y[2] ** 2, sense=pyo.minimize,
                 constraints=[m.x[1] ** 2 + 2 * m.x[2] <= 4])
    return g


def test_constraint_nonlinear_in_the_leader_is_accepted_and_compiled():
    g = bard3()
    k = kernel_of(g)
    assert k.ineq.psi is not None and k.ineq.psi_rows.tolist() == [0]
    p = np.array([0.5, 1.3])
    # h(p) = 3 + x1^2 - 2 x1 + x2^2 for the first row, x2 - 4 for the second (>= flipped)
    np.testing.assert_allclose(k.ineq_rhs(p), [3 + 0.25 - 1 + 1.69, 1.3 - 4])
    dp = np.array([0.3, -0.7])
    jac = k.ineq.rhs_jacobian(p).toarray()
    np.testing.assert_allclose(jac, [[2 * 0.5 - 2, 2 * 1.3], [0.0, 1.0]])
    np.testing.assert_allclose(k.ineq.rhs_jvp(p, dp), jac @ dp)
    np.testing.assert_allclose(k.ineq.rhs_vjp(p, np.array([1.0, 2.0])), jac.T @ [1.0, 2.0])


def test_bard3_implicit_gradient_matches_finite_differences():
    r = check_gradient(bard3(), leader_values=[0.5, 1.0])
    assert r.equilibrium_residual <= 1e-10
    assert r.max_relative_error <= 1e-6


@pytest.mark.parametrize("method,options", [("gradient", dict(steps=1500, lr=0.02)), ("mpec-ipopt", {})])
def test_bard3_reaches_the_published_optimum(method, options):
    r = stackopt.solve(bard3(), method, seed=0, **options)
    assert r.status is stackopt.Status.CONVERGED
    assert r.leader_objective == pytest.approx(BARD3_OPTIMUM, abs=2e-3)
    assert r.constraint_violation <= 1e-5
    assert r.leader_values["x[2]"] == pytest.approx(2.0, abs=1e-3)


def _one_follower(constraint):
    g = StackelbergGame("probe")
    g.model.x = pyo.Var(bounds=(0, 4), initialize=1.0)
    f = g.add_follower("f")
    f.z = pyo.Var(bounds=(-5, 5), initialize=0.0)
    f.obj = pyo.Objective(expr=(f.z - 3) ** 2)
    f.c = pyo.Constraint(expr=constraint(g.model.x, f.z))
    g.set_leader([g.model.x], (g.model.x - 3.5) ** 2 + (f.z + 4) ** 2, sense=pyo.minimize)
    return g


@pytest.mark.parametrize("constraint,z,dz", [
    # MacMPEC dempe: z^2 <= x is nonlinear in the follower's own variable: z = sqrt(x) for x < 9
    (lambda x, z: z ** 2 <= x, np.sqrt(2.0), 0.5 / np.sqrt(2.0)),
    # a coefficient in the leader's variable: x z <= 1 binds with z = 1 / x
    (lambda x, z: x * z <= 1, 0.5, -0.25),
])
def test_constraint_nonlinear_in_the_followers_variables_is_a_smooth_row(constraint, z, dz):
    g = _one_follower(constraint)
    k = kernel_of(g)
    assert k.eq.n_rows == k.ineq.n_rows == 0 and k.smooth.names == ["f.c"]
    e = EquilibriumOracle(k, tol=1e-12).solve(np.array([2.0]), rng=0)
    assert e.converged and e.x[0] == pytest.approx(z, abs=1e-10)
    assert equilibrium_jacobian(k, e)[0, 0] == pytest.approx(dz, rel=1e-8)


def test_constraint_with_a_smooth_leader_right_hand_side_solves():
    # z <= sqrt(x): the follower wants z = 3, the constraint binds for x < 9
    g = _one_follower(lambda x, z: z - pyo.sqrt(x) <= 0)
    k = kernel_of(g)
    o = EquilibriumOracle(k, tol=1e-12)
    e = o.solve(np.array([2.0]), rng=0)
    assert e.converged and e.x[0] == pytest.approx(np.sqrt(2.0), abs=1e-10)
    assert equilibrium_jacobian(k, e)[0, 0] == pytest.approx(0.5 / np.sqrt(2.0), rel=1e-8)


# ------------------------------------------------------------------ active-set rule
def test_one_rule_for_newton_tangent_and_adjoint():
    from test_oracle import _box_game
    k = kernel_of(_box_game())
    o = EquilibriumOracle(k, tol=1e-12)
    e = o.solve(np.array([1.5, -1.0]), rng=0)
    lin = e.linearization()
    assert lin.active == o.system.classify(e.x, e.lam, e.w, e.p)
    assert lin.active.lower[2] and lin.active.rows[0]  # the bound and the capacity row of the test game
    # a weakly active pair (slack and multiplier both zero) counts inactive
    x, lam, w = e.x.copy(), e.lam.copy(), e.w.copy()
    w[2] = 0.0
    assert not o.system.classify(x, lam, w, e.p).lower[2]


# ------------------------------------------------------------------ linear solvers
def _system(n=60, seed=0):
    rng = np.random.default_rng(seed)
    K = sp.random(n, n, density=0.05, random_state=seed) + sp.diags(2 + rng.random(n))
    return sp.csc_matrix(K), rng.standard_normal(n)


@pytest.mark.parametrize("solver", [DenseLU(), SparseLU(), IterativeSolver()])
def test_solvers_agree_with_and_without_transpose(solver):
    K, b = _system()
    f = solver.factor(K if not solver.dense else K.toarray())
    dense = K.toarray()
    assert not f.singular
    np.testing.assert_allclose(f.solve(b), np.linalg.solve(dense, b), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(f.solve(b, trans=True), np.linalg.solve(dense.T, b), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("solver", [DenseLU(), SparseLU()])
def test_singular_matrix_is_flagged_and_answered_by_least_squares(solver):
    K = np.array([[1.0, 2.0], [2.0, 4.0]])
    f = solver.factor(K if solver.dense else sp.csc_matrix(K))
    assert f.singular
    z = f.solve(np.array([1.0, 2.0]))
    np.testing.assert_allclose(K @ z, [1.0, 2.0], atol=1e-10)


def test_solver_choice_and_bad_names():
    assert make_solver("auto", n=100, nnz=100).name == "dense"
    assert make_solver("auto", n=5000, nnz=20000).name == "sparse"
    with pytest.raises(ValueError, match="linear solver must be one of .*got 'cholesky'"):
        make_solver("cholesky")
    with pytest.raises(ValueError, match="linear_solver"):
        EquilibriumOracle(kernel_of(make_duopoly()), linear_solver="cholesky")


@pytest.mark.parametrize("kind", ["sparse", "iterative"])
def test_sparse_and_iterative_solvers_give_the_dense_gradient(kind):
    k = kernel_of(build_game("nfg", seed=1, players=3, actions=4, budget=1.0))
    p = np.random.default_rng(0).uniform(0, 1, k.n_p)
    e_d = EquilibriumOracle(k, tol=1e-12).solve(p, rng=0)
    e_s = EquilibriumOracle(k, tol=1e-12, linear_solver=kind).solve(p, rng=0)
    assert e_d.converged and e_s.converged
    np.testing.assert_allclose(e_s.x, e_d.x, atol=1e-10)
    assert not e_s.solver.dense and sp.issparse(e_s.linearization().J)
    w = np.array([1.0, 0.5])
    np.testing.assert_allclose(leader_gradients(k, e_s, w)[2], leader_gradients(k, e_d, w)[2],
                               rtol=1e-7, atol=1e-10)
