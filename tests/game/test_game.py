"""Every validation error of the game API names the component and what was expected."""
import pyomo.environ as pyo
import pytest
from games import make_duopoly

from stackopt import StackelbergGame, solve


def _base():
    g = StackelbergGame("g")
    g.model.p = pyo.Var(bounds=(0, 1), initialize=0)
    f = g.add_follower("f")
    f.x = pyo.Var(bounds=(0, 1))
    return g, f


def test_structure_of_duopoly(duopoly):
    s = duopoly.structure()
    assert [f.name for f in s.followers] == ["firm1", "firm2"]
    assert [v.name for v in s.leader_variables] == ["pi[1]", "pi[2]"]
    assert len(s.leader_constraints) == 1


def test_game_name_is_a_label():
    for name in ("lq-duopoly", "a b", "Cournot (3 firms, 2024)", "ü"):
        assert StackelbergGame(name).name == name


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_game_name_must_be_a_non_empty_string(bad):
    with pytest.raises(ValueError, match=f"game name must be a non-empty string, got {bad!r}"):
        StackelbergGame(bad)


@pytest.mark.parametrize("bad", ["firm 1", "firm-1", "1firm", ""])
def test_follower_name_becomes_a_component_so_must_be_an_identifier(bad):
    g = StackelbergGame("a game")
    with pytest.raises(ValueError, match=f"follower name must be a Python identifier, got {bad!r}"):
        g.add_follower(bad)


@pytest.mark.parametrize("method", ["gradient", "mpec-ipopt"])
def test_a_game_named_by_a_label_solves(method):
    label = "tracking game (1 follower, 2024)"
    g = StackelbergGame(label)
    g.model.p = pyo.Var(bounds=(0, 2), initialize=0)
    f = g.add_follower("f")
    f.x = pyo.Var(bounds=(-5, 5), initialize=0)
    f.cost = pyo.Objective(expr=(f.x - g.model.p) ** 2)
    g.set_leader(variables=[g.model.p], objective=-(f.x - 1) ** 2, sense=pyo.maximize)
    res = solve(g, method, **({"steps": 300, "lr": 0.05} if method == "gradient" else {}))
    assert res.game == label and res.status.value == "converged"
    assert res.leader_values["p"] == pytest.approx(1.0, abs=1e-2)


def test_bad_game_dynamics_and_samples():
    with pytest.raises(ValueError, match="dynamics must be 'gradient-play' or 'best-response', got 'br'"):
        StackelbergGame("g", dynamics="br")
    with pytest.raises(ValueError, match="samples must be a positive integer, got 0"):
        StackelbergGame("g", samples=0)


def test_duplicate_follower_name():
    g, _ = _base()
    with pytest.raises(ValueError, match="follower name 'f' is already used"):
        g.add_follower("f")


def test_no_followers():
    g = StackelbergGame("g")
    with pytest.raises(ValueError, match="has no followers"):
        g.structure()


def test_no_leader():
    g, f = _base()
    f.obj = pyo.Objective(expr=f.x)
    with pytest.raises(ValueError, match="has no leader"):
        g.structure()


def test_follower_without_variables():
    g = StackelbergGame("g")
    g.model.p = pyo.Var()
    g.add_follower("empty")
    g.set_leader([g.model.p], g.model.p)
    with pytest.raises(ValueError, match="follower 'empty' has no .*variables"):
        g.structure()


def test_follower_without_objective():
    g, f = _base()
    g.set_leader([g.model.p], g.model.p)
    with pytest.raises(ValueError, match="follower 'f' must have exactly one active objective, found 0"):
        g.structure()


def test_nonlinear_follower_constraint_is_a_smooth_row():
    g, f = _base()
    f.obj = pyo.Objective(expr=f.x**2)
    f.c = pyo.Constraint(expr=f.x**2 <= 0.5)
    f.d = pyo.Constraint(expr=f.x <= g.model.p)  # linear in x, constant coefficient: a linear row
    g.set_leader([g.model.p], g.model.p)
    (fs,) = g.structure().followers
    assert [c.name for c in fs.constraints] == ["f.c", "f.d"]
    assert [c.name for c in fs.smooth] == ["f.c"]


def _with_h(constraint):
    """Followers f and h, f's constraint ``constraint(f.x, h.y)``."""
    g, f = _base()
    h = g.add_follower("h")
    h.y = pyo.Var(bounds=(0, 1))
    h.obj = pyo.Objective(expr=h.y**2)
    f.obj = pyo.Objective(expr=f.x**2)
    f.c = pyo.Constraint(expr=constraint(f.x, h.y))
    g.set_leader([g.model.p], g.model.p)
    return g


def test_follower_constraint_on_other_followers_variable_binds_the_follower_only():
    fs, hs = _with_h(lambda x, y: x + y <= 1).structure().followers
    assert [c.name for c in fs.smooth] == ["f.c"] and hs.smooth == ()


def test_follower_constraint_without_its_own_variables_is_rejected():
    g = _with_h(lambda x, y: y <= 1)
    with pytest.raises(ValueError, match="constraint 'f.c' of follower 'f' uses none of the follower's "
                                         r"own variables but other followers' \(h.y\).*add_shared_constraint"):
        g.structure()


def test_leader_constraint_not_inequality():
    g, f = _base()
    f.obj = pyo.Objective(expr=f.x**2)
    g.set_leader([g.model.p], g.model.p, constraints=[f.x == 1])
    with pytest.raises(ValueError, match="leader constraint 0 .* is not an inequality"):
        g.structure()


def test_leader_constraint_relations_are_named_by_their_named_expressions():
    """A relation on a model's Expression is named by the Expression's name, not by its
    terms written out (Pyomo's own text): messages stay short however large it is."""
    g, f = _base()
    f.obj = pyo.Objective(expr=(f.x - g.model.p) ** 2)
    g.model.spend = pyo.Expression(expr=sum((k + 1) * g.model.p * f.x for k in range(50)))
    g.set_leader([g.model.p], g.model.p,
                 constraints=[g.model.spend <= 3, pyo.inequality(-1, g.model.spend, 2), f.x + g.model.p >= 0])
    names = [c.name for c in g.structure().leader_constraints]
    assert names == ["spend  <=  3", "-1  <=  spend  <=  2 (upper)", "-1  <=  spend  <=  2 (lower)",
                     "0  <=  f.x + p"]


def test_leader_constraint_not_a_relation():
    g, f = _base()
    f.obj = pyo.Objective(expr=f.x**2)
    g.set_leader([g.model.p], g.model.p, constraints=[f.x + 1])
    with pytest.raises(ValueError, match="leader constraint 0 must be an inequality"):
        g.structure()


def test_variable_belonging_to_nobody():
    g, f = _base()
    g.model.stray = pyo.Var()
    f.obj = pyo.Objective(expr=(f.x - g.model.stray) ** 2)
    g.set_leader([g.model.p], g.model.p)
    with pytest.raises(ValueError, match="variable 'stray' in the objective of follower 'f' belongs to nobody"):
        g.structure()


def test_leader_variable_on_follower_block():
    g, f = _base()
    f.obj = pyo.Objective(expr=f.x**2)
    g.set_leader([f.x], f.x)
    with pytest.raises(ValueError, match="leader variable 'f.x' is declared on follower 'f'"):
        g.structure()


def test_leader_variables_wrong_type():
    g, f = _base()
    f.obj = pyo.Objective(expr=f.x**2)
    g.set_leader(["p"], g.model.p)
    with pytest.raises(ValueError, match="leader variable must be a pyo.Var or one of its elements, got 'p'"):
        g.structure()


def test_bad_leader_sense():
    g, _ = _base()
    with pytest.raises(ValueError, match="leader sense must be pyo.minimize or pyo.maximize, got 'up'"):
        g.set_leader([g.model.p], g.model.p, sense="up")


def test_unknown_method(duopoly):
    with pytest.raises(ValueError, match="unknown method 'newton'; expected one of"):
        solve(duopoly, "newton")


def test_unknown_option(duopoly):
    with pytest.raises(ValueError, match="unknown option 'stepz' for method 'gradient'"):
        solve(duopoly, "gradient", stepz=3)


def test_bad_option_value(duopoly):
    with pytest.raises(ValueError, match="option 'steps' of method 'gradient'"):
        solve(duopoly, "gradient", steps=-3)


def test_bad_seed(duopoly):
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        solve(duopoly, "gradient", seed=-1)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True, "10"])
def test_bad_time_limit(duopoly, bad):
    with pytest.raises(ValueError, match=r"time_limit must be a number of seconds > 0 \(or None\), got"):
        solve(duopoly, "gradient", time_limit=bad)


def test_user_model_unchanged_by_solve():
    g = make_duopoly()
    before = {v.name: v.value for v in g.model.component_data_objects(pyo.Var)}
    solve(g, "gradient", steps=20)
    after = {v.name: v.value for v in g.model.component_data_objects(pyo.Var)}
    assert before == after
