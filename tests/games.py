"""The games several test modules share."""
import numpy as np
import pyomo.environ as pyo

from stackopt import StackelbergGame


def make_duopoly(lb=0.0, ub=10.0, constraint=True, cap=3.0, leader=1.0, cons=1.0, followers=1.0):
    """Two followers with non-symmetric coupling; equilibrium x = M^{-1} pi, M = [[2, .5], [-1, 3]].

    The leader's constraint is ``x1 + x2 <= cap``; ``leader``, ``cons`` and ``followers``
    multiply the leader's objective, its constraint and the followers' objectives (the same
    equilibria and optimum)."""
    def times(c, e):
        return e if c == 1 else c * e

    game = StackelbergGame("duopoly")
    m = game.model
    m.pi = pyo.Var([1, 2], bounds=(lb, ub), initialize=0)
    f1 = game.add_follower("firm1")
    f2 = game.add_follower("firm2")
    f1.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f2.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f1.cost = pyo.Objective(expr=times(followers, f1.x**2 + 0.5 * f1.x * f2.x - m.pi[1] * f1.x),
                            sense=pyo.minimize)
    f2.cost = pyo.Objective(expr=times(followers, 1.5 * f2.x**2 - f1.x * f2.x - m.pi[2] * f2.x),
                            sense=pyo.minimize)
    game.set_leader(variables=[m.pi], objective=times(leader, -(f1.x - 3) ** 2 - (f2.x - 1) ** 2),
                    sense=pyo.maximize,
                    constraints=[times(cons, f1.x + f2.x) <= times(cons, cap)] if constraint else [])
    return game


DUOPOLY_M = np.array([[2.0, 0.5], [-1.0, 3.0]])
