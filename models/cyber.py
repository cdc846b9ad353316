"""Cyber insurance for interconnected customers (the paper; docs/games.md).

``n`` customers (the followers) choose protection efforts ``x_i >= 0``. Their
networks are interconnected: customer ``j``'s effort also protects customer
``i`` with weight ``W[i, j]``, and customer ``i`` is breached with probability

    q_i(x) = sigmoid(z_i),   z_i = -(W x)_i + 0.01 L_i,

losing ``L_i``. The insurer (leader) offers each customer a compensation
``I_i`` paid on a breach and charges a premium ``rho_i``. Customer ``i``
maximises, with risk aversion ``r``,

    -(L_i - I_i) q_i - c_i x_i - rho_i - r |L_i - I_i| sqrt(q_i (1 - q_i)),

and the insurer maximises its revenue ``sum_i (rho_i - I_i q_i)`` subject to
individual rationality (IR), one constraint per customer: the utility with the
insurance is at least the utility without it,
``-L_i q_i - c_i x_i - r L_i sqrt(q_i (1 - q_i))``, both at the equilibrium.

Reference data: ``W = Uniform[0,1)^(n x n) + I``, ``L_i ~ Uniform[50, 100]``,
``c_i ~ Uniform[5, 10]``. The interconnection is a weighted networkx graph with
``W[i, j]`` the ``weight`` of the edge ``i -> j`` (0 where there is no edge); by
default the dense random ``W`` above as a ``DiGraph`` with self-loops of weight
``1 + u``. Users can pass their own graph, e.g. from networkx's generators with
``weight`` attributes set on every edge. With ``reference_seed`` (1-5) the
builder takes ``W``, ``L`` and ``c`` of the reference experiments' own instance
of that seed (10 customers; see :mod:`stackopt.models.reference`), so results
compare seed for seed with the paper's recorded ones.

Numerical form. ``q_i`` and ``sqrt(q_i (1 - q_i))`` are shared ``pyo.Expression``
components written through ``e_i = exp(z_i)``:
``q_i = e_i / (1 + e_i)`` (equal to ``1 / (1 + exp(-z_i))``) and
``sqrt(q_i (1 - q_i)) = exp(z_i / 2) / (1 + e_i)``. With non-negative weights
``z_i <= 0.01 L_i``, so these never overflow, and a very safe customer
(``z_i -> -inf``) underflows to ``q_i = 0`` with zero derivatives instead of the
``inf * 0`` that ``exp(-z_i)`` or the derivative of ``sqrt`` at 0 would give.

Bounds. The paper's model has ``x_i >= 0`` only. Efforts get the upper bound
``max_effort`` (default 20) so that the equilibrium oracle's random starts lie
in a box; it is generous: at an equilibrium the marginal protection
``|L_i - I_i| W_ii q_i (1 - q_i)`` plus the risk term equals ``c_i >= 5``, so
efforts grow only logarithmically in ``|L_i - I_i|`` (a test checks that the
bound does not bind at ``L - I`` of about ``1e4``; docs/games.md gives the
efforts measured on the reference data). Compensation and premium are
unconstrained, as in the reference.

The library reports the largest IR violation as ``constraint_violation``;
the reference experiments report the sum of the positive parts, computed by
:func:`ir_violation`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyomo.core as pyo

from stackopt.game import StackelbergGame

from . import Param, register_game
from .reference import check_seed, load_instance

if TYPE_CHECKING:
    import networkx as nx

PARAMS = {
    "customers": Param(int, 10, "number of customers (followers) n"),
    "risk_aversion": Param(float, 0.0, "customers' risk aversion r >= 0"),
    "max_effort": Param(float, 20.0, "upper bound on each customer's effort x_i (generous; see docs)"),
    "samples": Param(int, 1, "equilibria sampled from random starts per scored leader strategy"),
    "interconnection": Param(object, None, "networkx graph with 'weight' on every edge, "
                             "W[i, j] = weight of edge i -> j; default dense U[0,1)+I"),
    "losses": Param(object, None, "losses L_i, shape (customers,); default U[50,100]"),
    "costs": Param(object, None, "effort costs c_i, shape (customers,); default U[5,10]"),
    "reference_seed": Param(int, None, "use the reference experiments' instance of this seed "
                            "(1-5; 10 customers) instead of a draw"),
}

EXP_LIMIT = 700.0  # exp(z) overflows float64 above ~709.78


@register_game("cyber", params=PARAMS)
def cyber(
    seed: int = 0,
    *,
    customers: int = 10,
    risk_aversion: float = 0.0,
    max_effort: float = 20.0,
    samples: int = 1,
    interconnection=None,
    losses=None,
    costs=None,
    reference_seed: int | None = None,
) -> StackelbergGame:
    """Cyber insurance with interconnected customers (see the module docstring).

    Random data come from ``numpy.random.default_rng(seed)``, drawn in the fixed
    order ``W``, ``L``, ``c``, so overriding one leaves the others as they were for
    that seed. ``interconnection`` is a networkx ``Graph`` (symmetric ``W``) or
    ``DiGraph`` with ``customers`` nodes; if its nodes are exactly
    ``0..customers-1`` they are the customer indices, otherwise customers are
    numbered in node insertion order. Every edge must carry a finite ``weight``.
    ``reference_seed`` loads ``W``, ``L`` and ``c`` of the reference instance of
    that seed (``customers=10``); it cannot be combined with those three.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    n = _int_at_least("customers", customers, 1)
    samples = _int_at_least("samples", samples, 1)
    r = _finite("risk_aversion", risk_aversion, low=0.0)
    max_effort = _finite("max_effort", max_effort, low=0.0, strict=True)

    rng = np.random.default_rng(int(seed))
    W = rng.uniform(size=(n, n)) + np.eye(n)
    L = rng.uniform(50.0, 100.0, size=n)
    c = rng.uniform(5.0, 10.0, size=n)
    if reference_seed is not None:
        W, L, c = _reference(reference_seed, n, interconnection, losses, costs)
    graph = default_interconnection(W) if interconnection is None else interconnection
    W = interconnection_matrix(graph, n)
    if losses is not None:
        L = _vector("losses", losses, n)
    if costs is not None:
        c = _vector("costs", costs, n)
    z_max = 0.01 * L - np.minimum(W, 0.0).sum(axis=1) * max_effort
    worst = int(np.argmax(z_max))
    if z_max[worst] > EXP_LIMIT:
        raise ValueError(
            f"customer {worst}'s attack logit can reach {z_max[worst]:.4g} > {EXP_LIMIT} "
            "(negative interconnection weights times max_effort, plus 0.01 L), where exp overflows; "
            "lower max_effort or the negative weights"
        )

    # efforts have a local optimum at 0 besides the best response (the risk term
    # grows while q moves towards 1/2): gradient play can stop there, so the
    # followers adjust by best responses, the paper's oracle
    game = StackelbergGame("cyber", samples=samples, dynamics="best-response")
    game.data.update(interconnection=W, losses=L, costs=c, risk_aversion=r, max_effort=max_effort)
    _build(game, W, L, c, r, max_effort)
    return game


def _reference(reference_seed, n, interconnection, losses, costs):
    reference_seed = check_seed("cyber", reference_seed)
    given = [k for k, v in (("interconnection", interconnection), ("losses", losses),
                            ("costs", costs)) if v is not None]
    if given:
        raise ValueError(f"give either reference_seed or {', '.join(given)}, not both: the "
                         "reference instance fixes the interconnection, losses and costs")
    if n != 10:
        raise ValueError(f"reference_seed={reference_seed} is an instance with customers=10, "
                         f"got customers={n}")
    d = load_instance("cyber", reference_seed)
    return d["W"], d["L"], d["c"]


def default_interconnection(W: np.ndarray) -> nx.DiGraph:
    """The dense weighted digraph of ``W``: edge ``i -> j`` with ``weight = W[i, j]``, self-loops included."""
    import networkx as nx  # imported where a graph is built: importing it costs every command

    n = W.shape[0]
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from((i, j, float(W[i, j])) for i in range(n) for j in range(n))
    return g


def interconnection_matrix(graph: Any, n: int) -> np.ndarray:
    """``W[i, j]`` = weight of edge ``i -> j`` of ``graph`` (both ways for an undirected graph)."""
    import networkx as nx

    if not isinstance(graph, nx.Graph):
        raise ValueError(f"interconnection must be a networkx Graph or DiGraph, got {type(graph).__name__}")
    if graph.is_multigraph():
        raise ValueError("interconnection must not be a multigraph; merge parallel edges into one weight")
    nodes = list(graph.nodes)
    if len(nodes) != n:
        raise ValueError(f"interconnection graph has {len(nodes)} nodes but customers={n}")
    if set(nodes) == set(range(n)):
        index = {k: k for k in range(n)}
    else:
        index = {node: k for k, node in enumerate(nodes)}
    W = np.zeros((n, n))
    for u, v, w in graph.edges(data="weight"):
        if w is None:
            raise ValueError(f"interconnection edge ({u!r}, {v!r}) has no 'weight' attribute")
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"interconnection edge ({u!r}, {v!r}) has non-numeric weight {w!r}") from None
        if not math.isfinite(w):
            raise ValueError(f"interconnection edge ({u!r}, {v!r}) has non-finite weight {w!r}")
        W[index[u], index[v]] = w
        if not graph.is_directed():
            W[index[v], index[u]] = w
    return W


def _build(game, W, L, c, r, max_effort) -> None:
    m = game.model
    n = W.shape[0]
    blocks = []
    for i in range(n):
        b = game.add_follower(f"customer{i}")
        b.x = pyo.Var(bounds=(0.0, max_effort), initialize=0.0)
        blocks.append(b)
    m.compensation = pyo.Var(range(n), initialize=0.0)  # I_i, unconstrained
    m.premium = pyo.Var(range(n), initialize=0.0)  # rho_i, unconstrained

    m.logit = pyo.Expression(range(n), rule=lambda _m, i: 0.01 * float(L[i]) - sum(
        float(W[i, j]) * blocks[j].x for j in range(n) if W[i, j] != 0.0))
    m.odds = pyo.Expression(range(n), rule=lambda _m, i: pyo.exp(_m.logit[i]))
    m.breach = pyo.Expression(range(n), rule=lambda _m, i: _m.odds[i] / (1.0 + _m.odds[i]))
    m.spread = pyo.Expression(  # sqrt(q (1 - q))
        range(n), rule=lambda _m, i: pyo.exp(0.5 * _m.logit[i]) / (1.0 + _m.odds[i]))
    m.utility = pyo.Expression(range(n), rule=lambda _m, i: (
        -(float(L[i]) - _m.compensation[i]) * _m.breach[i] - float(c[i]) * blocks[i].x
        - _m.premium[i] - r * abs(float(L[i]) - _m.compensation[i]) * _m.spread[i]))
    m.utility_uninsured = pyo.Expression(range(n), rule=lambda _m, i: (
        -float(L[i]) * _m.breach[i] - float(c[i]) * blocks[i].x - r * float(L[i]) * _m.spread[i]))

    for i, b in enumerate(blocks):
        b.utility = pyo.Objective(expr=m.utility[i], sense=pyo.maximize)
    game.set_leader(
        variables=[m.compensation, m.premium],
        objective=sum(m.premium[i] - m.compensation[i] * m.breach[i] for i in range(n)),
        sense=pyo.maximize,
        constraints=[m.utility_uninsured[i] - m.utility[i] <= 0.0 for i in range(n)],
    )


def ir_gaps(game, leader_values: dict, follower_values: dict) -> np.ndarray:
    """Per customer, utility without insurance minus utility with it (positive = IR violated).

    ``leader_values`` / ``follower_values`` map variable names (``compensation[i]``,
    ``premium[i]``, ``customer<i>.x``) to values, as in :class:`stackopt.Result`.
    """
    d = game.data
    W, L, c, r = d["interconnection"], d["losses"], d["costs"], d["risk_aversion"]
    n = W.shape[0]
    m = game.model
    try:
        x = np.array([follower_values[game.follower(f"customer{i}").x.name] for i in range(n)], dtype=float)
        comp = np.array([leader_values[m.compensation[i].name] for i in range(n)], dtype=float)
        prem = np.array([leader_values[m.premium[i].name] for i in range(n)], dtype=float)
    except KeyError as exc:
        raise ValueError(f"values for variable {exc.args[0]!r} are missing") from None
    z = 0.01 * L - W @ x
    q = 1.0 / (1.0 + np.exp(-z))
    s = np.sqrt(q * (1.0 - q))
    with_ins = -(L - comp) * q - c * x - prem - r * np.abs(L - comp) * s
    without = -L * q - c * x - r * L * s
    return without - with_ins


def ir_violation(game, result) -> float:
    """The reference experiments' IR violation: the sum over customers of the positive parts.

    ``result`` is a :class:`stackopt.Result` (or anything with ``leader_values`` and
    ``follower_values``) of a ``cyber`` game, evaluated at its reported equilibrium.
    """
    if game.name != "cyber" or "interconnection" not in game.data:
        raise ValueError(f"ir_violation needs a game built by the 'cyber' model, got {game!r}")
    return float(np.maximum(ir_gaps(game, result.leader_values, result.follower_values), 0.0).sum())


# ---------------------------------------------------------------------- validation
def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _finite(name: str, value: Any, low: float, strict: bool = False) -> float:
    rel = ">" if strict else ">="
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number {rel} {low}, got {value!r}") from None
    if not math.isfinite(v) or v < low or (strict and v == low):
        raise ValueError(f"{name} must be a finite number {rel} {low}, got {value!r}")
    return v


def _vector(name: str, value: Any, n: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape (customers,) = ({n},), got {value!r}") from None
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape (customers,) = ({n},), got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} must be finite, got {arr[bad[0]]} at index {bad[0]}")
    neg = np.flatnonzero(arr < 0)
    if neg.size:
        raise ValueError(f"{name} must be >= 0, got {arr[neg[0]]} at index {neg[0]}")
    return arr.copy()
