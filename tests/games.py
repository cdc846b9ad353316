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


def coupled(shared="variational", shared_weights=None):
    """Two followers, every new form at once, every constraint active at p = (1, 1.2): a has
    a disk (nonlinear in its own variables) of the leader's radius p2; b a budget with the
    leader's coefficient (p1 y1 <= 2) and a constraint using a's variable (y2 + u1 <= 3: it
    binds b only); the shared cap u2 + y1 + y2 + 0.1 u1^2 <= 2.83 + p2^2 binds both."""
    g = StackelbergGame("coupled", shared=shared, shared_weights=shared_weights)
    m = g.model
    m.p = pyo.Var([1, 2], bounds=(0.5, 2.0), initialize={1: 1.0, 2: 1.2})
    a, b = g.add_follower("a"), g.add_follower("b")
    a.u = pyo.Var([1, 2], bounds=(-5, 5), initialize=0.0)
    b.y = pyo.Var([1, 2], bounds=(-5, 5), initialize=0.0)
    a.obj = pyo.Objective(expr=(a.u[1] - 3) ** 2 + (a.u[2] - 2) ** 2)
    b.obj = pyo.Objective(expr=(b.y[1] - 4) ** 2 + (b.y[2] - 4) ** 2 + 0.3 * a.u[1] * b.y[1])
    a.disk = pyo.Constraint(expr=a.u[1] ** 2 + a.u[2] ** 2 <= m.p[2] ** 2)
    b.budget = pyo.Constraint(expr=m.p[1] * b.y[1] <= 2)
    b.room = pyo.Constraint(expr=b.y[2] + a.u[1] <= 3)
    g.add_shared_constraint("cap", a.u[2] + b.y[1] + b.y[2] + 0.1 * a.u[1] ** 2 <= 2.83 + m.p[2] ** 2)
    g.set_leader([m.p], objective=a.u[1] + 2 * a.u[2] + 3 * b.y[1], sense=pyo.maximize)
    return g


def circle(sense=pyo.maximize):
    """One follower on the circle u1^2 + u2^2 = 1 (a nonlinear equality: a non-convex set)
    nearest to (p, 1), p in [0, 3] the leader's; the leader's objective is u1."""
    g = StackelbergGame("circle")
    m = g.model
    m.p = pyo.Var(bounds=(0, 3), initialize=2.0)
    f = g.add_follower("f")
    f.u = pyo.Var([1, 2], bounds=(-5, 5), initialize=0.0)
    f.obj = pyo.Objective(expr=(f.u[1] - m.p) ** 2 + (f.u[2] - 1) ** 2)
    f.circle = pyo.Constraint(expr=f.u[1] ** 2 + f.u[2] ** 2 == 1)
    g.set_leader([m.p], objective=f.u[1], sense=sense)
    return g


def scaled(game, leader=1.0, cons=1.0, followers=1.0):
    """``game`` (a library problem) with its objectives and leader constraints multiplied."""
    for name in game.follower_names:
        for obj in game.follower(name).component_data_objects(pyo.Objective, active=True):
            obj.set_value(followers * obj.expr)
    spec = game._leader
    constraints = [cons * c.args[0] <= cons * c.args[1] for c in spec["constraints"]]
    game.set_leader(spec["variables"], leader * spec["objective"], spec["sense"], constraints)
    return game


def two_equilibria(samples=4):
    """Two followers on [0, 1], each best responding ``x_i = clip(2 x_j - 1/2)``: the
    equilibria are A = (0, 0) and B = (1, 1) (and the unstable (1/2, 1/2)), the same at
    every leader strategy; the game, the box and the uniform random starts are symmetric
    under ``x -> 1 - x``, so fresh starts reach A and B equally often (and the unstable one
    now and then: the oracle's Newton steps can land there). The leader chooses
    ``p`` in [-1, 1.2] and minimises ``(p - x_0)^2 + 2 x_0``: ``p^2`` at A, ``(p - 1)^2 + 2``
    at B (worse for the leader at every ``p < 1.5``, and worse than ``(p - 1/2)^2 + 1`` at the
    unstable one). Over draws whose mean ``x_0`` is ``w`` the mean objective is least at
    ``p = w``; the worst is B's wherever a draw reached B, least at ``p = 1``."""
    game = StackelbergGame("two-equilibria", samples=samples)
    m = game.model
    m.p = pyo.Var(bounds=(-1.0, 1.2), initialize=0.0)
    x0 = _matching_pair(game)[0].x
    game.set_leader([m.p], (m.p - x0) ** 2 + 2 * x0, sense=pyo.minimize)
    return game


def coordination(samples=5):
    """Two followers on [0, 1], each best responding ``x_i = clip(2 x_j - 1/2 + pi)``: at
    ``pi = 0`` the equilibria are (0, 0), (1/2, 1/2) and (1, 1). The game, the box and the
    uniform random starts are symmetric under ``x -> 1 - x``, and so is the oracle, so the
    leader's objective ``x_0 + x_1`` is 1 in expectation over the equilibria reached: the
    distribution of the equilibria is symmetric about (1/2, 1/2)."""
    g = StackelbergGame("coordination", samples=samples)
    g.model.pi = pyo.Var(bounds=(-1, 1), initialize=0.0)
    f = _matching_pair(g, g.model.pi)
    g.set_leader([g.model.pi], f[0].x + f[1].x)
    return g


def _matching_pair(game, shift=0.0):
    """Two followers ``f0``, ``f1`` on [0, 1], each best responding
    ``x_i = clip(2 x_j - 1/2 + shift)``."""
    f = [game.add_follower(f"f{i}") for i in range(2)]
    for b in f:
        b.x = pyo.Var(bounds=(0, 1), initialize=0.5)
    for i, b in enumerate(f):
        b.u = pyo.Objective(expr=-(b.x - 2 * f[1 - i].x + 0.5 - shift) ** 2, sense=pyo.maximize)
    return f
