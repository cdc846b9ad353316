"""A method of your own: random search over the leader's box.

Importing this module registers the method ``random-search``; a comparison
config runs it with ``plugins = ["my_method.py"]`` (a path relative to the
config's folder), and Python with ``import my_method``. It uses only the public
API: ``stackopt.evaluate`` scores a leader strategy at the followers'
equilibrium. Run it on the commons game of ``my_game.py``:

    python examples/my_method.py
"""
import numpy as np
from pyomo.common.config import ConfigDict, ConfigValue, PositiveInt

import stackopt
from stackopt import Status
from stackopt.methods import Method, MethodOutput, ReportedHistory, register_method


@register_method("random-search")
class RandomSearch(Method):
    """Evaluate random leader strategies in the leader's box; return the best feasible one."""

    CONFIG = ConfigDict("random-search")
    CONFIG.declare("draws", ConfigValue(50, PositiveInt, "random leader strategies evaluated"))

    def run(self, game, config, seed, time_limit):
        structure = game.structure()
        lb = np.array([v.lb for v in structure.leader_variables], dtype=float)
        ub = np.array([v.ub for v in structure.leader_variables], dtype=float)
        rng = np.random.default_rng(seed)
        history = ReportedHistory(self.progress)   # stored in the result, shown by progress=True
        best, best_value = None, np.inf
        for step in range(config.draws):
            p = rng.uniform(lb, ub)
            e = stackopt.evaluate(game, p, seed=seed)
            history.append({"step": step, "objective": e.leader_objective,
                            "violation": e.constraint_violation})
            value = structure.leader_sense * e.leader_objective   # minimisation form
            if e.constraint_violation <= 1e-6 and value < best_value:
                best, best_value = p, value
        if best is None:
            return MethodOutput(leader=p, status=Status.NOT_CONVERGED, history=history,
                                message=f"no feasible strategy in {config.draws} draws")
        return MethodOutput(leader=best, status=Status.MAX_ITERATIONS, history=history,
                            claimed_objective=structure.leader_sense * best_value,
                            message=f"the best feasible of {config.draws} random strategies")


if __name__ == "__main__":
    from my_game import build, known_optimum

    res = stackopt.solve(build(farmers=4), "random-search", seed=0, draws=30)
    print(res.status, f"{res.leader_objective:.4f}", f"tax {res.leader_values['tax']:.4f}",
          f"(optimum {known_optimum(4)['welfare']:.4f} at tax {known_optimum(4)['tax']:.4f})")
