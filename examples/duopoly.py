"""The README's example: a leader pricing two firms that play a Nash equilibrium.

Each firm chooses its output ``x``; the leader's variables ``pi`` enter the
firms' costs, and the leader wants the outputs near ``(3, 1)`` with total
output at most 3, evaluated at the firms' equilibrium. Run it:

    python examples/duopoly.py
"""
import pyomo.environ as pyo

from stackopt import StackelbergGame, solve


def build() -> StackelbergGame:
    """Two firms with non-symmetric coupling and a leader with a constraint on their equilibrium."""
    game = StackelbergGame("duopoly")  # the name is a label: any non-empty string
    m = game.model  # the pyo.ConcreteModel the game owns
    m.pi = pyo.Var([1, 2], bounds=(0, 10), initialize=0)  # leader variables; bounds = its feasible set
    f1 = game.add_follower("firm1")  # a pyo.Block on game.model
    f2 = game.add_follower("firm2")
    f1.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f2.x = pyo.Var(bounds=(-100, 100), initialize=0)
    f1.cost = pyo.Objective(expr=f1.x**2 + 0.5 * f1.x * f2.x - m.pi[1] * f1.x, sense=pyo.minimize)
    f2.cost = pyo.Objective(expr=1.5 * f2.x**2 - f1.x * f2.x - m.pi[2] * f2.x, sense=pyo.minimize)
    game.set_leader(variables=[m.pi], objective=-(f1.x - 3) ** 2 - (f2.x - 1) ** 2, sense=pyo.maximize,
                    constraints=[f1.x + f2.x <= 3])  # evaluated at the equilibrium
    return game


if __name__ == "__main__":
    res = solve(build(), method="gradient", seed=0)  # default options: nothing to tune
    print(res.status, res.leader_objective, res.leader_values)
    print(res)  # a short summary; repr(res) is one line
