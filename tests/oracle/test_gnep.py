"""Generalized followers: smooth constraints (nonlinear in the follower's own variables,
coefficients in the leader's, other followers' variables), shared constraints under each
equilibrium concept, through the kernel, the one KKT residual, Newton and the implicit gradient."""
import numpy as np
import pyomo.environ as pyo
import pytest
from games import circle, coupled

from stackopt import StackelbergGame, check_gradient
from stackopt.kernel import kernel_of
from stackopt.oracle import EquilibriumOracle, KKTResidual, equilibrium_jacobian, sensitivity
from stackopt.oracle.linalg import make_solver
from stackopt.oracle.newton import NewtonEngine


def _fd(fun, v, h=1e-6):
    cols = []
    for j in range(v.size):
        e = np.zeros(v.size)
        e[j] = h
        cols.append((fun(v + e) - fun(v - e)) / (2 * h))
    return np.column_stack(cols)


@pytest.mark.parametrize("concept", ["variational", "any"])
def test_smooth_rows_compile_values_and_every_derivative(concept):
    k = kernel_of(coupled(concept))
    sm = k.smooth
    assert k.eq.n_rows == k.ineq.n_rows == 0
    assert sm.names == ["a.disk", "b.budget", "b.room", "cap"]
    assert sm.n_slots == (4 if concept == "variational" else 5) and sm.n_eq == 0
    assert not sm.self_contained  # b.room uses a's variable
    rng = np.random.default_rng(0)
    x, p = rng.uniform(-1, 1, 4), np.array([1.3, 0.8])
    c = sm.values(x, p)
    u1, u2, y1, y2 = x
    np.testing.assert_allclose(c, [u1 ** 2 + u2 ** 2 - 0.64, 1.3 * y1 - 2, y2 + u1 - 3,
                                   u2 + y1 + y2 + 0.1 * u1 ** 2 - 2.83 - 0.64])
    Cfd = _fd(lambda z: sm.values(z, p), x)[sm.slot_row]
    np.testing.assert_allclose(sm.C(x, p, True), Cfd, atol=1e-8)
    np.testing.assert_allclose(sm.C(x, p, False).toarray(), Cfd, atol=1e-8)
    v = rng.uniform(-1, 1, 4)
    np.testing.assert_allclose(sm.C_dot(x, p, v), Cfd @ v, atol=1e-8)
    assert sm.dense_p  # a small game: the derivatives in p are arrays; CSR for large ones
    Cpfd = _fd(lambda q: sm.values(x, q), p)[sm.slot_row]
    np.testing.assert_allclose(sm.Cp(x, p), Cpfd, atol=1e-8)
    # B: each slot's gradient in its followers' variables only (b.room: b's y, not a's u1)
    B = sm.B(x, p, True)
    room = sm.names.index("b.room")
    np.testing.assert_allclose(B[sm.slot_row == room], [[0.0, 0.0, 0.0, 1.0]])
    sigma = rng.uniform(0.5, 1.5, sm.n_slots)
    np.testing.assert_allclose(sm.stationarity(x, p, sigma), B.T @ sigma)
    np.testing.assert_allclose(sm.hessian_x(x, p, sigma, True),
                               _fd(lambda z: sm.stationarity(z, p, sigma), x), atol=1e-7)
    Hpfd = _fd(lambda q: sm.stationarity(x, q, sigma), p)
    np.testing.assert_allclose(sm.hessian_p(x, p, sigma), Hpfd, atol=1e-7)
    sm.dense_p = False
    np.testing.assert_allclose(sm.Cp(x, p).toarray(), Cpfd, atol=1e-8)
    np.testing.assert_allclose(sm.hessian_p(x, p, sigma).toarray(), Hpfd, atol=1e-7)


def test_weighted_concept_scales_each_followers_multiplier():
    k = kernel_of(coupled("weighted", {"a": 2.0, "b": 0.5}))
    sm = k.smooth
    cap = sm.names.index("cap")
    (m,) = np.flatnonzero(sm.slot_row == cap)
    x, p = np.array([0.3, -0.2, 0.7, 0.1]), np.array([1.0, 1.0])
    np.testing.assert_allclose(sm.B(x, p, True)[m], [0.2 * 0.3 / 2.0, 1 / 2.0, 1 / 0.5, 1 / 0.5])


def test_kkt_matrix_is_the_reduced_residuals_jacobian():
    """With the active set fixed, the KKT matrix is the derivative of the reduced residual
    (stationarity on the free variables, the active rows) in (x_F, multipliers), and
    p_jvp its derivative in p: both checked against central differences."""
    g = coupled()
    k = kernel_of(g)
    sysm = KKTResidual(k)
    rng = np.random.default_rng(1)
    x, p = rng.uniform(-0.5, 0.5, 4), np.array([1.1, 1.4])
    nu = np.zeros(0)
    lam = rng.uniform(0.5, 1.0, k.n_ineq)
    c = k.smooth.slot_values(x, p)
    lam[[0, 2]] = -c[[0, 2]] + 1.0  # rows 0 and 2 held, the others slack
    lam[[1, 3]] = 0.0
    w = np.zeros(4)
    active = sysm.classify(x, lam, w, p)
    assert active.rows.tolist() == [True, False, True, False]
    for dense in (True, False):
        J = sysm.jacobian(x, p, dense, nu, lam)
        K = sysm.matrix(J, active, x, p)
        K = K if dense else K.toarray()

        def reduced(y, q=p):
            xx, ll = y[:4], lam.copy()
            ll[active.rows] = y[4:]
            stat = k.F(xx, q) + k.smooth.stationarity(xx, q, ll)
            return np.concatenate([stat, k.smooth.slot_values(xx, q)[active.rows]])

        y = np.concatenate([x, lam[active.rows]])
        np.testing.assert_allclose(K, _fd(reduced, y), atol=1e-7)
    lin = sysm.linearize(x, lam, w, p, make_solver("dense"), nu=nu)
    dp = np.array([0.3, -0.7])
    np.testing.assert_allclose(sysm.p_jvp(lin, dp), _fd(lambda q: reduced(y, q), p) @ dp, atol=1e-7)
    u = rng.standard_normal(K.shape[0])
    np.testing.assert_allclose(sysm.p_vjp(lin, u), u @ _fd(lambda q: reduced(y, q), p), atol=1e-7)


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_newton_solves_the_disk_in_closed_form(solver):
    """One follower: min (u1 - p)^2 + (u2 - 1)^2 on the unit disk: u = (p, 1) / |(p, 1)|."""
    g = StackelbergGame("disk")
    m = g.model
    m.p = pyo.Var(bounds=(0, 3), initialize=2.0)
    f = g.add_follower("f")
    f.u = pyo.Var([1, 2], bounds=(-5, 5), initialize=0)
    f.obj = pyo.Objective(expr=(f.u[1] - m.p) ** 2 + (f.u[2] - 1) ** 2)
    f.disk = pyo.Constraint(expr=f.u[1] ** 2 + f.u[2] ** 2 <= 1)
    g.set_leader([m.p], objective=f.u[1] + 2 * f.u[2])
    k = kernel_of(g)
    sysm = KKTResidual(k)
    res = NewtonEngine(sysm, make_solver(solver), 1e-12).solve(
        (np.array([0.3, 0.2]), np.zeros(0), np.zeros(1), np.zeros(2)), np.array([2.0]), np.inf, 50)
    assert res.converged
    np.testing.assert_allclose(res.z[0], np.array([2.0, 1.0]) / np.sqrt(5.0), atol=1e-12)
    np.testing.assert_allclose(res.z[2], [np.sqrt(5.0) - 1.0], atol=1e-12)  # 2(u - t) + 2 lam u = 0


@pytest.mark.parametrize("concept", ["variational", "weighted"])
def test_implicit_gradient_with_active_nonlinear_and_shared_constraints(concept):
    g = coupled(concept, {"a": 1.0, "b": 3.0} if concept == "weighted" else None)
    k = kernel_of(g)
    e = EquilibriumOracle(k, tol=1e-12).solve(np.array([1.0, 1.2]), rng=0)
    assert e.converged
    assert np.all(e.lam > 1e-3)  # every row active: the disk, the budget, the room, the cap
    assert not sensitivity(k, e).singular
    check = check_gradient(g, leader_values=[1.0, 1.2])
    assert check.max_relative_error <= 1e-6


def test_any_concept_has_a_singular_kkt_matrix_where_a_shared_constraint_binds():
    g = coupled("any")
    k = kernel_of(g)
    e = EquilibriumOracle(k, tol=1e-10).solve(np.array([1.0, 1.2]), rng=0)
    assert e.converged
    cap = np.flatnonzero(k.smooth.slot_row == k.smooth.names.index("cap"))
    assert np.all(k.smooth.slot_values(e.x, e.p)[cap] > -1e-8)  # the cap binds
    assert sensitivity(k, e).singular
    assert np.all(np.isfinite(equilibrium_jacobian(k, e)))  # least squares, flagged


# ------------------------------------------------------------------ declaring the game
def _pair(**kw):
    g = StackelbergGame("pair", **kw)
    m = g.model
    m.p = pyo.Var(bounds=(0, 1), initialize=0.0)
    a, b = g.add_follower("a"), g.add_follower("b")
    a.x = pyo.Var(bounds=(0, 10), initialize=0.0)
    b.x = pyo.Var(bounds=(0, 10), initialize=0.0)
    c = g.add_follower("c")
    c.x = pyo.Var(bounds=(0, 10), initialize=0.0)
    for f in (a, b, c):
        f.obj = pyo.Objective(expr=(f.x - 6) ** 2)
    g.set_leader([m.p], objective=a.x)
    return g, a, b, c


def test_shared_constraint_binds_the_followers_whose_variables_appear_or_those_named():
    g, a, b, c = _pair()
    comp = g.add_shared_constraint("cap", a.x + b.x <= 10 + g.model.p)
    assert g.model.cap is comp
    g.add_shared_constraint("cap2", a.x + 2 * b.x + c.x <= 30, followers=["a", "c"])
    s = g.structure()
    assert [(sc.name, sc.followers) for sc in s.shared] == [("cap", ("a", "b")), ("cap2", ("a", "c"))]
    e = stackopt_equilibrium(g)
    assert e.converged
    np.testing.assert_allclose([e.follower_values[n] for n in ("a.x", "b.x", "c.x")], [5, 5, 6], atol=1e-8)
    assert e.multipliers == pytest.approx({"cap": 2.0, "cap2": 0.0}, abs=1e-8)


def test_shared_constraint_input_is_checked():
    g, a, b, c = _pair()
    with pytest.raises(ValueError, match=r"shared constraint 'cap' names 'd', which is not a follower"):
        g.add_shared_constraint("cap", a.x + b.x <= 10, followers=["a", "d"])
    with pytest.raises(ValueError, match="must be a relation such as"):
        g.add_shared_constraint("cap", a.x + b.x)
    with pytest.raises(ValueError, match="shared constraint name 'p' is already used on the model"):
        g.add_shared_constraint("p", a.x + b.x <= 10)
    g.add_shared_constraint("cap", a.x + b.x <= 10, followers=["a", "c"])
    with pytest.raises(ValueError, match=r"the shared constraint 'cap' names follower 'c', whose variables "
                                         "do not appear in it"):
        g.structure()


def test_shared_constraint_without_followers_and_unowned_constraints_are_errors():
    g, a, b, c = _pair()
    g.add_shared_constraint("lead", g.model.p <= 1)
    with pytest.raises(ValueError, match="'lead' uses no follower's variables.*set_leader"):
        g.structure()
    g, a, b, c = _pair()
    g.model.extra = pyo.Constraint(expr=a.x + b.x <= 1)
    with pytest.raises(ValueError, match=r"constraint 'extra' belongs to no follower and is neither "
                                         r"shared nor declared to the leader.*add_shared_constraint"):
        g.structure()
    g.model.extra.deactivate()  # a deactivated constraint is no one's: fine
    g.structure()


def test_shared_concept_and_weights_are_checked():
    with pytest.raises(ValueError, match="shared must be one of"):
        StackelbergGame("g", shared="normalized")
    with pytest.raises(ValueError, match="shared='weighted' needs shared_weights"):
        StackelbergGame("g", shared="weighted")
    with pytest.raises(ValueError, match=r"shared_weights\['a'\] must be a finite number > 0, got -1"):
        StackelbergGame("g", shared="weighted", shared_weights={"a": -1})
    with pytest.raises(ValueError, match="with shared='any' pass none"):
        StackelbergGame("g", shared="any", shared_weights={"a": 1.0})
    g, a, b, c = _pair(shared="weighted", shared_weights={"a": 1.0, "z": 2.0})
    g.add_shared_constraint("cap", a.x + b.x <= 10)
    with pytest.raises(ValueError, match="shared_weights names 'z', which is not a follower"):
        g.structure()
    g.shared_weights = {"a": 1.0}
    with pytest.raises(ValueError, match="needs a weight for every follower a shared constraint binds.*'b'"):
        g.structure()


def test_weighted_equilibrium_is_rosens_normalized_one():
    """Both want x = 6 under x_a + x_b <= 10. Follower i's multiplier is s / r_i:
    2 (x_i - 6) + s / r_i = 0, so r_a (x_a - 6) = r_b (x_b - 6); with r = (1, 3) and the
    cap binding, x_a = 4.5, x_b = 5.5 and Rosen's common multiplier s = 3."""
    g, a, b, c = _pair(shared="weighted", shared_weights={"a": 1.0, "b": 3.0})
    g.add_shared_constraint("cap", a.x + b.x <= 10)
    e = stackopt_equilibrium(g)
    assert e.follower_values["a.x"] == pytest.approx(4.5, abs=1e-8)
    assert e.follower_values["b.x"] == pytest.approx(5.5, abs=1e-8)
    assert e.multipliers["cap"] == pytest.approx(3.0, abs=1e-8)


def stackopt_equilibrium(g, **kw):
    import stackopt
    return stackopt.equilibrium(g, **kw)


@pytest.mark.parametrize("cold_start", ["gradient-play", "relaxation", "auto"])
def test_every_cold_start_reaches_the_normalized_equilibrium(cold_start):
    """Newton from the start ('auto', the default here), projected gradient play on the
    joint set (the projection method of the variational inequality, weighted by Rosen's
    weights) and the followers' best responses all end at the same weighted equilibrium."""
    from stackopt.oracle.dynamics import joint_play_applies
    g, a, b, c = _pair(shared="weighted", shared_weights={"a": 1.0, "b": 3.0})
    g.add_shared_constraint("cap", a.x + b.x <= 10)
    k = kernel_of(g)
    assert joint_play_applies(k) and EquilibriumOracle(k).config.cold_start == "auto"
    e = EquilibriumOracle(k, cold_start=cold_start).solve(np.array([0.0]), rng=3)
    assert e.converged
    np.testing.assert_allclose(e.x, [4.5, 5.5, 6.0], atol=1e-8)
    np.testing.assert_allclose(e.multipliers()[1], [3.0], atol=1e-7)


def test_joint_play_does_not_apply_where_a_followers_row_uses_anothers_variables():
    from stackopt.oracle.dynamics import joint_play_applies
    k = kernel_of(coupled())  # b.room uses a.u[1]
    assert not joint_play_applies(k) and EquilibriumOracle(k).joint_play is None
    assert not joint_play_applies(kernel_of(coupled("any")))


def test_edits_of_shared_constraints_are_read_at_the_next_solve():
    """The model is the source of truth: a mutable Param in a shared constraint is re-read,
    a new expression or a deactivated shared constraint rebuilds."""
    g, a, b, c = _pair()
    g.model.level = pyo.Param(mutable=True, initialize=10.0)
    g.add_shared_constraint("cap", a.x + b.x <= g.model.level)
    first = stackopt_equilibrium(g)
    assert first.follower_values["a.x"] == pytest.approx(5.0, abs=1e-8)
    g.model.level = 8.0
    assert stackopt_equilibrium(g).follower_values["a.x"] == pytest.approx(4.0, abs=1e-8)
    g.model.cap.set_value(a.x + 3 * b.x <= 8.0)
    r = stackopt_equilibrium(g)  # 2 (x_a - 6) + s = 0, 2 (x_b - 6) + 3 s = 0, x_a + 3 x_b = 8: s = 3.2
    assert (r.follower_values["a.x"], r.follower_values["b.x"]) == pytest.approx((4.4, 1.2), abs=1e-8)
    assert r.multipliers["cap"] == pytest.approx(3.2, abs=1e-8)
    g.model.cap.deactivate()
    assert stackopt_equilibrium(g).follower_values["a.x"] == pytest.approx(6.0, abs=1e-8)


def test_a_nonlinear_equality_is_allowed_and_its_follower_searched():
    """A circle u1^2 + u2^2 = 1 (a non-convex set): the follower's KKT points are checked by a
    search for a better response, and the result names it; the nearest point to (2, 1)
    on the circle is the answer from every start."""
    g = circle()
    for seed in range(3):
        r = stackopt_equilibrium(g, seed=seed)
        assert r.converged
        assert (r.follower_values["f.u[1]"], r.follower_values["f.u[2]"]) == pytest.approx(
            (2 / np.sqrt(5), 1 / np.sqrt(5)), abs=1e-8)
    assert r.searched == {"f": "its set is not provably convex in its own variables (f.circle)"}
    assert "follower 'f' searched" in str(r)
