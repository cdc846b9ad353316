"""What is read from the model's structure is read once, when the game is prepared: a solve of a
prepared game walks no Pyomo expression, and values (bounds, Params) are still followed."""
import numpy as np
import pyomo.environ as pyo
import pytest
from games import make_duopoly

from stackopt import StackelbergGame, solve
from stackopt.kernel import kernel_of
from stackopt.models import build_game


def cubic_game(lb=0.0):
    """A follower minimising x**3 - p x: convex in x where x >= 0, not where x may be negative."""
    game = StackelbergGame("cubic")
    m = game.model
    m.p = pyo.Var(bounds=(0.5, 2.0), initialize=1.0)
    f = game.add_follower("f")
    f.x = pyo.Var(bounds=(lb, 3.0), initialize=1.0)
    f.obj = pyo.Objective(expr=f.x ** 3 - m.p * f.x)
    game.set_leader([m.p], objective=(f.x - 0.8) ** 2, sense=pyo.minimize)
    return game


def test_the_convexity_proof_is_kept_and_its_bound_condition_follows_the_bounds():
    game = cubic_game()
    k = kernel_of(game)
    assert k.convex_followers() == [True]
    game.model.f.x.setlb(-1.0)  # a value edit: x**3 is no longer convex on the set
    game.refresh()
    assert kernel_of(game) is k and k.convex_followers() == [False]
    game.model.f.x.setlb(0.0)
    game.refresh()
    assert k.convex_followers() == [True]


def test_leader_rows_linear_in_the_leader_follow_their_params():
    game = make_duopoly()
    m = game.model
    m.budget = pyo.Param(initialize=3.0, mutable=True)
    leader = game._leader
    game.set_leader(leader["variables"], leader["objective"], leader["sense"],
                    constraints=leader["constraints"] + [2 * m.pi[1] + m.pi[2] <= m.budget])
    k = kernel_of(game)
    rows, A, b = k.leader_linear_rows()
    assert rows.tolist() == [1] and A.tolist() == [[2.0, 1.0]] and b.tolist() == [3.0]
    m.budget = 1.0
    r = solve(game, "gradient")
    assert kernel_of(game) is k
    assert k.leader_linear_rows()[2].tolist() == [1.0]
    assert 2 * r.leader_values["pi[1]"] + r.leader_values["pi[2]"] <= 1.0 + 1e-9


class _Walks:
    """Counts walks of Pyomo expressions: Pyomo's visitors, its standard representation, and
    stackopt's own compilation and analyses."""

    def __init__(self, monkeypatch):
        import pyomo.core.expr.visitor as visitor

        import stackopt.expr.diff
        import stackopt.expr.poly
        import stackopt.game.convexity
        import stackopt.game.structure
        import stackopt.kernel.leader
        import stackopt.kernel.rows

        self.calls = []
        targets = [(visitor.StreamBasedExpressionVisitor, "walk_expression"),
                   (visitor.ExpressionValueVisitor, "dfs_postorder_stack"),
                   (visitor.SimpleExpressionVisitor, "xbfs"),
                   (stackopt.expr.poly.PolyBuilder, "poly"),
                   (stackopt.game.convexity._Walk, "convex"),
                   (stackopt.expr.diff, "reverse_symbolic")]
        for mod in (stackopt.kernel.rows, stackopt.kernel.leader, stackopt.game.structure):
            targets.append((mod, "generate_standard_repn"))
        for owner, name in targets:
            monkeypatch.setattr(owner, name, self._counting(getattr(owner, name), f"{owner.__name__}.{name}"))

    def _counting(self, fn, label):
        def wrapper(*args, **kwargs):
            self.calls.append(label)
            return fn(*args, **kwargs)
        return wrapper


SHORT = {"gradient": dict(steps=30), "implicit-ipopt": dict(starts=1, max_iter=30),
         "slsqp": dict(maxiter=10), "initial": {}}  # short runs: what is walked does not depend on length
CASES = [("nfg", dict(players=2, actions=3), m) for m in ("gradient", "implicit-ipopt", "slsqp", "initial")]
CASES += [("cyber", dict(customers=3), m) for m in ("gradient", "implicit-ipopt", "slsqp", "initial")]
CASES += [("ssg", dict(targets=6, samples=2), m) for m in ("gradient", "initial")]


@pytest.mark.parametrize("name,params,method", CASES)
def test_a_solve_of_a_prepared_game_walks_no_expression(name, params, method, monkeypatch):
    game = build_game(name, seed=1, **params)
    first = solve(game, method, seed=0, **SHORT[method])
    walks = _Walks(monkeypatch)
    again = solve(game, method, seed=0, **SHORT[method])
    assert walks.calls == []
    assert again.leader_objective == first.leader_objective  # the same solve, the same answer
    np.testing.assert_array_equal(list(again.leader_values.values()), list(first.leader_values.values()))


@pytest.mark.parametrize("name, params, full", [
    ("ssg", dict(targets=8, defenders=2, coverable=4, resources=1.0), True),
    ("nfg", dict(players=2, actions=3), False),
    ("cyber", dict(customers=3), True),
])
def test_the_game_jacobian_is_its_compiled_entries_scattered_and_a_new_array(name, params, full):
    """A dense dF/dx (every entry, row by row) is its values reshaped, a sparse one is
    scattered into zeros: the same values to the last bit either way, a new array per call."""
    k = kernel_of(build_game(name, seed=3, **params))
    assert k._Jx_full is full
    rng = np.random.default_rng(0)
    x = rng.uniform(k.x_lb, np.minimum(k.x_ub, k.x_lb + 1.0))
    p = k.p0 + rng.uniform(0.0, 0.1, k.n_p)
    ref = np.zeros(k.n_x * k.n_x)
    ref[k._Jxp.rows * k.n_x + k._Jxp.cols] = k.x_sense[k._Jxp.rows] * k._Jxp(k.allv(x, p))
    J = k.Jx(x, p)
    assert J.shape == (k.n_x, k.n_x) and J.tobytes() == ref.tobytes()
    again = k.Jx(x, p)
    assert again is not J and not np.shares_memory(again, J)
    np.testing.assert_array_equal(k.Jx_sparse(x, p).toarray(), J)
