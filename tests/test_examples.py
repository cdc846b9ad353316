"""Every script and config in examples/ runs, each in a fresh process from a fresh directory, with
small settings; what each prints is checked against what it promises."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPT = Path(sys.executable).with_name("stackopt")  # the installed console script
COVERED = {"duopoly.py", "my_game.py", "compare_my_game.toml", "dask_sweep.py", "analyse_results.py",
           "my_method.py"}


def _run(argv, cwd, timeout=600):
    out = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{argv} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_every_example_is_run_by_this_module():
    assert {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".toml")} == COVERED


def test_the_duopoly_converges_to_its_optimum(tmp_path):
    first = _run([sys.executable, EXAMPLES / "duopoly.py"], tmp_path).splitlines()[0]
    status, objective = first.split()[:2]
    assert status == "converged" and float(objective) == pytest.approx(-0.625, abs=1e-5)


def test_my_game_reaches_its_known_optimum(tmp_path):
    out = _run([sys.executable, EXAMPLES / "my_game.py", "--farmers", "3",
                "--methods", "gradient,implicit-ipopt,initial"], tmp_path)
    assert "known optimum: tax 26.6667, welfare 1600.0000 (untaxed 1200.0000)" in out
    assert "initial          converged        welfare  1200.0000" in out  # n (v - c)^2 / (n + 1)^2


def test_my_game_meets_a_revenue_floor_at_its_known_optimum(tmp_path):
    out = _run([sys.executable, EXAMPLES / "my_game.py", "--min-revenue", "1250", "--methods", "gradient"],
               tmp_path)
    assert "known optimum: tax 33.8763, welfare 1590.3837" in out  # 40 - sqrt(37.5); the floor binds
    gradient = next(line for line in out.splitlines() if line.startswith("gradient"))
    _, status, _, welfare, _, tax, _, violation = gradient.split()
    assert status == "converged"
    # tolerances are relative to the problem's scales (a constraint's scale is the larger of its
    # value and its change over one scale of the leader's variables at the start: here ~4e3)
    assert float(welfare) == pytest.approx(1590.3837, rel=1e-6) and float(tax) == pytest.approx(33.8763, rel=1e-5)
    assert float(violation) <= 1e-6
    assert "largest relative gap to the known optimum: " in out and float(out.split()[-1]) < 1e-6


def test_my_game_solves_from_the_command_line_in_a_fresh_directory(tmp_path):
    out = json.loads(_run([SCRIPT, "solve", EXAMPLES / "my_game.py:build", "--farmers", "5",
                           "--method", "gradient", "--json"], tmp_path))
    assert out["status"] == "converged"
    assert out["leader_objective"] == pytest.approx(1600.0, rel=1e-6)
    assert out["leader_values"]["tax"] == pytest.approx(80 * 4 / 10, rel=1e-4)  # (v - c)(n - 1) / 2n


@pytest.fixture(scope="module")
def commons_db(tmp_path_factory):
    """The head-to-head config run from a fresh directory (two methods, one seed)."""
    where = tmp_path_factory.mktemp("compare")
    _run([SCRIPT, "compare", EXAMPLES / "compare_my_game.toml", "--db", "commons.sqlite", "--seeds", "1",
          "--methods", "gradient,initial", "--workers", "2", "--no-progress"], where)
    return where / "commons.sqlite"


def test_the_comparison_config_runs_and_reports(commons_db, tmp_path):
    _run([SCRIPT, "report", commons_db, "--out", "report"], tmp_path)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## commons (game `my_game.py:build`)" in text
    assert re.search(r"\| gradient \| 1600 (\(exact\)|\[1600, 1600\]) \| 1600 (\(exact\)|\[1600, 1600\]) \| "
                     r"1600 (\(exact\)|\[1600, 1600\]) \|", text), text


def test_results_load_into_pandas_and_plot(commons_db, tmp_path):
    out = _run([sys.executable, EXAMPLES / "analyse_results.py", commons_db, "--out", "plots"], tmp_path)
    assert "6 cells, methods ['gradient', 'initial']" in out
    assert "632.0988" in out  # the untaxed welfare of 8 farmers, 8 * 80^2 / 81
    assert (tmp_path / "plots" / "convergence-gradient.png").stat().st_size > 1000


def test_the_dask_sweep_runs_on_a_local_cluster(tmp_path):
    out = _run([sys.executable, EXAMPLES / "dask_sweep.py", "--db", "dask.sqlite", "--seeds", "1",
                "--methods", "initial", "--threads", "1"], tmp_path)
    assert "3 cells: 0 already stored, 3 run (converged 3)" in out


def test_my_method_registers_and_runs_in_a_config_as_a_plugin(tmp_path):
    out = _run([sys.executable, EXAMPLES / "my_method.py"], tmp_path)
    status, welfare = out.split()[:2]
    assert status == "max_iterations" and 1590 < float(welfare) <= 1600  # 30 random taxes in [0, 80]
    conf = tmp_path / "plugin.toml"  # a config elsewhere naming the plugin and the game by path
    method, game = EXAMPLES / "my_method.py", EXAMPLES / "my_game.py"
    conf.write_text(f'plugins = ["{method}"]\nseeds = [1]\n[experiments.c]\ngame = "{game}:build"\n'
                    "[experiments.c.grid]\nfarmers = 3\n[experiments.c.methods.random-search]\ndraws = 5\n")
    out = _run([SCRIPT, "compare", conf, "--db", "p.sqlite", "--workers", "1", "--no-progress"], tmp_path)
    assert "1 cells: 0 already stored, 1 run (max_iterations 1)" in out


def test_the_readme_example_prints_what_its_comment_says(tmp_path):
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    out = _run([sys.executable, "-c", code], tmp_path).split()
    assert out[0] == "converged" and float(out[1]) == pytest.approx(-0.625, abs=1e-5)
    assert "# converged -0.625 {'pi[1]': 4.875, 'pi[2]': 0.0}" in code
