"""Generalized Nash games with published or closed-form equilibria, each with a leader.

Every game here is a :class:`~stackopt.game.StackelbergGame` whose followers play a
generalized Nash game (shared constraints, constraints nonlinear in a follower's
own variables, coefficients set by the leader). :data:`KNOWN_EQUILIBRIA` holds
each game's equilibrium at the leader's initial values (the followers' values
by Pyomo name), where it is published and how it was derived independently;
``stackopt.equilibrium(build_game("gnep", problem=NAME))`` reproduces it. The
known-optimum library (:mod:`stackopt.models.library`) poses leader problems
over ``harker`` and ``river_basin``.

====================  =========  ==============================================
name                  followers  equilibrium at the leader's initial values
====================  =========  ==============================================
harker                2          (5, 9): Harker (1991), variational
river_basin           3          (21.1448, 16.0279, 2.7260): Krawczyk, Uryasev (2000)
disk_budget           2          closed form (disks whose radius the leader's price sets)
disk_cap              2          closed form (a disk and a shared cap, both binding)
price_budget          2          closed form (budgets p x <= B with the leader's price)
====================  =========  ==============================================
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyomo.core as pyo

from stackopt.game import StackelbergGame

from . import Param, register_game


class KnownEquilibrium(NamedTuple):
    """The followers' values by Pyomo name at the leader's initial values, the source,
    and how the values were derived independently of stackopt."""

    values: dict
    source: str


PROBLEMS: dict[str, Callable[..., StackelbergGame]] = {}
KNOWN_EQUILIBRIA: dict[str, KnownEquilibrium] = {}


def _problem(name: str):
    def deco(fn):
        PROBLEMS[name] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------- Harker
def harker_equilibrium(tau: float) -> tuple:
    """Harker's game with a tax ``tau`` on player 2's output: the variational equilibrium
    ``(x1, x2)`` and the shared constraint's multiplier, in closed form.

    Player 1 minimises x1^2 + (8/3) x1 x2 - 34 x1, player 2 x2^2 + (5/4) x1 x2 -
    (24.25 - tau) x2, 0 <= x <= 10, shared x1 + x2 <= 15 with one multiplier s.
    Stationarity 2 x1 + (8/3) x2 - 34 + s = 0, 2 x2 + (5/4) x1 - 24.25 + tau + s = 0:

    * cap slack (s = 0): x1 = 5 + 4 tau, x2 = 9 - 3 tau, x1 + x2 = 14 + tau <= 15 for tau <= 1;
    * cap binding, x2 = 15 - x1: s = (2/3) x1 - 6 and x1 = 12 tau - 3, so x2 = 18 - 12 tau,
      s = 8 tau - 8 >= 0 for tau >= 1, and x1 <= 10 for tau <= 13/12;
    * x1 = 10 held at its bound, x2 = 5 on the cap: s = 1.75 - tau, and player 1's bound
      multiplier 2/3 - s >= 0 for 13/12 <= tau <= 1.75; beyond, x2 = 5.875 - tau / 2.
    """
    if tau <= 1.0:
        return 5.0 + 4.0 * tau, 9.0 - 3.0 * tau, 0.0
    if tau <= 13.0 / 12.0:
        return 12.0 * tau - 3.0, 18.0 - 12.0 * tau, 8.0 * tau - 8.0
    if tau <= 1.75:
        return 10.0, 5.0, 1.75 - tau
    return 10.0, 5.875 - 0.5 * tau, 0.0


@_problem("harker")
def harker(shared: str = "variational") -> StackelbergGame:
    """Harker (1991): two players, a shared capacity, a continuum of generalized equilibria.

    Player 1 minimises x1^2 + (8/3) x1 x2 - 34 x1, player 2 x2^2 + (5/4) x1 x2 - 24.25 x2
    (plus the leader's tax tau x2), 0 <= x1, x2 <= 10, shared x1 + x2 <= 15. At tau = 0
    (the leader's initial value) the variational equilibrium is (5, 9), where the cap is
    slack; the generalized Nash equilibria are (5, 9) and every (t, 15 - t), t in [9, 10]
    (player 1's best response to 15 - t is min(t, 4t/3 - 3), player 2's to t is
    min(15 - t, 12.125 - 0.625 t)). The leader (a regulator taxing player 2 at tau in
    [0, 2]) minimises (x1 - 9.5)^2 + tau^2 / 100; :func:`harker_equilibrium` gives the
    followers' response in closed form.
    """
    g = StackelbergGame("harker", shared=shared)
    m = g.model
    m.tau = pyo.Var(bounds=(0.0, 2.0), initialize=0.0)
    p1, p2 = g.add_follower("player1"), g.add_follower("player2")
    p1.x = pyo.Var(bounds=(0.0, 10.0), initialize=0.0)
    p2.x = pyo.Var(bounds=(0.0, 10.0), initialize=0.0)
    p1.cost = pyo.Objective(expr=p1.x ** 2 + 8.0 / 3.0 * p1.x * p2.x - 34.0 * p1.x)
    p2.cost = pyo.Objective(expr=p2.x ** 2 + 1.25 * p1.x * p2.x - 24.25 * p2.x + m.tau * p2.x)
    g.add_shared_constraint("capacity", p1.x + p2.x <= 15.0)
    g.set_leader([m.tau], objective=(p1.x - 9.5) ** 2 + 0.01 * m.tau ** 2, sense=pyo.minimize)
    g.data = {"problem": "harker", "shared": shared}
    return g


KNOWN_EQUILIBRIA["harker"] = KnownEquilibrium(
    {"player1.x": 5.0, "player2.x": 9.0},
    "Harker (1991) Generalized Nash games and quasi-variational inequalities, Eur. J. Oper. "
    "Res. 54:81-94: variational equilibrium (5, 9); derived here in closed form "
    "(harker_equilibrium at tau = 0: the unconstrained Nash equilibrium, feasible for the cap)")


# ----------------------------------------------------------------------------- river basin
_RIVER = dict(c1=(0.10, 0.12, 0.15), c2=(0.01, 0.05, 0.01), d1=3.0, d2=0.01, e=(0.50, 0.25, 0.75),
              u=((6.5, 4.583), (5.0, 6.250), (5.5, 3.750)), K=(100.0, 100.0))


def river_basin_data():
    """``(M, q, A, K)``: player j's gradient is ``(M x + q)_j`` and the shared constraints
    ``A x <= K`` (``A[l, j] = u_jl e_j``)."""
    c1, c2, e, u = (np.array(_RIVER[k]) for k in ("c1", "c2", "e", "u"))
    d1, d2 = _RIVER["d1"], _RIVER["d2"]
    M = np.diag(2 * c2 + d2) + d2 * np.ones((3, 3))
    return M, c1 - d1, (u * e[:, None]).T, np.array(_RIVER["K"])


def river_basin_equilibria(K1: float = 100.0) -> list:
    """Every variational equilibrium of the river basin game with station 1's standard
    ``K1``, by enumerating the active sets: ``[(x, multipliers, active)]``.

    The game's gradient ``M x + q`` is affine and its constraints linear, so the KKT
    system of the variational inequality is a linear complementarity problem: for each
    choice of binding shared constraints and of players at zero, one linear solve; a
    choice is kept where the signs hold (x >= 0, multipliers >= 0, constraints met,
    gradients of the players at zero >= 0). ``M + M^T`` is positive definite, so
    exactly one choice survives. Independent of stackopt (NumPy only).
    """
    M, q, A, K = river_basin_data()
    K = np.array([K1, K[1]])
    out = []
    for act in itertools.product([False, True], repeat=5):
        sh = [r for r in range(2) if act[r]]
        free = [j for j in range(3) if not act[2 + j]]
        n = len(free) + len(sh)
        mat, rhs = np.zeros((n, n)), np.zeros(n)
        for a, j in enumerate(free):
            mat[a, :len(free)] = M[j, free]
            mat[a, len(free):] = A[sh, j]
            rhs[a] = -q[j]
        for b, r in enumerate(sh):
            mat[len(free) + b, :len(free)] = A[r, free]
            rhs[len(free) + b] = K[r]
        try:
            s = np.linalg.solve(mat, rhs)
        except np.linalg.LinAlgError:
            continue
        x, lam = np.zeros(3), np.zeros(2)
        x[free], lam[sh] = s[:len(free)], s[len(free):]
        g = M @ x + q + A.T @ lam
        tol = 1e-9
        if (np.all(x >= -tol) and np.all(lam >= -tol) and np.all(A @ x <= K + tol)
                and np.all(g >= -tol) and np.allclose(g[free], 0.0, atol=tol)):
            out.append((x, lam, act))
    return out


@_problem("river_basin")
def river_basin(shared: str = "variational") -> StackelbergGame:
    """The river basin pollution game (Haurie, Krawczyk 1997; Krawczyk, Uryasev 2000).

    Three firms j on a river choose outputs x_j >= 0 and minimise (c1_j + c2_j x_j) x_j
    - (d1 - d2 (x1 + x2 + x3)) x_j with c1 = (0.10, 0.12, 0.15), c2 = (0.01, 0.05, 0.01),
    d1 = 3, d2 = 0.01; their emissions e_j x_j, e = (0.50, 0.25, 0.75), reach two
    monitoring stations with the decay factors u = [[6.5, 4.583], [5.0, 6.250], [5.5,
    3.750]] (firm j's row), and each station's standard is a shared constraint
    sum_j u_jl e_j x_j <= K_l. The leader (the basin's agency) sets station 1's standard
    K_1 in [50, 150] (100, the published game, initially; K_2 = 100) and maximises the
    firms' total profit minus a damage 0.005 (station 1's pollution)^2.
    """
    M, q, A, K = river_basin_data()
    c1, c2 = _RIVER["c1"], _RIVER["c2"]
    d1, d2 = _RIVER["d1"], _RIVER["d2"]
    g = StackelbergGame("river_basin", shared=shared)
    m = g.model
    m.K1 = pyo.Var(bounds=(50.0, 150.0), initialize=100.0)
    firms = [g.add_follower(f"firm{j + 1}") for j in range(3)]
    for f in firms:
        f.x = pyo.Var(bounds=(0.0, 100.0), initialize=0.0)
    total = sum(f.x for f in firms)
    for j, f in enumerate(firms):
        f.cost = pyo.Objective(expr=(c1[j] + c2[j] * f.x) * f.x - (d1 - d2 * total) * f.x)
    g.add_shared_constraint("station1", sum(A[0, j] * f.x for j, f in enumerate(firms)) <= m.K1)
    g.add_shared_constraint("station2", sum(A[1, j] * f.x for j, f in enumerate(firms)) <= K[1])
    profit = sum((d1 - d2 * total) * f.x - (c1[j] + c2[j] * f.x) * f.x for j, f in enumerate(firms))
    pollution = sum(A[0, j] * f.x for j, f in enumerate(firms))
    g.set_leader([m.K1], objective=profit - 0.005 * pollution ** 2, sense=pyo.maximize)
    g.data = {"problem": "river_basin", "shared": shared, **{k: v for k, v in _RIVER.items()}}
    return g


_x, _, _ = river_basin_equilibria()[0]
KNOWN_EQUILIBRIA["river_basin"] = KnownEquilibrium(
    {f"firm{j + 1}.x": float(v) for j, v in enumerate(_x)},
    "Krawczyk, Uryasev (2000) Relaxation algorithms to find Nash equilibria with economic "
    "applications, Environ. Model. Assess. 5:63-73 (the game of Haurie, Krawczyk (1997)): "
    "normalized equilibrium about (21.1448, 16.0279, 2.7258); derived here exactly by "
    "river_basin_equilibria (active-set enumeration of the linear complementarity problem): "
    "(21.144796, 16.027853, 2.725963), station 1 binding with multiplier 0.574360. The "
    "third output differs from the published 2.7258 by 1.6e-4")


# ----------------------------------------------------------------------------- disks
def disk_budget_equilibrium(p: float) -> dict:
    """The equilibrium of :func:`disk_budget` at price ``p``, in closed form.

    Both followers choose points on the ray e = (3, 4)/5 (each's pull 2 a_i - b u_j is
    along e when the other's point is): follower 1 at u1 = r e on its disk's boundary,
    r = 1/sqrt(p), while its multiplier l1 = ((2 a1 - b |u2|) / r - 2) / (2 p) >= 0;
    follower 2 inside its disk, u2 = (a2 - b r / 2) e, while |u2| < r.
    """
    a1, a2, b = 5.0, 1.0, 0.5
    r = 1.0 / np.sqrt(p)
    e = np.array([0.6, 0.8])
    s2 = a2 - b * r / 2.0
    lam1 = ((2.0 * a1 - b * s2) / r - 2.0) / (2.0 * p)
    if not (lam1 > 0 and 0 <= s2 < r):
        raise ValueError(f"price {p} is outside the closed form's range")
    return {"player1.u[1]": r * e[0], "player1.u[2]": r * e[1],
            "player2.u[1]": s2 * e[0], "player2.u[2]": s2 * e[1], "multiplier": lam1}


@_problem("disk_budget")
def disk_budget() -> StackelbergGame:
    """Two followers choose points u_i in the plane, each on a disk p |u_i|^2 <= 1 whose
    radius the leader's price p sets (a constraint nonlinear in the follower's own
    variables with the leader's coefficient): follower i minimises |u_i - a_i e|^2 +
    b u_i . u_j with a = (5, 1), b = 1/2, e = (3, 4)/5. At p = 1: u1 = e on its
    disk's boundary, u2 = 0.75 e inside (:func:`disk_budget_equilibrium`)."""
    g = StackelbergGame("disk_budget")
    m = g.model
    m.p = pyo.Var(bounds=(0.5, 1.5), initialize=1.0)
    e = (0.6, 0.8)
    fs = [g.add_follower("player1"), g.add_follower("player2")]
    for f in fs:
        f.u = pyo.Var([1, 2], bounds=(-10.0, 10.0), initialize=0.0)
    for f, o, a in ((fs[0], fs[1], 5.0), (fs[1], fs[0], 1.0)):
        f.cost = pyo.Objective(expr=sum((f.u[k] - a * e[k - 1]) ** 2 + 0.5 * f.u[k] * o.u[k]
                                        for k in (1, 2)))
        f.disk = pyo.Constraint(expr=m.p * (f.u[1] ** 2 + f.u[2] ** 2) <= 1.0)
    g.set_leader([m.p], objective=m.p * (fs[0].u[1] + fs[0].u[2]), sense=pyo.maximize)
    g.data = {"problem": "disk_budget"}
    return g


KNOWN_EQUILIBRIA["disk_budget"] = KnownEquilibrium(
    {k: float(v) for k, v in disk_budget_equilibrium(1.0).items() if k != "multiplier"},
    "derived here in closed form (disk_budget_equilibrium at p = 1)")


# ----------------------------------------------------------------------------- disk and cap
@_problem("disk_cap")
def disk_cap() -> StackelbergGame:
    """A disk and a shared cap, both binding: player a chooses u on the disk |u|^2 <= p^2
    (p the leader's, 1 initially) and minimises |u - (3, 2)|^2; player b minimises
    (y - 4)^2; the shared cap u2 + y <= 3.155 binds both (one multiplier s).

    At p = 1 the variational equilibrium is u = (0.96, 0.28), y = 2.875, with the disk's
    multiplier l = 2.125 and s = 2.25: stationarity 2 (u1 - 3) + 2 l u1 = 0 gives
    l = 3 / 0.96 - 1; 2 (u2 - 2) + 2 l u2 + s = 0 gives s = 3.44 - 1.19; b's
    2 (y - 4) + s = 0 gives y = 4 - s / 2, and u2 + y = 3.155 (the data were chosen so).
    The leader maximises u1 + y."""
    g = StackelbergGame("disk_cap")
    m = g.model
    m.p = pyo.Var(bounds=(0.9, 1.1), initialize=1.0)
    a, b = g.add_follower("a"), g.add_follower("b")
    a.u = pyo.Var([1, 2], bounds=(-5.0, 5.0), initialize=0.0)
    b.y = pyo.Var(bounds=(-10.0, 10.0), initialize=0.0)
    a.cost = pyo.Objective(expr=(a.u[1] - 3.0) ** 2 + (a.u[2] - 2.0) ** 2)
    b.cost = pyo.Objective(expr=(b.y - 4.0) ** 2)
    a.disk = pyo.Constraint(expr=a.u[1] ** 2 + a.u[2] ** 2 <= m.p ** 2)
    g.add_shared_constraint("cap", a.u[2] + b.y <= 3.155)
    g.set_leader([m.p], objective=a.u[1] + b.y, sense=pyo.maximize)
    g.data = {"problem": "disk_cap"}
    return g


KNOWN_EQUILIBRIA["disk_cap"] = KnownEquilibrium(
    {"a.u[1]": 0.96, "a.u[2]": 0.28, "b.y": 2.875},
    "derived here in closed form (disk_cap's docstring: the data were chosen so)")


# ----------------------------------------------------------------------------- budgets
def price_budget_equilibrium(p: float) -> dict:
    """The equilibrium of :func:`price_budget` at price ``p``, in closed form.

    Follower i buys x_i of the leader's good at price p with a budget p x_i <= B_i and
    y_i of another good, maximising its utility (a_i - x_j / 4) x_i - x_i^2 / 2 + y_i with
    p x_i + y_i = 5 (money left over): y_i = 5 - p x_i, so it minimises x_i^2 / 2 -
    (a_i - x_j / 4 - p) x_i on 0 <= x_i <= B_i / p. With a = (6, 3), B = (2, 10): follower
    1's budget binds (x1 = 2 / p) while 6 - x2 / 4 - p > 2 / p; follower 2 is interior,
    x2 = 3 - x1 / 4 - p = 3 - 1 / (2 p) - p. Both hold for every p in [0.5, 2].
    """
    x1 = 2.0 / p
    x2 = 3.0 - x1 / 4.0 - p
    if not (6.0 - x2 / 4.0 - p > x1 and 0 < x2 < 10.0 / p):
        raise ValueError(f"price {p} is outside the closed form's range")
    return {"buyer1.x": x1, "buyer2.x": x2, "buyer1.y": 5.0 - p * x1, "buyer2.y": 5.0 - p * x2}


@_problem("price_budget")
def price_budget() -> StackelbergGame:
    """Two buyers of the leader's good at its price p: budgets p x_i <= B_i and the
    account p x_i + y_i = 5 (both with the leader's coefficient); see
    :func:`price_budget_equilibrium`. At p = 1: x = (2, 1.5). The leader (the seller,
    p in [0.5, 2]) maximises its revenue p (x1 + x2) = 1.5 + 3 p - p^2."""
    a, B = (6.0, 3.0), (2.0, 10.0)
    g = StackelbergGame("price_budget")
    m = g.model
    m.p = pyo.Var(bounds=(0.5, 2.0), initialize=1.0)
    fs = [g.add_follower("buyer1"), g.add_follower("buyer2")]
    for f in fs:
        f.x = pyo.Var(bounds=(0.0, 50.0), initialize=0.0)
        f.y = pyo.Var(bounds=(-50.0, 50.0), initialize=0.0)
    for i, (f, o) in enumerate(((fs[0], fs[1]), (fs[1], fs[0]))):
        f.utility = pyo.Objective(expr=(a[i] - o.x / 4.0) * f.x - 0.5 * f.x ** 2 + f.y,
                                  sense=pyo.maximize)
        f.budget = pyo.Constraint(expr=m.p * f.x <= B[i])
        f.account = pyo.Constraint(expr=m.p * f.x + f.y == 5.0)
    g.set_leader([m.p], objective=m.p * (fs[0].x + fs[1].x), sense=pyo.maximize)
    g.data = {"problem": "price_budget"}
    return g


KNOWN_EQUILIBRIA["price_budget"] = KnownEquilibrium(
    {k: float(v) for k, v in price_budget_equilibrium(1.0).items()},
    "derived here in closed form (price_budget_equilibrium at p = 1)")


# ----------------------------------------------------------------------------- registry
@register_game("gnep", params={
    "problem": Param(str, "harker", "which generalized Nash game: " + ", ".join(PROBLEMS)),
    "shared": Param(str, "variational", "the shared constraints' equilibrium concept: variational, "
                    "any (harker, river_basin, disk_cap)"),
})
def gnep(seed: int = 0, problem: str = "harker", shared: str = "variational") -> StackelbergGame:
    """Generalized Nash games with published or closed-form equilibria, with a leader (seed unused)."""
    if problem not in PROBLEMS:
        raise ValueError(f"unknown gnep problem {problem!r}; expected one of {sorted(PROBLEMS)}")
    if problem in ("harker", "river_basin"):
        return PROBLEMS[problem](shared=shared)
    if problem == "disk_cap":
        g = PROBLEMS[problem]()
        g.shared = shared
        return g
    if shared != "variational":
        raise ValueError(f"gnep problem {problem!r} has no shared constraint; shared must be "
                         f"'variational', got {shared!r}")
    return PROBLEMS[problem]()
