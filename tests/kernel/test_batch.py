"""Batched evaluation and batched best responses: the same numbers as one point at a time;
the relaxation damps more where its map does not contract."""
import numpy as np
import pytest

from stackopt.kernel import kernel_of
from stackopt.models import build_game
from stackopt.oracle import EquilibriumOracle


@pytest.mark.parametrize("name,params", [
    ("nfg", dict(players=2, actions=6)), ("ssg", dict(targets=8, defenders=3, coverable=4)),
    ("cyber", dict(customers=6, risk_aversion=0.5))])
def test_batched_programs_equal_pointwise(name, params):
    k = kernel_of(build_game(name, seed=2, **params))
    X = np.random.default_rng(0).uniform(0.05, 0.9, size=(5, k.n_x))
    F = k.F_batch(X, k.p0)
    f = k.follower_objectives_batch(X, k.p0)
    J = k.Jx_batch(X, k.p0)
    for b, x in enumerate(X):
        np.testing.assert_allclose(F[b], k.F(x, k.p0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f[b], k.follower_objectives(x, k.p0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(J[b], k.Jx(x, k.p0)[k.Jx_rows, k.Jx_cols], rtol=1e-12, atol=1e-12)
    # each row its owner's entries only: the same bits as the full batch there, nan elsewhere
    owner = np.arange(X.shape[0]) % len(k.slices)
    own = k.x_owner[k.Jx_rows] == k.x_owner[k.Jx_cols]
    Fo, fo, Jo = k.F_own(X, k.p0, owner), k.follower_objective_own(X, k.p0, owner), k.Jx_own(X, k.p0, owner)
    for b, i in enumerate(owner):
        sl, at = k.slices[i], own & (k.x_owner[k.Jx_rows] == i)
        assert np.array_equal(Fo[b, sl], F[b, sl]) and fo[b] == f[b, i] and np.array_equal(Jo[b, at], J[b, at])
        assert np.isnan(np.delete(Fo[b], np.arange(sl.start, sl.stop))).all() and np.isnan(Jo[b, ~at]).all()


def test_batched_best_responses_match_ipopt_one_by_one():
    k = kernel_of(build_game("cyber", seed=3, customers=8, risk_aversion=0.5))
    o = EquilibriumOracle(k)
    x = np.random.default_rng(1).uniform(0.0, 3.0, size=k.n_x)
    owners = np.arange(len(k.slices))
    brs = o.responses.batch(owners, np.tile(x, (owners.size, 1)), k.p0)
    assert o.counters.best_responses == owners.size and all(b.ok for b in brs)
    for i, b in zip(owners, brs):
        ref = o.responses._ipopt(int(i), x, k.p0)  # a different solver on the same problem
        assert ref.ok
        np.testing.assert_allclose(b.x, ref.x, atol=1e-6)
        np.testing.assert_allclose(b.w, ref.w, atol=1e-5)


def test_relaxation_damps_more_where_the_damped_map_does_not_contract():
    # 25 customers: from this start the relaxation at d = 0.5 circles and Newton cannot
    # finish from its last point; halving d lets it settle
    k = kernel_of(build_game("cyber", seed=1, customers=25, risk_aversion=0.5))
    stuck = EquilibriumOracle(k, min_damping=0.5).solve(k.p0, rng=0)
    assert not stuck.converged
    eq = EquilibriumOracle(k).solve(k.p0, rng=0)
    assert eq.converged and eq.residual <= 1e-6


@pytest.mark.parametrize("name,params", [
    ("ssg", dict(targets=12, defenders=3, coverable=6)), ("nfg", dict(players=3, actions=4))])
def test_projected_gradient_responses_on_a_box_and_a_row_match_ipopt(name, params):
    k = kernel_of(build_game(name, seed=4, **params))
    o = EquilibriumOracle(k)
    rng = np.random.default_rng(2)
    for i in range(len(k.slices)):
        x = o.random_start(k.p0, rng)
        assert o.responses.rows.applies(i) and o.responses.rows.solve(i, x, k.p0) is not None
        br = o.responses.solve(i, x, k.p0)
        ref = o.responses._ipopt(i, x, k.p0)  # a different solver on the same problem
        assert br.ok and ref.ok
        np.testing.assert_allclose(br.x, ref.x, atol=1e-6)
        np.testing.assert_allclose(np.concatenate([br.nu, br.lam]), np.concatenate([ref.nu, ref.lam]), atol=1e-5)
        np.testing.assert_allclose(br.w, ref.w, atol=1e-5)
    assert o.counters.best_response_failures == 0
    # every follower from three points at once (runs that finish at different steps) as one by one
    X = np.array([o.random_start(k.p0, rng) for _ in range(3)])
    owners = np.repeat(np.arange(len(k.slices)), 3)
    rows = np.tile(X, (len(k.slices), 1))
    together = o.responses.rows.batch(owners, rows, k.p0)
    for i, x, res in zip(owners, rows, together):
        alone = o.responses.rows.solve(int(i), x, k.p0)
        assert res is not None and alone is not None
        for a, b in zip(res, alone):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_box_and_row_projections_of_many_blocks_satisfy_their_optimality_conditions():
    """Random blocks of different lengths (bounds missing, coefficients zero or negative,
    equalities and inequalities) projected at once: every result is in its box, meets its
    row, and ``u - x = tau a + w`` with ``w`` the bounds' normal cone (the projection's
    optimality conditions); a row no point of the box meets gives ``nan``; each block
    projected alone gives the same point."""
    from stackopt.oracle.boxrow import project_box_row, project_rows
    rng = np.random.default_rng(0)
    B, W = 400, 9
    n = rng.integers(1, W + 1, B)
    valid = np.arange(W)[None, :] < n[:, None]
    A = np.where(valid, rng.choice([0.0, 1.0, -1.0, 2.5, 0.3], (B, W)), 0.0)
    LO = np.where(rng.random((B, W)) < 0.2, -np.inf, rng.normal(size=(B, W)) - 1)
    HI = np.where(rng.random((B, W)) < 0.2, np.inf, np.where(np.isfinite(LO), LO, -1) + np.abs(rng.normal(size=(B, W))))
    LO, HI = np.where(valid, LO, 0.0), np.where(valid, HI, 0.0)
    U = np.where(valid, 3 * rng.normal(size=(B, W)), 0.0)
    b = rng.normal(size=B) * n
    eq = rng.random(B) < 0.6
    X, tau, Wn = project_rows(U, eq, A, b, LO, HI)
    with np.errstate(invalid="ignore"):
        lo_row = np.where(A > 0, A * LO, A * HI).sum(axis=1, where=A != 0)
        hi_row = np.where(A > 0, A * HI, A * LO).sum(axis=1, where=A != 0)
    reach = np.where(eq, (lo_row <= b + 1e-9) & (b - 1e-9 <= hi_row), lo_row <= b + 1e-9)
    assert np.array_equal(np.isfinite(tau), reach) and reach.sum() > 100 and (~reach).sum() > 10
    for r in np.flatnonzero(reach):
        v, x, a, w = valid[r], X[r, valid[r]], A[r, valid[r]], Wn[r, valid[r]]
        lo, hi = LO[r, v], HI[r, v]
        assert np.all(x >= lo) and np.all(x <= hi)
        assert (a @ x == pytest.approx(b[r], abs=1e-9)) if eq[r] else (a @ x <= b[r] + 1e-9)
        assert eq[r] or tau[r] >= 0 and (tau[r] == 0 or a @ x == pytest.approx(b[r], abs=1e-9))
        np.testing.assert_allclose(U[r, v] - x, tau[r] * a + w, atol=1e-9)
        assert np.all(w[x < hi] <= 1e-9) and np.all(w[x > lo] >= -1e-9)  # w > 0 only at hi, < 0 only at lo
        one, t1, _ = project_box_row(U[r, v], "eq" if eq[r] else "ineq", a, b[r], lo, hi)
        np.testing.assert_allclose(one, x, atol=1e-12)
