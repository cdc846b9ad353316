"""Normal-form games with subsidies (entropy-regularised followers, logit QRE).

n followers with m actions each play mixed strategies x_i on the simplex.
Follower i is paid ``P_i = P0_i + pi_i`` for each joint action and maximises

    E_x[P_i] - (1/lam) * sum_j x_ij log x_ij

so the equilibrium is the logit quantal response equilibrium. The leader
chooses subsidies ``pi_i >= 0`` (one per follower and joint action, dim
``n * m**n``) to maximise social welfare ``sum_i E_x[P0_i]`` (base payoffs only)
subject to the expected subsidy paid, ``E_x[sum_i pi_i(a)] <= budget``.
Base payoffs: ``P0_i ~ 10 * Uniform[0, 1)`` of shape ``(m,)*n``, drawn from
``numpy.random.default_rng(seed)``; or, with ``reference_seed`` (1-5), the
reference experiments' own payoffs for that seed (n = 3, m = 10; see
:mod:`stackopt.models.reference`), so that results compare seed for seed with
the paper's recorded ones.
"""
from __future__ import annotations

import itertools

import numpy as np
import pyomo.core as pyo

from stackopt.game import StackelbergGame

from . import Param, register_game
from .reference import check_seed, load_instance


def _check(name, value, ok, expected):
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


@register_game("nfg", params={
    "players": Param(int, 3, "number of followers n"),
    "actions": Param(int, 10, "actions per follower m"),
    "budget": Param(float, 0.0, "expected subsidy budget B (>= 0)"),
    "lam": Param(float, 1.0, "follower rationality: entropy weight is 1/lam"),
    "subsidy_cap": Param(float, float("inf"), "upper bound on every subsidy (inf: none)"),
    "reference_seed": Param(int, None, "use the reference experiments' instance of this seed "
                            "(1-5; 3 players x 10 actions) instead of a draw"),
})
def build_nfg(seed: int = 0, players: int = 3, actions: int = 10, budget: float = 0.0,
              lam: float = 1.0, subsidy_cap: float = float("inf"),
              payoffs: np.ndarray | None = None, reference_seed: int | None = None) -> StackelbergGame:
    """Normal-form game with subsidies; ``payoffs`` (shape ``(n,) + (m,)*n``) overrides the draw.

    ``reference_seed`` loads the reference experiments' payoffs of that seed
    (their instance has ``players=3``, ``actions=10``; other sizes are refused).
    """
    _check("players", players, isinstance(players, (int, np.integer)) and players >= 1, "an integer >= 1")
    _check("actions", actions, isinstance(actions, (int, np.integer)) and actions >= 2, "an integer >= 2")
    _check("budget", budget, np.isfinite(budget) and budget >= 0, "a finite number >= 0")
    _check("lam", lam, np.isfinite(lam) and lam > 0, "a finite number > 0")
    _check("subsidy_cap", subsidy_cap, subsidy_cap > 0, "> 0")
    n, m = int(players), int(actions)
    if reference_seed is not None:
        reference_seed = check_seed("nfg", reference_seed)
        if payoffs is not None:
            raise ValueError("give either payoffs or reference_seed, not both")
        if (n, m) != (3, 10):
            raise ValueError(f"reference_seed={reference_seed} is an instance with players=3 and "
                             f"actions=10, got players={n}, actions={m}")
        payoffs = load_instance("nfg", reference_seed)["payoffs"]
    if payoffs is None:
        payoffs = 10.0 * np.random.default_rng(seed).random((n,) + (m,) * n)
    payoffs = np.asarray(payoffs, dtype=float)
    _check("payoffs shape", payoffs.shape, payoffs.shape == (n,) + (m,) * n, f"{(n,) + (m,) * n}")
    _check("payoffs", "non-finite entries", bool(np.all(np.isfinite(payoffs))), "finite")

    game = StackelbergGame("nfg")
    game.data = {"payoffs": payoffs, "budget": float(budget), "lam": float(lam),
                 "subsidy_cap": float(subsidy_cap)}
    mdl = game.model
    joint = list(itertools.product(range(m), repeat=n))
    mdl.F = pyo.RangeSet(0, n - 1)
    mdl.A = pyo.RangeSet(0, len(joint) - 1)
    cap = None if not np.isfinite(subsidy_cap) else float(subsidy_cap)
    mdl.pi = pyo.Var(mdl.F, mdl.A, bounds=(0.0, cap), initialize=0.0)
    blocks = []
    for i in range(n):
        b = game.add_follower(f"p{i}")
        b.x = pyo.Var(range(m), bounds=(0.0, 1.0), initialize=1.0 / m)
        b.simplex = pyo.Constraint(expr=sum(b.x[j] for j in range(m)) == 1)
        blocks.append(b)
    # probability of each joint action, shared by every objective
    mdl.prob = pyo.Expression(mdl.A, rule=lambda _, k: _prod(blocks[i].x[a] for i, a in enumerate(joint[k])))
    entropy_w = 1.0 / lam
    for i, b in enumerate(blocks):
        pay = payoffs[i].reshape(-1)
        b.payoff = pyo.Objective(
            expr=sum((float(pay[k]) + mdl.pi[i, k]) * mdl.prob[k] for k in mdl.A)
            - entropy_w * sum(b.x[j] * pyo.log(b.x[j]) for j in range(m)),
            sense=pyo.maximize,
        )
    welfare = payoffs.sum(axis=0).reshape(-1)
    mdl.welfare = pyo.Expression(expr=sum(float(welfare[k]) * mdl.prob[k] for k in mdl.A))
    mdl.subsidy_paid = pyo.Expression(
        expr=sum(sum(mdl.pi[i, k] for i in range(n)) * mdl.prob[k] for k in mdl.A))
    game.set_leader(variables=[mdl.pi], objective=mdl.welfare, sense=pyo.maximize,
                    constraints=[mdl.subsidy_paid <= float(budget)])
    return game


def _prod(factors):
    out = 1
    for f in factors:
        out = out * f
    return out
