"""Compiled evaluators agree with Pyomo's own values and finite differences."""
import re
import sys

import numpy as np
import pyomo.environ as pyo
import pytest

from stackopt.expr import compile_exprs, compile_jacobian, derivatives, parameters_of
from stackopt.expr.diff import ABS_FLOOR


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


# ------------------------------------------------------------ parameters as inputs
def _set(xs, vals):
    for v, val in zip(xs, vals):
        v.set_value(val)


def test_mutable_param_is_read_at_call_time(model):
    es = exprs(model)
    xs = list(model.x.values())
    prog = compile_exprs(es, xs)
    jac = compile_jacobian(es, xs)
    vals = np.array([0.4, 0.7, 0.9, 1.3])
    _set(xs, vals)
    before = prog(vals).copy()
    for q in (-1.25, 0.0, 7.5):
        model.q.set_value(q)
        np.testing.assert_allclose(prog(vals), [pyo.value(e) for e in es], rtol=1e-12, atol=1e-12)
        # d/dx3 of q * x3 * z is q * z, read now
        assert jac.dense(vals)[1, 3] == pytest.approx(q * pyo.value(model.z) + 0.0, abs=1e-12)
    assert prog(vals)[1] != before[1]
    assert [p.name for p in prog.parameters] == ["q", "z"]


def test_fixed_variable_value_is_read_at_call_time(model):
    es = exprs(model)
    xs = list(model.x.values())
    prog = compile_exprs(es, xs)
    vals = np.array([0.4, 0.7, 0.9, 1.3])
    _set(xs, vals)
    for z in (-0.3, 4.0):
        model.z.fix(z)
        np.testing.assert_allclose(prog(vals), [pyo.value(e) for e in es], rtol=1e-12, atol=1e-12)


def test_parameter_values_passed_at_call_time(model):
    es = exprs(model)
    xs = list(model.x.values())
    par = parameters_of(es, xs)
    assert [p.name for p in par] == ["q", "z"]
    prog = compile_exprs(es, xs, parameters=par)
    jac = compile_jacobian(es, xs, parameters=par)
    vals = np.array([0.4, 0.7, 0.9, 1.3])
    _set(xs, vals)
    theta = par.values()
    np.testing.assert_allclose(theta, [2.5, 1.7])
    model.q.set_value(-4.0)  # the array passed wins over the model
    np.testing.assert_allclose(prog(vals, theta)[1], np.log(1.1) * np.sqrt(0.9) + 2.5 * 1.3 * 1.7)
    assert jac(vals, np.array([3.0, 2.0]))[list(zip(jac.rows, jac.cols)).index((1, 3))] == 6.0
    model.q.set_value(2.5)
    np.testing.assert_allclose(prog(vals, par.values()), [pyo.value(e) for e in es], rtol=1e-12)


def test_derivatives_are_not_taken_with_respect_to_parameters(model):
    e = model.q * model.x[0] * model.z + model.z ** 2
    d = derivatives(e, [model.x[0], model.z, model.q])
    assert list(d) == [0]
    jac = compile_jacobian([e], [model.x[0]])
    assert jac.shape == (1, 1) and list(jac.cols) == [0]


def test_immutable_params_and_numbers_stay_constants():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=2.0)
    m.c = pyo.Param(initialize=3.0)  # immutable
    m.p = pyo.Param([0, 1], initialize={0: 1.5, 1: 2.0}, mutable=True)
    e = m.c * m.x + 4.0 * m.x ** 2 + m.p[1] * m.x
    assert [p.name for p in parameters_of([e])] == ["p[1]"]
    prog = compile_exprs([e], [m.x])
    assert prog.n_params == 1
    np.testing.assert_allclose(prog(np.array([2.0])), [3 * 2 + 16 + 4])


def test_structure_does_not_depend_on_parameter_values():
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1], initialize=1.0)
    m.q = pyo.Param(initialize=0.0, mutable=True)
    jac = compile_jacobian([m.q * m.x[0] * m.x[1]], list(m.x.values()))
    assert sorted(jac.cols) == [0, 1]  # kept although q is 0 now
    np.testing.assert_allclose(jac.dense(np.array([2.0, 3.0])), [[0.0, 0.0]])
    m.q.set_value(2.0)
    np.testing.assert_allclose(jac.dense(np.array([2.0, 3.0])), [[6.0, 4.0]])


def test_parameter_and_variable_exponents():
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1], initialize=1.0)
    m.k = pyo.Param(initialize=2.0, mutable=True)
    es = [m.x[0] ** m.k, m.x[0] ** m.x[1], 2.0 ** m.x[1]]
    prog = compile_exprs(es, list(m.x.values()))
    m.x[0].set_value(-3.0)
    m.x[1].set_value(3.0)
    np.testing.assert_allclose(prog(np.array([-3.0, 3.0])), [9.0, -27.0, 8.0])
    m.k.set_value(3.0)
    assert prog(np.array([-3.0, 3.0]))[0] == -27.0


def test_parameter_missing_from_the_given_list_is_named(model):
    par = parameters_of([model.z * model.x[0]], list(model.x.values()))
    with pytest.raises(ValueError, match=r"mutable Param 'q' is not among the parameters"):
        compile_exprs([model.q * model.x[0]], list(model.x.values()), parameters=par)
    with pytest.raises(ValueError, match=r"'x\[0\]' is not a parameter"):
        par.add(model.x[0])


def test_parameter_without_a_finite_value_is_named(model):
    prog = compile_exprs([model.q * model.x[0]], [model.x[0]])
    model.q.set_value(float("nan"))
    with pytest.raises(ValueError, match=r"mutable Param 'q' has value nan"):
        prog(np.array([1.0]))
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=1.0)
    m.z = pyo.Var()
    m.z.fix()
    prog = compile_exprs([m.z * m.x], [m.x])
    with pytest.raises(ValueError, match=r"fixed variable 'z' has value None"):
        prog(np.array([1.0]))


def test_parameter_array_of_the_wrong_length(model):
    prog = compile_exprs([model.q * model.x[0]], [model.x[0]])
    with pytest.raises(ValueError, match=r"params must hold 1 values"):
        prog(np.array([1.0]), np.array([1.0, 2.0]))


def test_kernel_reads_a_changed_param_without_recompiling():
    from games import make_duopoly

    from stackopt.kernel import kernel_of

    g = make_duopoly()
    g.model.a = pyo.Param(initialize=1.0, mutable=True)
    f1 = g.model.firm1
    f1.cost.deactivate()
    f1.cost2 = pyo.Objective(expr=g.model.a * f1.x ** 2 + 0.5 * f1.x * g.model.firm2.x
                             - g.model.pi[1] * f1.x)
    k = kernel_of(g)
    x, p = np.array([1.0, 2.0]), np.array([0.5, 0.0])
    assert k.F(x, p)[0] == pytest.approx(2 * 1.0 + 0.5 * 2.0 - 0.5)
    g.model.a.set_value(3.0)
    assert kernel_of(g) is k
    assert k.F(x, p)[0] == pytest.approx(6 * 1.0 + 0.5 * 2.0 - 0.5)
    assert k.Jx(x, p)[0, 0] == pytest.approx(6.0)


# ------------------------------------------------------------ depth and preparation
def test_deep_expressions_compile_without_raising_the_recursion_limit():
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1], initialize=0.3)
    depth = 3 * sys.getrecursionlimit()
    e = m.x[0]
    for k in range(depth):
        e = pyo.sin(e) + 0.5 * m.x[k % 2]
    limit = sys.getrecursionlimit()
    prog = compile_exprs([e], list(m.x.values()))
    jac = compile_jacobian([e], list(m.x.values()))
    assert sys.getrecursionlimit() == limit
    vals = np.array([0.3, 0.7])
    ref = vals[0]
    for k in range(depth):
        ref = np.sin(ref) + 0.5 * vals[k % 2]
    assert prog(vals)[0] == pytest.approx(ref, rel=1e-12)
    h = 1e-6
    fd = [(prog(vals + h * np.eye(2)[j])[0] - prog(vals - h * np.eye(2)[j])[0]) / (2 * h) for j in range(2)]
    np.testing.assert_allclose(jac.dense(vals)[0], fd, rtol=1e-6)


@pytest.mark.parametrize("name, kw", [
    ("nfg", dict(players=2, actions=3)),
    ("ssg", dict(targets=6, defenders=2, coverable=3, resources=1.0)),
    ("cyber", dict(customers=3)),
])
def test_derivatives_are_the_expressions_reverse_sd_builds(name, kw):
    from pyomo.core.expr.calculus.diff_with_pyomo import reverse_sd

    from stackopt.models import build_game

    game = build_game(name, **kw)  # kept: its model names the variables in the expressions compared
    s = game.structure()
    allv = list(s.follower_variables) + list(s.leader_variables)
    exprs_ = [f.objective for f in s.followers] + [s.leader_objective] + [c.body for c in s.leader_constraints]
    compared = 0
    for e in exprs_:
        ref = reverse_sd(e)
        ours = derivatives(e, allv)
        for j, v in enumerate(allv):
            if v in ref and not (ref[v].__class__ in (int, float) and ref[v] == 0):
                # abs's derivative alone differs: x / (abs(x) + ABS_FLOOR), not x / abs(x)
                theirs = re.sub(r"/abs\(([^()]*)\)", rf"/(abs(\1) + {ABS_FLOOR:g})", str(ref[v]))
                assert str(ours[j]) == theirs
                compared += 1
            else:
                assert j not in ours
    assert compared > 10


@pytest.mark.parametrize("name, kw, shared", [
    ("ssg", dict(targets=6, defenders=2, coverable=3, resources=1.0), True),
    ("nfg", dict(players=2, actions=3), False),
    ("cyber", dict(customers=3), False),
])
def test_a_jacobians_rows_walked_once_give_the_derivatives_of_one_walk_each(name, kw, shared):
    """jacobian_entries learns each node of its rows' shared DAG once (diff.Walks): the
    derivatives are those of one plain walk per row, expression for expression; rows that
    share no node (a normal-form game's gradient entries) are soon walked plainly."""
    from stackopt.expr.diff import PLAIN_AFTER, Walks, _derivatives, jacobian_entries, positions
    from stackopt.models import build_game

    game = build_game(name, **kw)
    s = game.structure()
    allv = list(s.follower_variables) + list(s.leader_variables)
    rows = []
    for f in s.followers:
        d = derivatives(f.objective, f.variables)
        rows += [d.get(j, 0.0) for j in range(len(f.variables))]
    plain = [(i, j, str(d)) for i, e in enumerate(rows)
             for j, d in sorted(derivatives(e, allv).items())]
    assert [(i, j, str(d)) for i, j, d in jacobian_entries(rows, allv)] == plain
    assert len(plain) >= 12
    walks = Walks(positions(allv))
    for e in rows:
        _derivatives(e, walks.pos, walks)
    assert walks.shared is shared and walks.plain is (not shared)
    if not shared:
        assert walks.fresh == PLAIN_AFTER


def test_abs_derivative_is_zero_at_its_kink_and_pyomos_elsewhere():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2))
    e = 3 * abs(m.x[0] - 2) * m.x[1] + abs(m.x[1])
    jac = compile_jacobian([e], list(m.x.values()))
    expected = {(2.5, -1.0): [-3.0, 0.5], (1.0, 0.0): [0.0, 3.0], (2.0, 0.0): [0.0, 0.0],
                (2.0, 1.5): [0.0, 1.0], (1.0, 1e-280): [-3e-280, 4.0]}
    for x, want in expected.items():
        got = jac.dense(np.array(x))[0]
        assert np.all(np.isfinite(got)) and list(got) == want, (x, got)


def test_unfixing_a_compiled_parameter_is_refused(model):
    prog = compile_exprs([model.z * model.x[0]], [model.x[0]])
    assert prog(np.array([2.0]))[0] == pytest.approx(3.4)
    model.z.unfix()
    with pytest.raises(ValueError, match=r"variable 'z' was fixed when these expressions were compiled"):
        prog(np.array([2.0]))


def test_nlp_problem_follows_a_changed_param_without_recompiling():
    from stackopt.solvers import NlpProblem

    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=0.0)
    m.t = pyo.Param(initialize=1.0, mutable=True)
    m.obj = pyo.Objective(expr=(m.x - m.t) ** 2)
    prob = NlpProblem(m)
    assert prob.solve().x[m.x] == pytest.approx(1.0, abs=1e-6)
    m.t.set_value(-2.5)
    assert prob.solve().x[m.x] == pytest.approx(-2.5, abs=1e-6)


def test_a_growing_parameter_collection_is_shared_by_programs(model):
    from stackopt.expr import Parameters

    xs = list(model.x.values())
    par = Parameters(grow=True)
    p1 = compile_exprs([model.z * model.x[0]], xs, parameters=par)
    p2 = compile_exprs([model.q * model.x[1] + model.z], xs, parameters=par)
    assert [p.name for p in par] == ["z", "q"]
    vals = np.array([0.4, 0.7, 0.9, 1.3])
    theta = par.values()
    assert p1(vals, theta)[0] == pytest.approx(1.7 * 0.4)
    assert p2(vals, theta)[0] == pytest.approx(2.5 * 0.7 + 1.7)


def test_bench_compile_measures_one_size_and_names_an_unknown_domain():
    from stackopt.comparisons import bench_compile

    r = bench_compile.measure("cyber", 3)
    assert r["nodes"] > 0 and r["terms"] > 0 and r["prep_s"] >= 0 and r["n_x"] == 3
    assert "exp t" in bench_compile.table([r, dict(r, nodes=2 * r["nodes"], terms=2 * r["terms"])])
    with pytest.raises(ValueError, match=r"unknown domain 'tsp'"):
        bench_compile.main(["--domains", "tsp"])


def _large_batch(rng, n_terms, n_atoms=400):
    """Random polynomials: ``n_terms`` terms of degree 1 to 6 over ``n_atoms`` atoms, into
    300 outputs, with a constant on some outputs (coefficient 1 on a third of the terms)."""
    from stackopt.expr import PolyBatch

    polys = [dict() for _ in range(300)]
    for _ in range(n_terms):
        mono = tuple(sorted(rng.integers(0, n_atoms, size=int(rng.integers(1, 7)))))
        coef = 1.0 if rng.random() < 1 / 3 else float(rng.normal())
        row = polys[int(rng.integers(0, 300))]
        row[mono] = row.get(mono, 0.0) + coef
    for row in polys[::7]:
        row[()] = 0.25
    return PolyBatch(polys)


def test_the_compiled_loop_gives_numpys_values_to_the_last_bit():
    from stackopt.expr.loops import LOOP_MIN_TERMS, polynomial_loop

    assert polynomial_loop() is not None  # numba is a dependency
    rng = np.random.default_rng(3)
    batch = _large_batch(rng, LOOP_MIN_TERMS // 2)
    assert batch._loop is None and batch.use_loop() and batch._loop is not None
    for v in (rng.normal(size=400), np.where(rng.random(400) < 0.05, np.nan, rng.normal(size=400)),
              np.where(rng.random(400) < 0.05, np.inf, rng.lognormal(size=400))):
        looped = batch(v)
        loop, batch._loop = batch._loop, None  # the NumPy path, on the same batch
        with np.errstate(all="ignore"):
            plain = batch(v)
        batch._loop = loop
        assert np.array_equal(looped, plain, equal_nan=True)


def test_a_large_batchs_sparse_row_sums_are_bincounts_to_the_last_bit():
    from stackopt.expr.program import SPARSE_SUM_MIN_TERMS

    rng = np.random.default_rng(5)
    batch = _large_batch(rng, 2 * SPARSE_SUM_MIN_TERMS)
    assert batch.n_terms >= SPARSE_SUM_MIN_TERMS
    for v in (rng.normal(size=400), np.where(rng.random(400) < 0.05, np.nan, rng.normal(size=400)),
              np.where(rng.random(400) < 0.05, -np.inf, rng.lognormal(size=400)),
              rng.normal(size=400) * 10.0 ** rng.integers(-200, 200, size=400)):
        with np.errstate(all="ignore"):
            sums = batch(v)
            counted = np.bincount(batch.rows, weights=batch._terms(v), minlength=batch.n_out) + batch.const
        assert np.array_equal(sums, counted, equal_nan=True)
        assert np.array_equal(np.signbit(sums), np.signbit(counted))
    points = rng.normal(size=(400, 3))  # and the batch of points, column by column
    with np.errstate(all="ignore"):
        assert np.array_equal(batch.batch(points), np.column_stack([batch(points[:, j]) for j in range(3)]))


def test_a_missing_numba_leaves_numpy(monkeypatch):
    import stackopt.expr.program as program

    rng = np.random.default_rng(4)
    monkeypatch.setattr(program, "polynomial_loop", lambda: None)
    batch = _large_batch(rng, 2000)
    assert not batch.use_loop() and batch._loop is None
    assert np.all(np.isfinite(batch(rng.normal(size=400))))


@pytest.mark.parametrize("name, kw, large", [
    ("ssg", dict(seed=1, targets=60, defenders=5, coverable=30, resources=6.0), True),
    ("nfg", dict(seed=1, players=3, actions=10), False),
])
def test_large_games_evaluate_their_programs_as_loops_with_the_same_values(name, kw, large):
    from stackopt.kernel import kernel_of
    from stackopt.models import build_game

    k = kernel_of(build_game(name, **kw))
    assert k.uses_loops is large
    rng = np.random.default_rng(5)
    x = k.x_lb + (0.05 + 0.9 * rng.random(k.n_x)) * (k.x_ub - k.x_lb)  # inside the box
    p = k.p0 + rng.random(k.n_p)
    X = k.x_lb + (0.05 + 0.9 * rng.random((7, k.n_x))) * (k.x_ub - k.x_lb)
    owner = rng.integers(0, len(k.slices), size=7)

    def values():
        own = (k.F_own(X, p, owner), k.Jx_own(X, p, owner), k.follower_objective_own(X, p, owner))
        return (k.F(x, p), k.Jx(x, p), k.Jp_values(x, p), k.follower_objectives(x, p),
                *k.leader_all(x, p)[1:], *[np.nan_to_num(a, nan=0.5) for a in own]), k.leader_all(x, p)[0]

    looped, objective = values()
    programs = [k._F, k._fobj, k._Jxp.program, k._Jpp.program, *k.leader_side.programs()]
    for prog in programs:
        prog.looped = False
        for b in [b for b, _, _ in prog.levels] + [prog.out]:
            b._loop = None
    plain, plain_objective = values()
    for a, b in zip(looped, plain):
        assert np.all(np.isfinite(a)) and np.array_equal(a, b)
    assert objective == plain_objective


def test_a_small_game_compiled_as_loops_solves_as_it_does_on_numpy():
    """compile_loops: a small game's programs as compiled loops (what a comparison's workers
    do) give a gradient solve with the same path and answer, step by step, as the NumPy
    passes, best responses and deviation searches included (cyber insurance's followers
    are searched)."""
    from stackopt import solve
    from stackopt.kernel import kernel_of
    from stackopt.models import build_game

    results = []
    for loops in (False, True):
        game = build_game("cyber", seed=2, customers=4, risk_aversion=0.5)
        k = kernel_of(game)
        assert not k.uses_loops  # small: NumPy unless asked
        if loops:
            assert k.compile_loops() and k.uses_loops and k._F.looped
        results.append(solve(game, "gradient", seed=0, steps=300))
    plain, looped = results
    assert plain.leader_objective == looped.leader_objective and plain.status == looped.status
    assert plain.leader_values == looped.leader_values and plain.follower_values == looped.follower_values
    assert len(plain.history) > 100 and plain.history == looped.history


@pytest.mark.parametrize("name, kw", [
    ("ssg", dict(seed=1, targets=60, defenders=5, coverable=30, resources=6.0)),
    ("nfg", dict(seed=1, players=3, actions=10)),
])
def test_jacobians_at_several_points_are_each_points_own_to_the_last_bit(name, kw):
    """Four points a loop (padded where fewer are left), or one point at a time where the
    game's programs are not loops: each point's dF/dx and dF/dp are what one call gives
    there, non-finite values included."""
    from stackopt.kernel import kernel_of
    from stackopt.models import build_game

    k = kernel_of(build_game(name, **kw))
    rng = np.random.default_rng(8)
    p = k.p0 + rng.random(k.n_p)
    for m in (1, 2, 4, 5, 9):
        X = k.x_lb + (0.05 + 0.9 * rng.random((m, k.n_x))) * (k.x_ub - k.x_lb)
        if m == 5:
            X[3, 0] = np.nan
        Jx, Jp = k.Jx_points(X, p), k.Jp_points(X, p)
        assert Jx.shape == (m, k.n_x, k.n_x) and Jp.shape == (m, k.Jp_rows.size)
        for j in range(m):
            assert np.array_equal(Jx[j], k.Jx(X[j], p), equal_nan=True)
            assert np.array_equal(Jp[j], k.Jp_values(X[j], p), equal_nan=True)
        if m == 5 and k.uses_loops:  # a point outside the domain spoils its own values only
            assert np.isnan(Jx[3]).any() and np.isfinite(Jx[[0, 1, 2, 4]]).all()


def test_a_levels_functions_at_several_points_are_each_points_own_to_the_last_bit():
    """NumPy computes x ** -1 with a single exponent as 1 / x, which differs from pow in the
    last bit about once in a thousand: a level whose one atom is a power (the security
    game's dF/dp has one) must get pow at every point, as one point does."""
    from stackopt.expr.program import Program

    rng = np.random.default_rng(11)
    V = np.concatenate([rng.random((3000, 4)) * 3 + 0.1, rng.normal(size=(3000, 4))])
    for i in range(3000):
        funcs = [("exp", np.array([3000 + i, 3001 + i % 2998]), None),
                 ("pow", np.array([i]), np.array([-1.0]))]
        many = V.copy()
        Program._apply_at(funcs, many)
        for j in range(4):
            one = V[:, j].copy()
            Program._apply_at(funcs, one)
            assert np.array_equal(many[:, j], one)


def test_functions_of_one_depth_share_a_level_and_keep_their_values():
    """exp of arguments made at different levels (a variable, a product of two, an
    atomized product of six) and exp of an exp: the first three and the inner exp at one
    level, the outer exp at a later one; every value Pyomo's, at one point and at four, loops or not."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(6), initialize=lambda _, i: 0.2 + 0.1 * i)
    x = m.x
    six = x[0] * x[1] * x[2] * x[3] * x[4] * x[5] * (x[0] + x[1]) * (x[2] - x[3])
    es = [pyo.exp(x[0]), pyo.exp(x[1] * x[2] + x[3]), pyo.exp(six + x[4]), pyo.exp(pyo.exp(six) - x[5])]
    prog = compile_exprs(es, list(x.values()))
    exp_levels = [i for i, (_, _, funcs) in enumerate(prog.levels) if any(k == "exp" for k, _, _ in funcs)]
    assert len(exp_levels) == 2  # depth 1 (four exps: the three and exp(six)), depth 2
    assert sum(at.size for kind, at, _ in prog.levels[exp_levels[0]][2] if kind == "exp") == 4
    rng = np.random.default_rng(2)
    V = rng.random((6, 4))
    want = np.array([pyo.value(e) for e in es])
    assert np.allclose(prog(np.array([v.value for v in x.values()])), want, rtol=1e-14, atol=0)
    plain = np.column_stack([prog(V[:, j]) for j in range(4)])
    assert prog.use_loops()
    assert np.array_equal(np.column_stack([prog(V[:, j]) for j in range(4)]), plain)
    assert np.array_equal(prog.at_points(V), plain)
