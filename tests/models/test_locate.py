"""Games of your own, named by reference (module:function, path.py:function), everywhere a game name goes."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stackopt.cli import main
from stackopt.comparisons.config import load_config
from stackopt.comparisons.worker import run_cell
from stackopt.models import build_game, game_spec

GAME = textwrap.dedent('''
    import pyomo.environ as pyo
    from stackopt import StackelbergGame


    def build(seed=0, shift: float = 1.0, size=2, label="x", exact: bool = True):
        """A leader steering the sum of independent followers (x_i = p + shift).

        shift: added to every follower's best response
        size: number of followers
        """
        game = StackelbergGame(f"toy-{label}")
        m = game.model
        m.p = pyo.Var(bounds=(0, 5), initialize=0)
        xs = []
        for i in range(size):
            f = game.add_follower(f"f{i}")
            f.x = pyo.Var(bounds=(-50, 50), initialize=0)
            f.obj = pyo.Objective(expr=0.5 * f.x ** 2 - (m.p + shift) * f.x)
            xs.append(f.x)
        game.set_leader([m.p], objective=-(sum(xs) - 4) ** 2, sense=pyo.maximize)
        return game


    def unseeded(size=1):
        return build(0, size=size)


    def no_default(size):
        return build(0, size=size)


    def not_a_game(size=1):
        return 42
''')


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh directory holding a game file, made the current directory."""
    (tmp_path / "toygame.py").write_text(GAME)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [m for m in sys.modules if m == "toygame" or m.startswith("stackopt_user_toygame")]:
        del sys.modules[name]


def test_parameters_come_from_the_signature_with_their_types_and_help(workdir):
    spec = game_spec("toygame.py:build")
    assert list(spec.params) == ["shift", "size", "label", "exact"]
    assert [spec.params[k].type for k in spec.params] == [float, int, str, bool]
    assert spec.params["shift"].help == "added to every follower's best response"
    assert spec.params["size"].default == 2
    assert spec.location == f"{workdir / 'toygame.py'}:build" and spec.seeded
    assert not game_spec("toygame.py:unseeded").seeded


def test_a_module_in_the_current_directory_loads_without_pythonpath(workdir):
    assert str(workdir) not in sys.path and "" not in sys.path  # found without being on the path
    game = build_game("toygame:build", seed=3, size=3)
    assert len(game.structure().followers) == 3
    assert build_game("toygame.py:unseeded", size=2).structure().followers


@pytest.mark.parametrize("ref, message", [
    ("toygame.py:biuld", r"no function 'biuld'; did you mean toygame.py:build\?"),
    ("toygme.py:build", r"file 'toygme.py' does not exist .*relative to the current directory"),
    ("toygame.py:no_default", r"parameter 'size' of game builder no_default has no default; give it one"),
    ("toygame.py:not_a_game", r"returned int; a builder returns a stackopt.StackelbergGame"),
    ("toygame.py:", r"not of the form module:function"),
    ("nosuchmodule:build", r"module 'nosuchmodule' is not importable and there is no nosuchmodule.py"),
])
def test_bad_references_say_what_to_write(workdir, ref, message):
    with pytest.raises(ValueError, match=message):
        build_game(ref)


def test_unknown_parameter_and_unknown_game_suggest_the_close_name(workdir):
    with pytest.raises(ValueError, match=r"unknown parameter 'sise'.*did you mean 'size'"):
        build_game("toygame.py:build", sise=2)
    with pytest.raises(ValueError, match=r"unknown game 'nfgg'.*did you mean 'nfg'.*module:function"):
        game_spec("nfgg")


def test_solve_a_game_file_from_the_command_line(workdir, capsys):
    assert main(["solve", "toygame.py:build", "--size", "3", "--shift", "0.5", "--method", "initial",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["game"] == "toy-x" and len(out["follower_values"]) == 3
    assert out["follower_values"]["f0.x"] == pytest.approx(0.5, abs=1e-6)  # x_i = p + shift at p = 0
    assert main(["games", "toygame.py:build"]) == 0
    assert "--shift" in capsys.readouterr().out


def test_solve_with_a_parameter_error_names_the_flag(workdir, capsys):
    with pytest.raises(SystemExit):
        main(["solve", "toygame.py:build", "--size", "two"])
    assert "argument --size: expected an integer, got 'two'" in capsys.readouterr().err


def test_a_config_names_a_game_file_relative_to_its_own_folder(workdir, tmp_path_factory, monkeypatch):
    conf = workdir / "sweep.toml"
    conf.write_text(textwrap.dedent('''
        seeds = [1]
        time_limit = 30
        [experiments.toy]
        game = "toygame.py:build"
        [experiments.toy.grid]
        size = [1, 2]
        [experiments.toy.methods.initial]
    '''))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)  # the config is read from another directory
    config = load_config(str(conf))
    cells = config.cells()
    assert [c.game for c in cells] == ["toygame.py:build"] * 2  # the key holds the name as written
    assert {c.game_ref for c in cells} == {f"{workdir / 'toygame.py'}:build"}
    row = run_cell(cells[1])
    assert row["status"] == "converged" and len(row["follower_values"]) == 2


def test_a_config_with_a_missing_game_file_names_the_experiment(workdir):
    conf = workdir / "bad.toml"
    conf.write_text('seeds = [1]\n[experiments.toy]\ngame = "missing.py:build"\n'
                    "[experiments.toy.methods.initial]\n")
    with pytest.raises(ValueError, match=r"experiment 'toy': file 'missing.py' does not exist"):
        load_config(str(conf))


def test_the_console_script_solves_a_game_file_from_a_fresh_directory(workdir, tmp_path_factory):
    fresh = tmp_path_factory.mktemp("fresh")
    script = Path(sys.executable).with_name("stackopt")
    out = subprocess.run([str(script), "solve", str(workdir / "toygame.py") + ":build", "--method",
                          "gradient", "--json"], cwd=fresh, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["status"] == "converged" and res["leader_objective"] == pytest.approx(0.0, abs=1e-6)
