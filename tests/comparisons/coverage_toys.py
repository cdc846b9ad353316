"""A registered game with three equilibria (``games.coordination``), for the coverage
command's tests: imported as a plugin (``plugins = ["coverage_toys"]``) by the parent and by
every worker."""
from games import coordination

from stackopt.models import Param, available_games, register_game

if "coverage_coordination" not in available_games():
    @register_game("coverage_coordination", params={
        "samples": Param(int, 5, "the game's tracked draws")})
    def coverage_coordination(seed: int = 0, *, samples: int = 5):
        """Two followers with three equilibria; the leader's objective 0, 1 or 2 at them."""
        return coordination(samples=samples)
