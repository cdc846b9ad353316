"""One built game per instance: the methods of an instance solve the game its cell process
built for the first of them, from the model as built, with the answers of fresh builds."""
import os
import sys

import numpy as np
import pyomo.environ as pyo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_harness_toys  # noqa: E402,F401  (registers the toy game and methods)

from stackopt import Status  # noqa: E402
from stackopt.comparisons.config import load_config, parse_config  # noqa: E402
from stackopt.comparisons.pools import Affinity, ListSource  # noqa: E402
from stackopt.comparisons.runner import row_numbers, run_cell  # noqa: E402
from stackopt.comparisons.worker import Instances, ModelState, instance_key  # noqa: E402
from stackopt.methods import Method, MethodOutput, available_methods, register_method  # noqa: E402
from stackopt.models import build_game  # noqa: E402


class ScribbleMethod(Method):
    """Prepares the game (as the methods do), then writes onto the model (a leader value, a
    follower's value and fixed flag) and proposes the leader value it found there first."""

    CONFIG = Method.CONFIG()

    def run(self, game, config, seed, time_limit):
        from stackopt.kernel import kernel_of

        kernel_of(game)
        p = game.model.p
        found = p.value
        p.set_value(4.5)
        game.model.f0.x.fix(7.0)
        return MethodOutput(leader=np.array([found]), status=Status.CONVERGED)


class BuildMethod(Method):
    """Adds a component to the model: its structure is no longer the one built."""

    CONFIG = Method.CONFIG()

    def run(self, game, config, seed, time_limit):
        game.model.add_component(f"extra_{len(list(game.model.component_objects()))}", pyo.Var())
        return MethodOutput(leader=np.array([game.model.p.value]), status=Status.CONVERGED)


for _name, _cls in (("test-scribble", ScribbleMethod), ("test-build", BuildMethod)):
    if _name not in available_methods():
        register_method(_name)(_cls)

CONFIG = """
plugins = ["test_harness_toys"]
seeds = [1, 2]
time_limit = 30
[experiments.toy]
game = "harness_toy"
[experiments.toy.methods.test-scribble]
[experiments.toy.methods.test-random]
[experiments.toy.methods.test-exact]
[experiments.toy.methods.test-build]
[experiments.toy.methods.test-crash]
"""


def _cells(text=CONFIG):
    return parse_config(text, name="instances").cells()


def test_the_cells_of_an_instance_share_one_build_and_give_the_answers_of_fresh_builds():
    cells = [c for c in _cells() if c.method != "test-crash"]
    instances = Instances()
    for cell in cells:
        shared = run_cell(cell, instances)
        fresh = run_cell(cell)
        assert shared["status"] == "converged" or shared["status"] == "optimal", shared["message"]
        assert row_numbers(shared) == row_numbers(fresh), cell.method
    # two seeds; test-build changes the structure, so the next method of its seed builds again
    order = [c.method for c in cells[:4]]
    assert order == ["test-build", "test-exact", "test-random", "test-scribble"]
    assert instances.built == 4


def test_a_method_that_writes_onto_the_model_leaves_the_next_one_the_model_as_built():
    cell = next(c for c in _cells() if c.method == "test-scribble" and c.seed == 1)
    instances = Instances()
    first = run_cell(cell, instances)
    game = instances.game
    assert game.model.p.value == 4.5 and game.model.f0.x.fixed  # what the method left
    second = run_cell(cell, instances)
    assert instances.game is game and instances.built == 1
    assert first["leader_values"] == second["leader_values"] == {"p": 0.0}  # as built, not 4.5
    assert instances.state.restore()  # what the next cell of the instance starts from
    assert not game.model.f0.x.fixed and game.model.f0.x.value == 0.0 and game.model.p.value == 0.0


def test_model_state_restores_values_and_refuses_a_changed_structure():
    game = build_game("harness_toy", 3, size=2)
    m = game.model
    m.f1.x.set_value(2.0)
    state = ModelState(m)
    m.f1.x.set_value(9.0)
    m.f0.x.fix(3.0)
    assert state.restore()
    assert m.f1.x.value == 2.0 and not m.f0.x.fixed and m.f0.x.value == 0.0
    m.f0.x.setub(50.0)
    assert not state.restore()  # a bound is structure here: built afresh
    m.f0.x.setub(100.0)
    assert state.restore()
    m.f0.obj.deactivate()
    assert not state.restore()


def test_a_failed_cell_is_followed_by_a_fresh_build():
    cells = [c for c in _cells() if c.seed == 1 and c.method in ("test-crash", "test-exact")]
    instances = Instances()
    crashed = run_cell(cells[0], instances)
    assert cells[0].method == "test-crash" and crashed["status"] == "error"
    assert instances.game is None
    fine = run_cell(cells[1], instances)
    assert fine["status"] == "optimal" and instances.built == 2


def test_instances_are_keyed_by_game_parameters_but_the_mutable_ones_seed_and_plugins():
    cells = _cells()
    keys = {instance_key(c) for c in cells}
    assert len(keys) == 2  # seeds 1 and 2; every method shares its seed's game
    assert all(instance_key(c) == instance_key(cells[0]) for c in cells if c.seed == cells[0].seed)


def test_an_idle_worker_takes_its_own_instance_first_then_one_nobody_runs():
    cells = _cells()  # seed 1's five methods, then seed 2's
    affinity = Affinity()
    one, two = instance_key(cells[0]), instance_key(cells[5])
    source = ListSource(cells)
    first = source.take(rank=affinity.rank(None, set()))
    assert first is cells[0]
    other = source.take(rank=affinity.rank(None, {one}))  # the first worker runs seed 1
    assert other is cells[5]
    mine = source.take(rank=affinity.rank(one, {two}))
    assert mine is cells[1]
    assert source.take() is cells[2]  # no rank: the config's order
    left = [source.take(rank=affinity.rank(two, {one})) for _ in range(6)]
    assert [instance_key(c) for c in left] == [two] * 4 + [one] * 2
    assert source.take(rank=affinity.rank(two, set())) is None


def test_gradient_and_initial_on_one_prepared_game_give_the_fresh_builds_answers():
    config = load_config("quick", experiments=["nfg"], seeds="1", methods=["gradient", "initial"])
    cells = [c for c in config.cells() if dict(c.params)["budget"] == 1.0]
    instances = Instances()
    for cell in cells:
        shared = run_cell(cell, instances)
        fresh = run_cell(cell)
        assert shared["status"] == fresh["status"] != "error", shared["message"]
        assert row_numbers(shared) == row_numbers(fresh), cell.method
    assert instances.built == 1


def test_the_budgets_of_a_seed_share_one_prepared_game_and_give_the_fresh_builds_answers():
    """A security game's budget is a mutable parameter: one seed's cells over the budget axis
    solve one game, each at its own budget, with the answers and fingerprints of fresh builds."""
    config = load_config("quick", experiments=["ssg"], seeds="1", methods=["gradient", "initial"])
    cells = config.cells()
    assert len({dict(c.params)["budget"] for c in cells}) >= 3
    assert len({instance_key(c) for c in cells}) == 1
    instances = Instances()
    rows = []
    for cell in cells:
        shared = run_cell(cell, instances)
        fresh = run_cell(cell)
        assert shared["status"] == fresh["status"] != "error", shared["message"]
        assert row_numbers(shared) == row_numbers(fresh), (cell.params, cell.method)
        assert shared["fingerprint"] == fresh["fingerprint"]
        rows.append(shared)
    assert instances.built == 1
    assert len({r["fingerprint"] for r in rows}) == len({dict(c.params)["budget"] for c in cells})
    gradient = [r["leader_objective"] for r in rows if r["method"] == "gradient"]
    assert len(set(gradient)) == len(gradient)  # each budget was solved at its own value


def test_a_cell_process_prepares_every_game_with_compiled_loops():
    """A worker solves many games and has loaded the loops before its first cell: a game too
    small for a one-off solve to use them is prepared with them there (the harness's toy
    game; a fresh build of it alone keeps NumPy)."""
    from stackopt.kernel import kernel_of

    cell = next(c for c in _cells() if c.method == "test-exact" and c.seed == 1)
    instances = Instances()
    game, _ = instances.game_for(cell)
    assert kernel_of(game).uses_loops
    assert not kernel_of(build_game(cell.game, cell.seed, **dict(cell.params))).uses_loops
