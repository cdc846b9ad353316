"""Config validation of the comparison harness: every bad input is a clear error before any work."""
import math
import os
import sqlite3
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import test_harness_toys  # noqa: E402,F401  (registers the toy game and methods)

from stackopt.comparisons.config import (  # noqa: E402
    builtin_configs,
    load_config,
    parse_config,
    parse_seeds,
)
from stackopt.comparisons.store import Store, StoreError  # noqa: E402

GOOD = """
plugins = ["test_harness_toys"]
time_limit = 30
seeds = "1-3"

[experiments.toy]
game = "harness_toy"
[experiments.toy.grid]
budget = [0, 0.5, 1]
size = 2
[experiments.toy.methods.test-sleep]
sleep = 0.0
[experiments.toy.methods.test-random]
time_limit = 4

[experiments.other]
game = "harness_toy"
seeds = [7]
time_limit = 5
all_methods = true
"""


def test_good_config_expands_to_cells():
    cfg = parse_config(GOOD, name="good")
    toy, other = cfg.experiments
    assert toy.grid == {"budget": [0.0, 0.5, 1.0], "size": [2]}
    assert toy.seeds == [1, 2, 3] and toy.time_limit == 30.0
    assert set(toy.methods) == {"test-sleep", "test-random"}
    assert len(toy.cells()) == 3 * 3 * 2
    assert {"test-crash", "test-exact"} <= set(other.methods)
    assert other.seeds == [7] and other.time_limit == 5.0
    keys = [c.key for c in cfg.cells()]
    assert len(keys) == len(set(keys))
    cell = next(c for c in toy.cells() if c.method == "test-sleep")
    assert cell.params_json == '{"budget":0.0,"size":2}' and cell.options_json == '{"sleep":0.0}'
    limits = {c.method: (c.time_limit, c.kill_after) for c in toy.cells()}
    assert limits == {"test-sleep": (30.0, 90.0), "test-random": (4.0, 64.0)}


def test_overrides_replace_seeds_experiments_methods_and_time_limit():
    cfg = parse_config(GOOD, seeds="4-5", experiments=["toy"], methods=["test-random"],
                       time_limit=2)
    (toy,) = cfg.experiments
    assert toy.seeds == [4, 5] and list(toy.methods) == ["test-random"] and toy.time_limit == 2


@pytest.mark.parametrize("spec, expected", [
    ("1-5", [1, 2, 3, 4, 5]), ("0,3,7-8", [0, 3, 7, 8]), ([2, 9], [2, 9]), ("4", [4]),
])
def test_seed_specs(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize("spec, match", [
    ("5-1", "bad seed range '5-1'"), ("a-b", "bad seed range 'a-b'"), ([1, -2], "got -2"),
    ([1, 1], "lists a seed twice"), (3, "must be a list of integers or a range"), ([], "empty"),
    ([1.5], "got 1.5"),
])
def test_bad_seeds(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_seeds(spec)


def _edit(old, new):
    assert old in GOOD
    return GOOD.replace(old, new, 1)


REPORTED = """[experiments.toy.reported]
source = "a paper"
[experiments.toy.reported.paper-method]
leader_objective = [1.0, 2.0, 3.0]
[experiments.toy.methods.test-sleep]"""


def _reported(text):
    """GOOD with the toy experiment's axis and ``text`` (its reported tables)."""
    return _edit("[experiments.toy.methods.test-sleep]", text).replace(
        'game = "harness_toy"', 'game = "harness_toy"\naxis = "budget"', 1)


def test_published_means_are_read_per_axis_value():
    cfg = parse_config(_reported(REPORTED.replace(
        "[1.0, 2.0, 3.0]", "[1.0, 2.0, 3.0]\nconstraint_violation = [0, nan, 0.5]")), name="r")
    rep = cfg.experiments[0].reported
    assert rep.source == "a paper" and rep.at == (0, 0.5, 1)
    assert rep.value("paper-method", "leader_objective", {"budget": 0.5, "size": 2}) == 2.0
    assert rep.value("paper-method", "constraint_violation", {"budget": 1.0}) == 0.5
    assert math.isnan(rep.value("paper-method", "constraint_violation", {"budget": 0.5}))
    assert math.isnan(rep.value("paper-method", "leader_objective", {"budget": 0.7}))
    assert math.isnan(rep.value("other", "leader_objective", {"budget": 0.5}))
    assert cfg.experiments[1].reported is None
    assert len(cfg.cells()) == len(parse_config(GOOD).cells())  # nothing to run


@pytest.mark.parametrize("text, match", [
    (_edit('game = "harness_toy"', 'game = "chess"'), "unknown game 'chess'"),
    (_edit("[experiments.toy.methods.test-random]", "[experiments.toy.methods.simplex9]"),
     "unknown method 'simplex9'"),
    (_edit("sleep = 0.0", "nap = 1"), "unknown option 'nap' for method 'test-sleep'"),
    (_edit("sleep = 0.0", "sleep = -1.0"), "option 'sleep' of method 'test-sleep'"),
    (_edit("sleep = 0.0", 'sleep = "long"'), "option 'sleep' of method 'test-sleep'"),
    (_edit("size = 2", "colour = 2"), "unknown parameter 'colour' of game 'harness_toy'"),
    (_edit("size = 2", "size = 2.5"), r"size must be a int, got 2\.5"),
    (_edit("size = 2", 'size = "two"'), "size must be a int, got 'two'"),
    (_edit("budget = [0, 0.5, 1]", "budget = [0, -1]"), "budget must be >= 0, got -1"),
    (_edit("budget = [0, 0.5, 1]", "budget = [1, 1]"), "repeats a value"),
    (_edit("budget = [0, 0.5, 1]", "budget = []"), "has no values"),
    (_edit("time_limit = 30", "time_limit = -3"), "time_limit must be a positive number of seconds, got -3"),
    (_edit("time_limit = 30", 'time_limit = "1h"'), "time_limit must be a positive number"),
    (_edit('seeds = "1-3"', 'seeds = "3-1"'), "bad seed range"),
    (_edit('seeds = "1-3"', ""), "experiment 'toy' has no seeds"),
    (_edit("time_limit = 30", "timelimit = 30"), "unknown key 'timelimit'"),
    (_edit("time_limit = 4", "time_limit = 0"), "time_limit of method 'test-random' must be a positive"),
    (_edit('game = "harness_toy"', 'game = "harness_toy"\nbudget = 3'), "unknown key 'budget' in experiment 'toy'"),
    (_edit('game = "harness_toy"', ""), "needs game ="),
    (_edit("[experiments.toy.grid]", 'axis = "colour"\n[experiments.toy.grid]'), "axis 'colour'"),
    (_edit("all_methods = true", 'all_methods = "yes"'), "all_methods must be true or false"),
    (_edit("time_limit = 5", "time_limit = 5\nprecision = -0.1"),
     r"experiment 'other': precision must be a finite number > 0 .*got -0\.1"),
    (_edit("time_limit = 30", 'time_limit = 30\nprecision = "fine"'),
     "experiment 'toy': precision must be a finite number > 0"),
    (_edit("time_limit = 5", "time_limit = 5\nmax_draws = 0"),
     "experiment 'other': max_draws must be a positive integer, got 0"),
    (_edit("time_limit = 5", "time_limit = 5\nmax_draws = 2.5"), "max_draws must be a positive integer"),
    (_edit('plugins = ["test_harness_toys"]', 'plugins = ["no_such_plugin_module"]'),
     "plugin module 'no_such_plugin_module' cannot be imported"),
    ("seeds = [1]\n", "has no experiments"),
    ("[experiments.e]\ngame = 'harness_toy'\nseeds = [1]\n", "runs no method"),
    ("[experiments\ngame = 1", "is not valid TOML"),
    ("time_limit = = 3", "is not valid TOML"),
    ("experiments = 3", r"\[experiments\] must be a table"),
    (_edit("[experiments.toy.methods.test-sleep]", REPORTED),
     "reported values are given per axis value; set axis"),
    (_reported(REPORTED.replace("[1.0, 2.0, 3.0]", "[1.0, 2.0]")),
     r"reported.paper-method.leader_objective must be a list of 3 numbers \(one per value of "
     r"budget = \[0, 0.5, 1\]"),
    (_reported(REPORTED.replace("source", "origin")), "reported needs source"),
    (_reported(REPORTED.replace("leader_objective", "objective")),
     "unknown key 'objective' in experiment 'toy': reported.paper-method"),
])
def test_bad_config_is_a_clear_error(text, match):
    with pytest.raises(ValueError, match=match):
        parse_config(text, name="bad")


def test_scoring_precision_and_draws_per_experiment_and_from_the_command_line():
    """``precision`` and ``max_draws`` at the top or per experiment reach each cell as values
    for the scoring (never a method's options: the cell's key is the same)."""
    plain = parse_config(GOOD)
    assert {c.scoring for c in plain.cells()} == {()}
    text = GOOD.replace("time_limit = 5", "time_limit = 5\nprecision = 0.01\nmax_draws = 12")
    text = text.replace("seeds = \"1-3\"", "seeds = \"1-3\"\nmax_draws = 40")
    cfg = parse_config(text)
    toy, other = cfg.experiments
    assert toy.scoring == {"max_draws": 40} and other.scoring == {"precision": 0.01, "max_draws": 12}
    assert {c.scoring for c in other.cells()} == {(("max_draws", 12), ("precision", 0.01))}
    assert [c.key for c in plain.cells()] == [c.key for c in cfg.cells()]
    assert all("precision" not in c.options_json for c in cfg.cells())
    # the command line's values replace the config's
    over = parse_config(text, precision=0.5)
    assert [e.scoring for e in over.experiments] == [{"precision": 0.5, "max_draws": 40},
                                                     {"precision": 0.5, "max_draws": 12}]


def test_unknown_experiment_and_method_overrides():
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        parse_config(GOOD, experiments=["nope"])
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        parse_config(GOOD, methods=["nope"])


def test_config_references(tmp_path):
    assert {"quick", "paper-nfg", "paper-ssg", "paper-cyber", "market", "coverage"} <= set(builtin_configs())
    with pytest.raises(ValueError, match="unknown config 'quik'.*built-in configs are"):
        load_config("quik")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    assert load_config(str(path)).name == "mine"


def test_store_refuses_files_that_are_not_ours(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, not a database\n" * 10)
    with pytest.raises(StoreError, match="not a stackopt results database .not an SQLite file"):
        Store.open(text)
    assert text.read_text().startswith("hello")  # untouched
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"not a stackopt results database \(it has tables \['customers'\]"):
        Store.open(other)
    future = tmp_path / "future.sqlite"
    Store.open(future).close()
    con = sqlite3.connect(future)
    con.execute("UPDATE stackopt_meta SET value = '99' WHERE key = 'version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version '99'"):
        Store.open(future)
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "absent.sqlite", create=False)
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match="cannot open results database"):
        Store.open(tmp_path / "no" / "such" / "dir" / "r.sqlite")
