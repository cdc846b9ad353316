"""The games several test modules share."""
import numpy as np
import pyomo.environ as pyo

from stackopt import StackelbergGame


def make_duopoly(lb=0.0, ub=10.0, constraint=True):
    """Two followers with non-symmetric coupling; equilibrium x = M^{-1} pi, M = [[2, .5], [-1, 3]]."""
    game = StackelbergGame("duopoly")
    m = game.model
    m.pi = pyo.Var([1, 2], bounds=(lb, ub), initialize=0)
    f1 = game.add_follower("firm1")
    f2 = game.add_follower("firm2")
    f1.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f2.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f1.cost = pyo.Objective(expr=f1.x**2 + 0.5 * f1.x * f2.x - m.pi[1] * f1.x, sense=pyo.minimize)
    f2.cost = pyo.Objective(expr=1.5 * f2.x**2 - f1.x * f2.x - m.pi[2] * f2.x, sense=pyo.minimize)
    game.set_leader(variables=[m.pi], objective=-(f1.x - 3) ** 2 - (f2.x - 1) ** 2, sense=pyo.maximize,
                    constraints=[f1.x + f2.x <= 3] if constraint else [])
    return game


DUOPOLY_M = np.array([[2.0, 0.5], [-1.0, 3.0]])
