"""Progress of a solve: a bar on a terminal, periodic lines elsewhere, nothing by default off a terminal."""
import io

import pytest
from games import make_duopoly

from stackopt import solve
from stackopt.core import progress as progress_module
from stackopt.core.progress import Bar, Lines, Silent, describe, make_progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_default_shows_a_bar_on_a_terminal_and_nothing_elsewhere():
    assert isinstance(make_progress(None, "x", stream=io.StringIO()), Silent)
    assert isinstance(make_progress(False, "x", stream=Terminal()), Silent)
    assert isinstance(make_progress(None, "x", stream=Terminal()), Bar)
    assert isinstance(make_progress(True, "x", stream=Terminal()), Bar)
    assert isinstance(make_progress(True, "x", stream=io.StringIO()), Lines)


def test_progress_must_be_a_boolean_or_none():
    with pytest.raises(ValueError, match=r"progress must be True, False or None .*got 'yes'"):
        make_progress("yes", "x")
    with pytest.raises(ValueError, match="progress must be True, False or None"):
        solve(make_duopoly(), "gradient", progress="yes")


def test_a_record_is_described_by_objective_violation_and_stationarity():
    assert describe({"step": 3, "leader_objective": -0.625, "violation": 0.0, "stationarity": 2e-7,
                     "mu": 10.0}) == "objective -0.625  violation 0  stationarity 2e-07"
    assert describe({"iteration": 1, "objective": 2.5, "primal_infeasibility": 0.1}) == \
        "objective 2.5  violation 0.1"


def test_lines_print_the_first_record_then_at_most_one_per_interval_and_the_last():
    out = io.StringIO()
    lines = Lines("gradient on g", 100, out, every=3600.0)
    for step in range(5):
        lines({"step": step, "leader_objective": float(step), "violation": 0.0})
    lines.close()
    text = out.getvalue().splitlines()
    assert len(text) == 2
    assert text[0].startswith("gradient on g: step 0/100  objective 0  violation 0")
    assert text[1].startswith("gradient on g: step 4/100  objective 4")


def test_a_bar_counts_the_steps_of_the_budget(monkeypatch):
    monkeypatch.setattr(progress_module, "BAR_DELAY_S", 0.0)
    monkeypatch.setattr(progress_module, "BAR_REFRESH_S", 0.0)
    out = Terminal()
    bar = Bar("gradient on g", 50, out)
    for step in range(10):
        bar({"step": step, "leader_objective": 1.0, "violation": 0.0, "stationarity": 0.5})
    assert bar.bar.n == 9 and bar.bar.total == 50
    bar.close()
    assert "gradient on g" in out.getvalue() and "stationarity 0.5" in out.getvalue()


def test_solve_with_progress_prints_the_gradient_method_steps_off_a_terminal(capsys):
    res = solve(make_duopoly(), "gradient", seed=0, progress=True)
    err = capsys.readouterr().err
    assert res.status.value == "converged"
    assert err.startswith("gradient on duopoly: step 0/5000  objective")
    last = err.strip().splitlines()[-1]
    assert f"step {res.history[-1]['step']}/5000" in last and "stationarity" in last
    assert type(res.history) is list  # the records, without the display


def test_solve_is_quiet_by_default_off_a_terminal(capsys):
    solve(make_duopoly(), "implicit-ipopt", seed=0)
    assert capsys.readouterr().err == ""
    solve(make_duopoly(), "implicit-ipopt", seed=0, progress=True)
    assert "implicit-ipopt on duopoly: step" in capsys.readouterr().err
