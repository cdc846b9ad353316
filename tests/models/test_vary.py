"""Mutable parameters: a built instance given another value is the instance built with it."""
import numpy as np
import pytest

from stackopt import evaluate
from stackopt.comparisons.worker import fingerprint
from stackopt.kernel import kernel_of
from stackopt.models import build_game, mutable_params, vary


def test_the_security_games_budget_is_mutable_and_nothing_else():
    assert mutable_params("ssg") == {"budget"}
    assert mutable_params("nfg") == mutable_params("cyber") == frozenset()


def test_a_varied_instance_is_the_instance_built_with_its_value():
    name, params = "ssg", dict(targets=6, defenders=2, coverable=4, resources=2.0)
    game = build_game(name, 3, budget=1.0, **params)
    kernel_of(game)  # prepared with the first budget
    vary(game, name, budget=0.25)
    fresh = build_game(name, 3, budget=0.25, **params)
    assert fingerprint(game) == fingerprint(fresh) != fingerprint(build_game(name, 3, budget=1.0, **params))
    assert game.data["budget"] == fresh.data["budget"] == 0.25
    p = np.full(len(kernel_of(fresh).p0), 0.5)  # a strategy spending more than 0.25
    varied, built = evaluate(game, p, seed=0), evaluate(fresh, p, seed=0)
    assert varied.constraint_violation == built.constraint_violation > 0
    assert varied.leader_objective == built.leader_objective


@pytest.mark.parametrize("bad, match", [
    (dict(budget=-1.0), r"budget must be a finite number >= 0.0, got -1.0"),
    (dict(budget="much"), r"budget must be a number >= 0.0, got 'much'"),
    (dict(budget=float("nan")), r"budget must be a finite number >= 0.0, got nan"),
    (dict(targets=3), r"parameter 'targets' of game 'ssg' shapes the model .* expected one of \['budget'\]"),
    (dict(budgte=1.0), r"unknown parameter 'budgte' for game 'ssg'.*'budget'"),
])
def test_varying_rejects_bad_values_and_parameters_that_shape_the_model(bad, match):
    game = build_game("ssg", 1, targets=4, defenders=2, budget=1.0)
    with pytest.raises(ValueError, match=match):
        vary(game, "ssg", **bad)
    assert game.model.budget.value == 1.0 and game.data["budget"] == 1.0


def test_a_game_without_mutable_parameters_varies_none():
    game = build_game("nfg", 1, players=2, actions=2, budget=1.0)
    with pytest.raises(ValueError, match=r"parameter 'budget' of game 'nfg' shapes the model .* "
                                         r"expected one of \[\]"):
        vary(game, "nfg", budget=2.0)
