"""The command line prints the promised JSON fields."""
import json
import subprocess
import sys

import pytest

from stackopt.cli import main

FIELDS = {"game", "method", "seed", "leader_objective", "initial_objective", "constraint_violation",
          "equilibrium_residual", "status", "wall_time_s"}


def test_solve_json(capsys):
    assert main(["solve", "nfg", "--players", "2", "--actions", "3", "--budget", "1", "--seed", "1",
                 "--method", "gradient", "--steps", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert FIELDS <= set(out) and out["game"] == "nfg" and out["seed"] == 1
    assert out["status"] == "converged"


def test_check_gradient_json(capsys):
    assert main(["check-gradient", "nfg", "--players", "2", "--actions", "3", "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["max_relative_error"] <= 1e-5


def test_bad_game_parameter_is_a_clear_error(capsys):
    assert main(["solve", "nfg", "--budget", "-1", "--steps", "5"]) == 2
    assert "budget must be a finite number >= 0, got -1.0" in capsys.readouterr().err


def test_unknown_method_rejected():
    with pytest.raises(SystemExit):
        main(["solve", "nfg", "--method", "simplex"])


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "stackopt.cli", "methods"], capture_output=True, text=True)
    assert out.returncode == 0 and "gradient" in out.stdout and "mpec-ipopt" in out.stdout
