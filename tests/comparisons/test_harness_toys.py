"""A tiny game and a few methods that the harness tests sweep over.

Imported as a plugin (``plugins = ["test_harness_toys"]``) by the parent and by
every worker, so the harness is exercised without the production solvers.

The toy game has ``size`` followers; follower i minimises
``0.5 x_i^2 - (a_i p + b_i) x_i`` on [0, 100], so its equilibrium is
``x_i = a_i p + b_i``; the leader (p in [0, 5]) maximises
``-(sum_i x_i - target)^2`` subject to ``sum_i x_i <= 1 + budget``.
"""
from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo
from pyomo.common.config import ConfigValue, NonNegativeFloat

from stackopt import StackelbergGame, Status
from stackopt.methods import Method, MethodOutput, available_methods, register_method
from stackopt.models import Param, available_games, register_game

P_UB = 5.0


def toy_data(seed: int, size: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"a": rng.uniform(0.5, 1.5, size), "b": rng.uniform(0.0, 1.0, size),
            "target": np.array(2.0 + 3.0 * rng.uniform())}


if "harness_toy" not in available_games():
    @register_game("harness_toy", params={
        "size": Param(int, 2, "number of followers"),
        "budget": Param(float, 1.0, "leader budget on sum_i x_i - 1"),
        "shift": Param(float, 0.0, "added to b (changes the instance data)"),
    })
    def harness_toy(seed: int = 0, *, size: int = 2, budget: float = 1.0, shift: float = 0.0):
        """Toy game with a closed-form equilibrium, for harness tests."""
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget!r}")
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        data = toy_data(seed, size)
        data["b"] = data["b"] + shift
        game = StackelbergGame("harness_toy")
        m = game.model
        m.p = pyo.Var(bounds=(0.0, P_UB), initialize=0.0)
        xs = []
        for i in range(size):
            f = game.add_follower(f"f{i}")
            f.x = pyo.Var(bounds=(0.0, 100.0), initialize=0.0)
            f.obj = pyo.Objective(expr=0.5 * f.x ** 2 - (data["a"][i] * m.p + data["b"][i]) * f.x)
            xs.append(f.x)
        total = sum(xs)
        game.set_leader(variables=[m.p], objective=-(total - float(data["target"])) ** 2,
                        sense=pyo.maximize, constraints=[total <= 1.0 + budget])
        game.data = dict(data, budget=np.array(budget))
        return game


def fill_store(path, text: str, name: str):
    """Run every cell of the config ``text`` in this process into the results database
    ``path`` (one run named ``name``, as a sweep would record it); returns ``path``."""
    from stackopt.comparisons.config import parse_config
    from stackopt.comparisons.runner import run_cell
    from stackopt.comparisons.store import Store

    config = parse_config(text, name=name)
    with Store.open(path) as store:
        run = store.start_run(config_name=config.name, config_text=config.text, argv=[],
                              scheduler="in-process", versions={}, machine={})
        for cell in config.cells():
            row = run_cell(cell)
            row["run_id"] = run
            store.insert(row)
    return path


def toy_value(data: dict, budget: float, p: float) -> tuple[float, float]:
    total = float(np.sum(data["a"] * p + data["b"]))
    return -(total - float(data["target"])) ** 2, max(0.0, total - 1.0 - budget)


def _register(name, cls):
    if name not in available_methods():
        register_method(name)(cls)


class SleepMethod(Method):
    """Sleeps, then proposes the initial leader values."""

    CONFIG = Method.CONFIG()
    CONFIG.declare("sleep", ConfigValue(default=0.0, domain=NonNegativeFloat, doc="seconds"))

    def run(self, game, config, seed, time_limit):
        time.sleep(config.sleep)
        p0 = np.array([v.value for v in game.structure().leader_variables], dtype=float)
        return MethodOutput(leader=p0, status=Status.CONVERGED, message="slept")


class RandomMethod(Method):
    """Proposes a seeded uniform leader strategy in [0, scale]."""

    CONFIG = Method.CONFIG()
    CONFIG.declare("scale", ConfigValue(default=1.0, domain=NonNegativeFloat, doc="upper end"))

    def run(self, game, config, seed, time_limit):
        n = len(game.structure().leader_variables)
        p = np.random.default_rng(seed).uniform(0.0, config.scale, n)
        return MethodOutput(leader=p, status=Status.CONVERGED, history=[{"step": 0, "p": float(p[0])}])


class ExactMethod(Method):
    """Grid search on the closed form; certifies its value as a bound (status optimal)."""

    CONFIG = Method.CONFIG()

    def run(self, game, config, seed, time_limit):
        data = game.data
        grid = np.linspace(0.0, P_UB, 5001)
        best, best_p = -np.inf, 0.0
        for p in grid:
            val, viol = toy_value(data, float(data["budget"]), p)
            if viol <= 0 and val > best:
                best, best_p = val, p
        return MethodOutput(leader=np.array([best_p]), status=Status.OPTIMAL,
                            claimed_objective=best, bound=best, gap=0.0)


class CrashMethod(Method):
    """Always raises inside run()."""

    CONFIG = Method.CONFIG()

    def run(self, game, config, seed, time_limit):
        raise RuntimeError("toy method crashed on purpose")


def _child_value(queue, seed):
    queue.put(float(np.random.default_rng(seed).uniform(0.0, 1.0)))


class ForkMethod(Method):
    """Computes its proposal in a child process, as methods that isolate a solver do."""

    CONFIG = Method.CONFIG()

    def run(self, game, config, seed, time_limit):
        import multiprocessing as mp
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child_value, args=(queue, seed))
        proc.start()
        value = queue.get(timeout=60)
        proc.join()
        return MethodOutput(leader=np.array([value]), status=Status.CONVERGED)


class DieMethod(Method):
    """Kills its own process (a segfault or the OOM killer, as a worker sees it)."""

    CONFIG = Method.CONFIG()

    def run(self, game, config, seed, time_limit):
        import os
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


_register("test-sleep", SleepMethod)
_register("test-die", DieMethod)
_register("test-fork", ForkMethod)
_register("test-random", RandomMethod)
_register("test-exact", ExactMethod)
_register("test-crash", CrashMethod)


def test_toy_instances_are_pure_functions_of_seed_and_params():
    from stackopt.comparisons.runner import fingerprint
    from stackopt.models import build_game

    a = fingerprint(build_game("harness_toy", 3, size=2, budget=1.0))
    assert a == fingerprint(build_game("harness_toy", 3, size=2, budget=1.0))
    assert a != fingerprint(build_game("harness_toy", 4, size=2, budget=1.0))
    assert a != fingerprint(build_game("harness_toy", 3, size=2, budget=1.0, shift=0.5))
    assert a != fingerprint(build_game("harness_toy", 3, size=2, budget=2.0))
