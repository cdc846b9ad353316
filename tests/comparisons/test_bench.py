"""The benchmarks' own steps run: a benchmark that breaks is a figure nobody can rerun."""
import math

from stackopt.comparisons.bench_solve import _warm_step
from stackopt.models import build_game


def test_bench_solves_warm_step_times_the_gradient_methods_step():
    game = build_game("nfg", seed=1, players=2, actions=5, budget=2.0)
    wall, cpu = _warm_step(game, 3)
    assert math.isfinite(wall) and math.isfinite(cpu)
    assert 0 < wall < 5 and 0 <= cpu < 5
