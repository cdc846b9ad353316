"""plot_history: the convergence curves of a result's history."""
import matplotlib
import pytest
from games import make_duopoly

import stackopt

matplotlib.use("Agg")


def test_plot_history_draws_objective_violation_and_stationarity(tmp_path):
    res = stackopt.solve(make_duopoly(), "gradient", seed=0)
    fig = stackopt.plot_history(res, tmp_path / "h.png")
    axes = fig.get_axes()
    assert [a.get_ylabel() for a in axes] == ["leader objective", "constraint violation", "stationarity"]
    xs, ys = axes[0].get_lines()[0].get_data()
    assert list(ys) == [h["leader_objective"] for h in res.history]
    assert list(xs) == [h["step"] for h in res.history]
    assert axes[2].get_yscale() == "log"
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert "gradient on duopoly (seed 0): converged" in fig._suptitle.get_text()


def test_plot_history_takes_stored_records_and_numbers_restarts():
    records = [{"iteration": 0, "objective": 1.0}, {"iteration": 1, "objective": 2.0},
               {"iteration": 0, "objective": 1.5}]  # a second start
    fig = stackopt.plot_history(records, title="restarts")
    assert len(fig.get_axes()) == 1  # only the objective was recorded
    xs, ys = fig.get_axes()[0].get_lines()[0].get_data()
    assert list(xs) == [0, 1, 2] and list(ys) == [1.0, 2.0, 1.5]


def test_plot_history_without_records_says_why():
    res = stackopt.solve(make_duopoly(), "initial")
    with pytest.raises(ValueError, match="non-empty history .*`initial`"):
        stackopt.plot_history(res)
    with pytest.raises(ValueError, match=r"records no objective, violation or stationarity; its keys are \['eps'\]"):
        stackopt.plot_history([{"eps": 0.1}])
