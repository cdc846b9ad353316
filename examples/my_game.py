"""The tragedy of the commons with a grazing tax: a game of your own, with a known optimum.

Source: Hardin, "The Tragedy of the Commons", Science 162 (1968); the model is
the commons game of Gibbons, "A Primer in Game Theory" (1992), section 1.2.D,
with the linear value per goat ``v(G) = value - G``. Here a village council
(the leader) taxes each goat to steer the farmers' Nash equilibrium.

``n`` farmers (the followers) each graze ``g_i >= 0`` goats, at a cost ``cost``
per goat plus the tax ``t``; a goat is worth ``value - G`` with ``G`` the herd.
Farmer ``i`` maximises ``g_i (value - G) - (cost + t) g_i``. The council
maximises the village's welfare ``G (value - G) - cost G`` (the tax is paid to
the village, so it cancels out of the welfare).

Optionally the council must raise at least ``min_revenue`` from the tax,
``t G >= min_revenue``: a constraint evaluated at the farmers' equilibrium.

Known optimum (derived in ``known_optimum``), with ``m = value - cost``: the
first-order condition of farmer ``i``, ``value - G - g_i - cost - t = 0``, gives
the unique, symmetric equilibrium ``g_i = (m - t) / (n + 1)``, a herd of
``G(t) = n (m - t) / (n + 1)``. Welfare ``G (m - G)`` is largest at ``G = m / 2``,
where it is ``m^2 / 4``; the tax that brings the farmers there is
``t0 = m (n - 1) / (2n)``. Without the tax the herd is too large and the welfare
is ``n m^2 / (n + 1)^2``. The revenue ``t G(t)`` grows with ``t`` up to ``m / 2``
and welfare falls beyond ``t0``; so where ``t0 G(t0) < min_revenue`` the optimal
tax is the smallest that raises it, ``t* = m/2 - sqrt(m^2/4 - min_revenue (n + 1)/n)``
(the floor is out of reach where the root is not real).

Solve it from the command line (from any directory)::

    stackopt solve examples/my_game.py:build --farmers 4 --method gradient

or run this file: ``python examples/my_game.py``.
"""
import argparse
import math

import pyomo.environ as pyo

from stackopt import StackelbergGame, solve


def build(farmers: int = 4, value: float = 100.0, cost: float = 20.0,
          min_revenue: float = 0.0) -> StackelbergGame:
    """The commons with a grazing tax (Hardin 1968; Gibbons 1992, section 1.2.D).

    farmers: number of farmers n (the followers), at least 2
    value: value of the first goat; a goat is worth value - G in a herd of G
    cost: cost of keeping one goat, below value
    min_revenue: tax revenue the council must raise, t G >= min_revenue (0: no constraint)
    """
    if not isinstance(farmers, int) or farmers < 2:
        raise ValueError(f"farmers must be an integer >= 2, got {farmers!r}")
    if not 0 <= cost < value:
        raise ValueError(f"cost must be in [0, value) = [0, {value}), got {cost!r}")
    game = StackelbergGame("commons")
    m = game.model
    m.tax = pyo.Var(bounds=(0, value - cost), initialize=0.0)  # the council's tax per goat
    herd = []
    for i in range(farmers):
        f = game.add_follower(f"farmer{i}")
        f.goats = pyo.Var(bounds=(0, value), initialize=0.0)
        herd.append(f.goats)
    m.herd = pyo.Expression(expr=sum(herd))
    for i in range(farmers):
        f = getattr(m, f"farmer{i}")
        f.profit = pyo.Objective(expr=f.goats * (value - m.herd) - (cost + m.tax) * f.goats,
                                 sense=pyo.maximize)
    revenue = [m.tax * m.herd >= min_revenue] if min_revenue > 0 else []  # at the equilibrium
    game.set_leader(variables=[m.tax], objective=m.herd * (value - m.herd) - cost * m.herd,
                    sense=pyo.maximize, constraints=revenue)
    return game


def known_optimum(farmers: int = 4, value: float = 100.0, cost: float = 20.0,
                  min_revenue: float = 0.0) -> dict:
    """The optimal tax and welfare, and the welfare without a tax (module docstring)."""
    m, n = value - cost, farmers
    tax = m * (n - 1) / (2 * n)
    if tax * n * (m - tax) / (n + 1) < min_revenue:
        room = m ** 2 / 4 - min_revenue * (n + 1) / n
        if room < 0:
            raise ValueError(f"min_revenue {min_revenue} is above the largest revenue "
                             f"{n * m ** 2 / (4 * (n + 1))}")
        tax = m / 2 - math.sqrt(room)
    herd = n * (m - tax) / (n + 1)
    return {"tax": tax, "welfare": herd * (m - herd), "welfare_untaxed": n * m ** 2 / (n + 1) ** 2}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Solve the commons game and compare with its optimum.")
    ap.add_argument("--farmers", type=int, default=4)
    ap.add_argument("--min-revenue", type=float, default=0.0)
    ap.add_argument("--methods", default="gradient,implicit-ipopt,initial")
    args = ap.parse_args(argv)
    best = known_optimum(args.farmers, min_revenue=args.min_revenue)
    print(f"known optimum: tax {best['tax']:.4f}, welfare {best['welfare']:.4f} "
          f"(untaxed {best['welfare_untaxed']:.4f})")
    worst_error = 0.0
    for method in args.methods.split(","):
        res = solve(build(args.farmers, min_revenue=args.min_revenue), method, seed=0)
        print(f"{method:16s} {res.status.value:16s} welfare {res.leader_objective:10.4f}  "
              f"tax {res.leader_values['tax']:8.4f}  violation {res.constraint_violation:.1e}")
        if method != "initial" and res.constraint_violation <= 1e-6:
            worst_error = max(worst_error, abs(res.leader_objective - best["welfare"]) / best["welfare"])
    print(f"largest relative gap to the known optimum: {worst_error:.2e}")
    return 0 if worst_error < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
