"""The command line: promised JSON fields, help a newcomer can read, and errors that name the flag."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stackopt import cli
from stackopt.cli import main
from stackopt.core.options import choices, domain_of
from stackopt.methods import available_methods, get_method

FIELDS = {"game", "method", "seed", "leader_objective", "initial_objective", "constraint_violation",
          "equilibrium_residual", "status", "wall_time_s"}
SMALL = ["nfg", "--players", "2", "--actions", "3"]
SCRIPT = Path(sys.executable).with_name("stackopt")  # the installed console script


def _err(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_solve_json(capsys):
    assert main(["solve", *SMALL, "--budget", "1", "--seed", "1",
                 "--method", "gradient", "--steps", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert FIELDS <= set(out) and out["game"] == "nfg" and out["seed"] == 1
    assert out["status"] in ("converged", "max_iterations")  # 50 steps need not reach the stopping rule
    # the leader's and the followers' values, by Pyomo name
    assert len(out["leader_values"]) == 2 * 9 and len(out["follower_values"]) == 2 * 3
    assert all(math.isfinite(v) and v >= 0 for v in out["leader_values"].values())
    probs = [v for k, v in out["follower_values"].items() if k.startswith("p0.")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)  # a mixed strategy
    assert out["options"]["steps"] == 50 and "history" not in out


def test_solve_scoring_precision_and_draws(capsys):
    """--max-draws caps the scoring's draws (cyber insurance's followers are not provably
    convex: at least ten draws by default); the values go to scoring, not to the method."""
    argv = ["solve", "cyber", "--customers", "3", "--method", "initial", "--seed", "1", "--json"]
    assert main(argv) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["draws"] >= 10
    assert main([*argv, "--max-draws", "3", "--precision", "0.5"]) == 0
    capped = json.loads(capsys.readouterr().out)
    assert capped["draws"] == 3 and "precision" not in capped["options"]


def test_solve_text_is_a_short_summary(capsys):
    assert main(["solve", *SMALL, "--seed", "1", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gradient on nfg (seed 1): ")
    assert "leader values" in out and "'step'" not in out and not re.search(r"-0(?![.\d])", out)
    assert len(out.splitlines()) < 15


def test_check_gradient_json(capsys):
    assert main(["check-gradient", *SMALL, "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["max_relative_error"] <= 1e-5
    assert list(out["rows"])[0] == "objective" and len(out["rows"]) == 2  # objective, budget
    assert len(out["columns"]) == 18 and out["columns"][0] == "pi[0,0]"
    row = out["rows"]["objective"]
    assert len(row["implicit"]) == len(row["finite_difference"]) == 18


def test_check_gradient_text(capsys):
    assert main(["check-gradient", *SMALL, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "objective" in out and "max relative error" in out


def test_bad_game_parameter_is_a_clear_error(capsys):
    assert main(["solve", "nfg", "--budget", "-1", "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "budget must be a finite number >= 0, got -1.0" in err
    assert "argument --budget:" in err


@pytest.mark.parametrize("argv, message", [
    (["solve", *SMALL, "--seed", "-1"], "argument --seed: expected a non-negative integer, got '-1'"),
    (["solve", *SMALL, "--steps", "-5"], "argument --steps: expected a positive integer, got -5"),
    (["solve", *SMALL, "--steps", "2.5"], "argument --steps: expected a positive integer, got '2.5'"),
    (["solve", *SMALL, "--lr", "nan"], "argument --lr: expected a number > 0, got nan"),
    (["solve", *SMALL, "--beta1", "1.5"], r"argument --beta1: expected a number in \[0, 1\), got 1.5"),
    (["solve", *SMALL, "--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["solve", *SMALL, "--time-limit", "0"], "argument --time-limit: expected a finite number > 0"),
    (["solve", "nfg", "--players", "2.5"], "argument --players: expected an integer, got '2.5'"),
    (["solve", *SMALL, "--method", "mpec-ipopt", "--ipopt-options", "[1]"],
     r"argument --ipopt-options: expected a JSON object, got '\[1\]'"),
    (["solve", *SMALL, "--method", "mpec-scip", "--multiplier-bound", "-2"],
     "argument --multiplier-bound: expected a finite number > 0, got -2"),
    (["solve", "chess"], "argument GAME: unknown game 'chess'; expected one of .*module:function"),
    (["solve", *SMALL, "--method", "simplex"], "argument --method: invalid choice: 'simplex'"),
    (["check-gradient", *SMALL, "--step", "-1"], "argument --step: expected a finite number > 0"),
    (["check-gradient", *SMALL, "--seed", "x"], "argument --seed: expected a non-negative integer"),
    (["solve", *SMALL, "--precision", "-1"], "argument --precision: expected a finite number > 0"),
    (["solve", *SMALL, "--max-draws", "0"], "argument --max-draws: expected a positive integer"),
    (["theorem1", "--C", "-1"], "argument --C: expected a finite number > 0, got '-1'"),
    (["theorem1", "--epsilon", "inf"], "argument --epsilon: expected a finite number > 0"),
])
def test_errors_name_the_flag(capsys, argv, message):
    err = _err(capsys, argv)
    assert re.search(message, err), err
    assert "Failed casting" not in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["compare", "--seeds", "5-1", "--dry-run"], "argument --seeds: the seed list: bad seed range '5-1'"),
    (["compare", "--seeds", "1,1", "--dry-run"], "argument --seeds: the seed list lists a seed twice"),
    (["compare", "--workers", "0"], "argument --workers: expected a positive integer, got '0'"),
    (["compare", "--precision", "0", "--dry-run"], "argument --precision: expected a finite number > 0"),
    (["compare", "--max-draws", "1.5", "--dry-run"], "argument --max-draws: expected a positive integer"),
])
def test_compare_flag_errors(capsys, argv, message):
    assert message in _err(capsys, argv)


@pytest.mark.parametrize("flag, value, message", [
    ("--experiment", "nope", "argument --experiment: unknown experiment 'nope'"),
    ("--methods", "gradient,nope", "argument --methods: unknown method 'nope'"),
])
def test_compare_override_errors_name_the_flag(capsys, tmp_path, flag, value, message):
    db = tmp_path / "x.sqlite"
    assert main(["compare", flag, value, "--dry-run", "--db", str(db)]) == 2
    assert message in capsys.readouterr().err and not db.exists()


def test_a_game_error_names_the_flag_at_fault(capsys):
    argv = ["solve", "ssg", "--targets", "4", "--defenders", "2", "--coverable", "6", "--steps", "2"]
    assert main(argv) == 2
    assert "argument --coverable: coverable" in capsys.readouterr().err


@pytest.mark.parametrize("argv, wrong", [
    (["solve", *SMALL, "--step", "10"], "--step"),  # not --steps
    (["solve", *SMALL, "--optim", "sgd"], "--optim"),
    (["check-gradient", *SMALL, "--ste", "1e-4"], "--ste"),
    (["theorem1", "--eps", "1"], "--eps"),
    (["compare", "--work", "1", "--dry-run"], "--work"),
    (["report", "results.sqlite", "--ou", "x"], "--ou"),
    (["--vers"], "--vers"),
])
def test_abbreviations_are_rejected(capsys, argv, wrong):
    err = _err(capsys, argv)
    assert f"unrecognized arguments: {wrong}" in err


def test_unknown_method_rejected():
    with pytest.raises(SystemExit):
        main(["solve", "nfg", "--method", "simplex"])


def test_top_level_help_lists_every_command_with_a_description(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command, words in [("solve", "one game instance"), ("check-gradient", "finite differences"),
                           ("compare", "identical instances"), ("report", "figures"),
                           ("games", "built-in games"), ("methods", "solution methods"),
                           ("theorem1", "Theorem-1")]:
        assert command in out and words in out
    assert "see `stackopt" not in out


def test_solve_help_has_plain_metavars_and_choices(capsys):
    with pytest.raises(SystemExit):
        main(["solve", "nfg", "--help"])
    out = capsys.readouterr().out
    assert "GAME__" not in out and "OPT__" not in out and "game__" not in out
    for text in ("--players N", "--budget X", "--steps N", "--lr X", "{adam,radam,sgd,spg}", "{none,cosine}",
                 "{mean,worst}", "{best-feasible,last}", "mpec-ipopt"):
        assert text in out, text
    listed = re.search(r"GAME\s+one of ([\w,\s-]+?)(?:,\s+or\s+a\s+builder|\n\s*\n)", out).group(1)
    games = {g.strip() for g in listed.split(",")}
    assert {"cyber", "library", "nfg", "ssg", "market"} <= games
    with pytest.raises(SystemExit):
        main(["solve", "--help"])  # without a game: the common flags, and where to look next
    out = capsys.readouterr().out
    assert "--method NAME" in out and "stackopt games" in out


@pytest.mark.parametrize("method", available_methods())
def test_every_finite_domain_is_offered_as_choices(method):
    """Choices come from the method's ConfigDict domains (In, Bool), whatever they are."""
    ap, _, _, names = cli._command_parser("solve", ["nfg", "--method", method], "", True)
    cfg = get_method(method).CONFIG()
    actions = {a.dest: a for a in ap._actions}
    assert names == list(cfg.keys())
    for key in cfg.keys():
        opts = choices(domain_of(cfg.get(key)))
        action = actions[f"opt__{key}"]
        if opts is None:
            continue
        if all(isinstance(o, bool) for o in opts):
            assert action.metavar == "{true,false}"
        else:
            assert action.choices == opts and action.metavar == "{" + ",".join(opts) + "}"


def test_methods_and_games_print_plain_text(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "`" not in out and ":mod:" not in out
    assert "initial" in out and "(None read as 0" in out and "aliases: scholtes" in out
    assert main(["methods", "mpec-ipopt"]) == 0
    out = capsys.readouterr().out
    assert "`" not in out and ":mod:" not in out and "See " not in out
    assert "--eps-initial X" in out and "--exact-hessian {true,false}" in out
    assert main(["games"]) == 0
    assert "``" not in capsys.readouterr().out
    assert main(["games", "ssg"]) == 0
    assert "--targets" in capsys.readouterr().out
    assert main(["methods", "simplex"]) == 2
    assert "unknown method 'simplex'" in capsys.readouterr().err
    assert main(["games", "chess"]) == 2
    assert "unknown game 'chess'" in capsys.readouterr().err


def test_plain_strips_restructured_text():
    assert cli.plain("``None`` via :mod:`stackopt.nlp` and :func:`~a.b.c`, see `x`_") == \
        "None via stackopt.nlp and c, see x"
    assert cli.plain(":class:`the game <stackopt.game.StackelbergGame>`") == "the game"


def test_console_script_installed(tmp_path):
    out = subprocess.run([str(SCRIPT), "methods"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "gradient" in out.stdout and "mpec-ipopt" in out.stdout
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "check-gradient" in out.stdout
    out = subprocess.run([str(SCRIPT), "methods", "mpec-scip"], capture_output=True, text=True,
                         cwd=tmp_path)  # a fresh process: the registry loads itself
    assert out.returncode == 0 and "--formulation {bigm,sos1}" in out.stdout


def test_module_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "stackopt.cli", "solve", *SMALL, "--steps", "3",
                          "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["game"] == "nfg"


def test_a_method_option_named_like_a_game_parameter_gets_its_own_flag():
    ap = cli.Parser(prog="t")
    ap.add_argument("--mu", dest="game__mu")  # say a game had a parameter mu
    names = cli._method_arguments(ap, "gradient", taken={"steps"})
    ns = ap.parse_args(["--option-steps", "7", "--option-mu", "2.5", "--mu", "1"])
    assert "steps" in names and ns.opt__steps == 7 and ns.opt__mu == 2.5 and ns.game__mu == "1"


# ------------------------------------------------------------------ Ctrl-C and --json errors
def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("argv, target", [
    (["solve", *SMALL], "stackopt.api.solve"),
    (["solve", *SMALL, "--json"], "stackopt.api.solve"),
    (["check-gradient", *SMALL], "stackopt.checks.check_gradient"),
    (["check-gradient", *SMALL, "--json"], "stackopt.checks.check_gradient"),
    (["report", "results.sqlite"], "stackopt.comparisons.report.make_report"),
    (["games"], "stackopt.models.available_games"),
    (["methods"], "stackopt.methods.registry.available_methods"),
    (["theorem1", "--json"], "stackopt.models.theorem1.theorem1_report"),
])
def test_ctrl_c_ends_every_command_with_one_line_and_status_130(capsys, monkeypatch, argv, target):
    monkeypatch.setattr(target, _interrupt)
    assert main(argv) == 130
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"stackopt {argv[0]}: interrupted"]
    if "--json" in argv:
        assert json.loads(out) == {"error": "interrupted", "exit_status": 130}
    else:
        assert out == ""


def _interrupt_dropped_by_compiled_code(*args, **kwargs):
    """Ctrl-C arrives inside a callback from compiled code, which prints and drops it (as
    llvmlite's ctypes callback did while Numba cached a function); the command runs on."""
    import ctypes
    import time

    ctypes.CFUNCTYPE(None)(_interrupt)()  # dropped: ctypes reports it as unraisable
    for _ in range(200):  # two seconds of work in Python
        time.sleep(0.01)
    return 0


def test_ctrl_c_dropped_by_compiled_code_still_ends_the_command(capsys, monkeypatch):
    monkeypatch.setattr("stackopt.models.theorem1.theorem1_report", _interrupt_dropped_by_compiled_code)
    hook = sys.unraisablehook
    assert main(["theorem1", "--json"]) == 130
    assert sys.unraisablehook is hook  # the command's own hook is gone
    out, err = capsys.readouterr()
    assert err.splitlines() == ["stackopt theorem1: interrupted"]  # nothing of the dropped one
    assert json.loads(out) == {"error": "interrupted", "exit_status": 130}


@pytest.mark.parametrize("argv", [
    ["solve", "ssg", "--targets", "100", "--defenders", "5", "--method", "gradient"],
    ["solve", "ssg", "--targets", "100", "--defenders", "5", "--method", "slsqp", "--time-limit", "60"],
])
def test_ctrl_c_on_a_terminal_prints_one_line(tmp_path, argv):
    """SIGINT to the command's process group, as a terminal sends it (children included: slsqp
    with a time limit optimises in a forked child)."""
    import os
    import signal
    import time

    def terminal():  # Ctrl-C enabled, as on a terminal, even where the tests run with it ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([str(SCRIPT), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, start_new_session=True, preexec_fn=terminal)
    time.sleep(6)  # inside the solve (it runs well past 6 s), not at its end
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["stackopt solve: interrupted"], err
    assert out == ""


@pytest.mark.parametrize("argv, message", [
    (["solve", *SMALL, "--steps", "-5", "--json"], "argument --steps: expected a positive integer, got -5"),
    (["solve", "nfg", "--budget", "-1", "--json"], "argument --budget: budget must be a finite number"),
    (["solve", *SMALL, "--steps", "5", "--resample-every", "10", "--json"],
     "resample_every=10 is larger than steps=5"),  # refused by solve
    (["check-gradient", *SMALL, "--step", "-1", "--json"], "argument --step: expected a finite number > 0"),
    (["theorem1", "--C", "-1", "--json"], "argument --C: expected a finite number > 0, got '-1'"),
])
def test_with_json_an_error_is_a_json_object(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exc:  # a usage error: argparse's own exit
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2
    obj = json.loads(out)
    assert obj["exit_status"] == 2 and message in obj["error"], obj
    assert message in err and "Traceback" not in err
@pytest.mark.parametrize("argv, hint", [
    (["solve", *SMALL, "--stepz", "10"], "unrecognized arguments: --stepz 10; did you mean --steps?"),
    (["solve", *SMALL, "--optimizer", "adm"], "invalid choice: 'adm' (choose from 'adam', 'radam', "
                                              "'sgd', 'spg') (did you mean 'adam'?)"),
    (["solve", *SMALL, "--method", "gradiant"], "(did you mean 'gradient'?)"),
    (["solve", *SMALL, "--zzz", "1"], "unrecognized arguments: --zzz 1; `stackopt solve GAME --help` "
                                      "lists the flags"),
    (["compare", "--wokers", "2", "--dbb", "x"], "did you mean --workers (for --wokers), --db (for --dbb)?"),
    (["report", "r.sqlite", "--outt", "x"], "unrecognized arguments: --outt x; did you mean --out?"),
    (["theorem1", "--epsilonn", "1"], "did you mean --epsilon?"),
])
def test_a_mistyped_flag_or_choice_gets_the_closest_one(capsys, argv, hint):
    assert hint in _err(capsys, argv)


def test_compare_help_lists_every_built_in_config_and_report_help_every_figure(capsys):
    from stackopt.comparisons.config import builtin_configs
    from stackopt.comparisons.figures import KINDS

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = re.sub(r"-\s+", "-", capsys.readouterr().out)  # help text wraps after a hyphen
    assert "reference" in builtin_configs()
    for name in builtin_configs():
        assert name in out, name
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split()).lower()
    for *_, title in KINDS.values():
        assert title.lower() in out, title


def test_json_prints_the_values_of_a_small_game_and_a_summary_of_a_large_one(capsys):
    big = ["solve", "nfg", "--players", "2", "--actions", "5", "--method", "initial", "--json"]
    assert main(big) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["values_count"] == {"leader": 50, "followers": 10}
    assert "leader_values" not in out and "follower_values" not in out
    assert out["values_omitted"] == "60 values; add --values to print them"
    assert main([*big, "--values"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["leader_values"]) == 50 and len(out["follower_values"]) == 10
    assert main(big[:-1]) == 0
    assert "(every value: add --json --values)" in capsys.readouterr().out


def test_option_and_config_key_errors_suggest_the_closest_name(tmp_path):
    from stackopt.comparisons.config import parse_config
    from stackopt.methods import method_config

    with pytest.raises(ValueError, match=r"unknown option 'stpes' for method 'gradient' \(did you mean 'steps'\?\)"):
        method_config("gradient", {"stpes": 3})
    with pytest.raises(ValueError, match=r"unknown key 'seed' in config 'c' \(did you mean 'seeds'\?\)"):
        parse_config('seed = [1]\n[experiments.a]\ngame = "nfg"\n', name="c")
